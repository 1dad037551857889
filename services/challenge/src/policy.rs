//! Whether a login is challenged, let through or refused, and why. A pure
//! function of the facts, so every rule is tested without a database and the
//! same code answers real logins and `vigil doctor`.

use chrono::{DateTime, Utc};
use vigil_proto::v1::{Decision, Reason};

/// What the challenge service knows about the user at the moment of the login.
#[derive(Debug, Clone)]
pub struct UserFacts {
    pub status: String,
    pub locked_until: Option<DateTime<Utc>>,
    pub bypass_until: Option<DateTime<Utc>>,
    pub bypass_remaining: i32,
    /// When this agent + user + client address was last approved.
    pub last_approved: Option<DateTime<Utc>>,
    pub has_factors: bool,
}

/// The login as the gateway described it.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoginFacts {
    pub require_user_match: bool,
    pub trusted_network: bool,
    pub remember_minutes: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow(Reason),
    Deny(Reason),
    Challenge,
}

impl Verdict {
    pub fn decision(self) -> Decision {
        match self {
            Self::Allow(_) => Decision::Allow,
            Self::Deny(_) => Decision::Deny,
            Self::Challenge => Decision::Challenge,
        }
    }

    pub fn reason(self) -> Reason {
        match self {
            Self::Allow(r) | Self::Deny(r) => r,
            Self::Challenge => Reason::Enrolled,
        }
    }

    /// The sentence shown to the user or the operator.
    pub fn message(self) -> &'static str {
        match self.reason() {
            Reason::UnknownUser if self.decision() == Decision::Allow => {
                "the user is not enrolled in Vigil; this agent lets unknown users through"
            }
            Reason::UnknownUser => "the user is not enrolled in Vigil",
            Reason::Disabled => "the user is disabled",
            Reason::BlockedForFraud => "the user is blocked after a fraud report",
            Reason::LockedOut => "too many failed attempts; the user is locked out for now",
            Reason::TrustedNetwork => "the login comes from a trusted network",
            Reason::Bypass => "a one-time bypass is active for the user",
            Reason::Remembered => "this login was approved recently from the same address",
            Reason::NotEnrolled => "the user has no second factor",
            _ => "a second factor is required",
        }
    }

    /// A pass that spends one of the user's one-time bypasses.
    pub fn is_bypass_use(self) -> bool {
        self == Self::Allow(Reason::Bypass)
    }
}

/// The rules, in order. A refusal always wins over a pass: a disabled,
/// blocked or locked-out user is refused even on a trusted network.
pub fn decide(user: Option<&UserFacts>, login: LoginFacts, now: DateTime<Utc>) -> Verdict {
    let Some(user) = user else {
        return if login.require_user_match {
            Verdict::Deny(Reason::UnknownUser)
        } else {
            Verdict::Allow(Reason::UnknownUser)
        };
    };
    match user.status.as_str() {
        "enabled" => {}
        "blocked_for_fraud" => return Verdict::Deny(Reason::BlockedForFraud),
        _ => return Verdict::Deny(Reason::Disabled),
    }
    if user.locked_until.is_some_and(|until| until > now) {
        return Verdict::Deny(Reason::LockedOut);
    }
    if login.trusted_network {
        return Verdict::Allow(Reason::TrustedNetwork);
    }
    if user.bypass_remaining > 0 && user.bypass_until.is_some_and(|until| until > now) {
        return Verdict::Allow(Reason::Bypass);
    }
    if login.remember_minutes > 0
        && let Some(at) = user.last_approved
        && now.signed_duration_since(at) < chrono::Duration::minutes(i64::from(login.remember_minutes))
    {
        return Verdict::Allow(Reason::Remembered);
    }
    if !user.has_factors {
        return Verdict::Deny(Reason::NotEnrolled);
    }
    Verdict::Challenge
}

/// The policy inputs in the order [`decide`] weighs them, for `vigil doctor`.
pub fn considered(user: Option<&UserFacts>, login: LoginFacts, now: DateTime<Utc>) -> Vec<String> {
    let mut lines = vec![format!(
        "user known: {}; agent requires a user match: {}",
        user.is_some(),
        login.require_user_match
    )];
    if let Some(user) = user {
        lines.push(format!("status: {}", user.status));
        lines.push(match user.locked_until {
            Some(until) if until > now => format!("locked out until {until}"),
            _ => "not locked out".into(),
        });
        lines.push(format!("client on a trusted network: {}", login.trusted_network));
        lines.push(match user.bypass_until {
            Some(until) if until > now && user.bypass_remaining > 0 => {
                format!("bypass active: {} left, until {until}", user.bypass_remaining)
            }
            _ => "no bypass".into(),
        });
        lines.push(match (login.remember_minutes, user.last_approved) {
            (0, _) => "remembered approvals off for this agent".into(),
            (m, Some(at)) => format!("remember {m} min; last approval from this address at {at}"),
            (m, None) => format!("remember {m} min; no approval from this address yet"),
        });
        lines.push(format!("has a second factor: {}", user.has_factors));
    }
    lines
}

/// Where failed attempts stand after one more failure: the count within the
/// window and, when the threshold is reached, until when the user is locked.
#[derive(Debug, Clone, Copy)]
pub struct Lockout {
    pub threshold: i32,
    pub window: chrono::Duration,
    pub duration: chrono::Duration,
}

pub struct FailureState {
    pub failed_attempts: i32,
    pub window_start: DateTime<Utc>,
    pub locked_until: Option<DateTime<Utc>>,
}

impl Lockout {
    pub fn record_failure(
        &self,
        failed_attempts: i32,
        window_start: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> FailureState {
        // A window that has passed starts again with this failure.
        let (count, start) = match window_start {
            Some(start) if now.signed_duration_since(start) < self.window => (failed_attempts + 1, start),
            _ => (1, now),
        };
        FailureState {
            failed_attempts: count,
            window_start: start,
            locked_until: (count >= self.threshold).then(|| now + self.duration),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn enabled() -> UserFacts {
        UserFacts {
            status: "enabled".into(),
            locked_until: None,
            bypass_until: None,
            bypass_remaining: 0,
            last_approved: None,
            has_factors: true,
        }
    }

    fn strict() -> LoginFacts {
        LoginFacts {
            require_user_match: true,
            ..Default::default()
        }
    }

    #[test]
    fn unknown_users_follow_the_agent_setting() {
        assert_eq!(decide(None, strict(), now()), Verdict::Deny(Reason::UnknownUser));
        let lax = LoginFacts::default();
        assert_eq!(decide(None, lax, now()), Verdict::Allow(Reason::UnknownUser));
    }

    #[test]
    fn refusals_win_over_passes() {
        let trusted = LoginFacts {
            trusted_network: true,
            ..strict()
        };
        for (status, reason) in [
            ("disabled", Reason::Disabled),
            ("blocked_for_fraud", Reason::BlockedForFraud),
        ] {
            let user = UserFacts {
                status: status.into(),
                ..enabled()
            };
            assert_eq!(decide(Some(&user), trusted, now()), Verdict::Deny(reason));
        }
        let locked = UserFacts {
            locked_until: Some(now() + Duration::minutes(1)),
            bypass_until: Some(now() + Duration::hours(1)),
            bypass_remaining: 3,
            ..enabled()
        };
        assert_eq!(decide(Some(&locked), trusted, now()), Verdict::Deny(Reason::LockedOut));
        let lock_over = UserFacts {
            locked_until: Some(now()),
            ..enabled()
        };
        assert_eq!(decide(Some(&lock_over), strict(), now()), Verdict::Challenge);
    }

    #[test]
    fn passes_in_order_then_challenge() {
        let trusted = LoginFacts {
            trusted_network: true,
            ..strict()
        };
        assert_eq!(
            decide(Some(&enabled()), trusted, now()),
            Verdict::Allow(Reason::TrustedNetwork)
        );
        let bypass = UserFacts {
            bypass_until: Some(now() + Duration::minutes(5)),
            bypass_remaining: 1,
            ..enabled()
        };
        assert_eq!(decide(Some(&bypass), strict(), now()), Verdict::Allow(Reason::Bypass));
        let used_up = UserFacts {
            bypass_remaining: 0,
            ..bypass.clone()
        };
        assert_eq!(decide(Some(&used_up), strict(), now()), Verdict::Challenge);
        let expired = UserFacts {
            bypass_until: Some(now()),
            ..bypass
        };
        assert_eq!(decide(Some(&expired), strict(), now()), Verdict::Challenge);
    }

    #[test]
    fn remembered_only_within_the_agent_window() {
        let user = UserFacts {
            last_approved: Some(now() - Duration::minutes(9)),
            ..enabled()
        };
        let remember = |m| LoginFacts {
            remember_minutes: m,
            ..strict()
        };
        assert_eq!(
            decide(Some(&user), remember(10), now()),
            Verdict::Allow(Reason::Remembered)
        );
        assert_eq!(decide(Some(&user), remember(9), now()), Verdict::Challenge);
        assert_eq!(decide(Some(&user), remember(0), now()), Verdict::Challenge);
    }

    #[test]
    fn a_user_without_factors_is_not_enrolled() {
        let user = UserFacts {
            has_factors: false,
            ..enabled()
        };
        assert_eq!(decide(Some(&user), strict(), now()), Verdict::Deny(Reason::NotEnrolled));
    }

    #[test]
    fn lockout_counts_failures_within_the_window() {
        let policy = Lockout {
            threshold: 3,
            window: Duration::minutes(15),
            duration: Duration::minutes(30),
        };
        let first = policy.record_failure(0, None, now());
        assert_eq!(first.failed_attempts, 1);
        let second = policy.record_failure(1, Some(first.window_start), now() + Duration::minutes(1));
        assert!(second.locked_until.is_none());
        let third = policy.record_failure(2, Some(first.window_start), now() + Duration::minutes(2));
        assert_eq!(third.locked_until, Some(now() + Duration::minutes(32)));
        // After the window, counting starts again.
        let later = policy.record_failure(2, Some(first.window_start), now() + Duration::minutes(16));
        assert_eq!(later.failed_attempts, 1);
        assert!(later.locked_until.is_none());
    }
}
