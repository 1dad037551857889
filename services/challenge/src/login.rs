//! Preauth and `explain`: what policy decides for a login, and the audit
//! trail of every decision.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;
use vigil_core::{ChallengeId, Username};
use vigil_proto::{
    rpc,
    v1::{Decision, Reason},
};

use crate::{
    policy::{self, LoginFacts, UserFacts, Verdict},
    ratelimit,
    service::{Service, ServiceError, factor_of, parse_provider, timestamp},
    state::{parse_reason, reason_str},
    store::{self, UserDetail},
    unlocked_logins::{UnlockedLogins, UserKey},
    users::user_record,
};

/// The facts about one login, read in one place for preauth, start and explain.
pub struct Facts {
    pub user: Option<UserDetail>,
    pub user_facts: Option<UserFacts>,
    pub factors: Vec<store::FactorRow>,
    pub login: LoginFacts,
}

pub fn login_facts(policy: Option<&rpc::PolicyContext>) -> LoginFacts {
    // Without a policy context the strict defaults apply: fail closed.
    policy.map_or(
        LoginFacts {
            require_user_match: true,
            ..Default::default()
        },
        |p| LoginFacts {
            require_user_match: p.require_user_match,
            trusted_network: p.trusted_network,
            remember_minutes: p.remember_minutes,
        },
    )
}

pub async fn gather(
    conn: &mut PgConnection,
    provider: &str,
    username: &Username,
    policy: Option<&rpc::PolicyContext>,
    lock: bool,
) -> Result<Facts, ServiceError> {
    let found = store::user_and_factors_by_name(conn, provider, username.as_str(), lock).await?;
    let last_approved = match (policy, &found) {
        (Some(p), Some((user, _))) if remembers_approvals(policy) => {
            store::last_approval(conn, provider, &p.agent_id, user.id, &p.client_ip).await?
        }
        _ => None,
    };
    Ok(facts(found, last_approved, login_facts(policy)))
}

/// Whether `policy` lets an approval be remembered, so that deciding a
/// login also reads the user's last approval from that address.
pub fn remembers_approvals(policy: Option<&rpc::PolicyContext>) -> bool {
    policy.is_some_and(|p| p.remember_minutes > 0 && !p.client_ip.is_empty())
}

/// [`gather`] for a login tried without the user's lock, which remembers
/// no approval: its user read by a statement shared with other logins.
pub async fn gather_unlocked(
    logins: &UnlockedLogins,
    provider: &str,
    username: &Username,
    policy: Option<&rpc::PolicyContext>,
) -> Result<Facts, ServiceError> {
    let key = UserKey {
        provider_id: provider.to_owned(),
        username: username.as_str().to_owned(),
    };
    Ok(facts(logins.read(key).await?, None, login_facts(policy)))
}

fn facts(
    found: Option<(UserDetail, Vec<store::FactorRow>)>,
    last_approved: Option<DateTime<Utc>>,
    login: LoginFacts,
) -> Facts {
    let Some((user, factors)) = found else {
        return Facts {
            user: None,
            user_facts: None,
            factors: vec![],
            login,
        };
    };
    let user_facts = UserFacts {
        status: user.status.clone(),
        locked_until: user.locked_until,
        bypass_until: user.bypass_until,
        bypass_remaining: user.bypass_remaining,
        last_approved,
        has_factors: !factors.is_empty(),
    };
    Facts {
        user: Some(user),
        user_facts: Some(user_facts),
        factors,
        login,
    }
}

pub fn decision_str(decision: Decision) -> &'static str {
    decision
        .as_str_name()
        .strip_prefix("DECISION_")
        .unwrap_or("UNSPECIFIED")
}

/// A decision as stored ("ALLOW") back to the wire enum.
pub fn parse_decision(s: &str) -> Decision {
    Decision::from_str_name(&format!("DECISION_{s}")).unwrap_or_default()
}

/// One decision as an audit record: written by [`record`], or inside a
/// statement of the caller's own (see `store::insert_challenge`).
#[allow(clippy::too_many_arguments)]
pub fn attempt<'a>(
    provider: &'a str,
    username: &'a str,
    user_id: Option<Uuid>,
    operation: &'a str,
    policy: Option<&'a rpc::PolicyContext>,
    verdict: (Decision, Reason),
    challenge_id: Option<Uuid>,
    at: DateTime<Utc>,
) -> store::NewAttempt<'a> {
    store::NewAttempt {
        provider_id: provider,
        user_id,
        username,
        operation,
        agent_id: policy.map_or("", |p| p.agent_id.as_str()),
        client_ip: policy.map_or("", |p| p.client_ip.as_str()),
        decision: decision_str(verdict.0),
        reason: reason_str(verdict.1),
        challenge_id,
        at,
    }
}

/// Records one decision in the audit trail.
#[allow(clippy::too_many_arguments)]
pub async fn record(
    conn: &mut PgConnection,
    provider: &str,
    username: &str,
    user_id: Option<Uuid>,
    operation: &str,
    policy: Option<&rpc::PolicyContext>,
    verdict: (Decision, Reason),
    challenge_id: Option<Uuid>,
    at: DateTime<Utc>,
) -> Result<(), ServiceError> {
    let attempt = attempt(
        provider,
        username,
        user_id,
        operation,
        policy,
        verdict,
        challenge_id,
        at,
    );
    store::record_attempt(conn, attempt).await?;
    Ok(())
}

/// The audit record of an answer to a challenge (a typed code or one given
/// on the phone), under the agent and address that started it: as `verify`,
/// or as `authenticate` when the code came with the login (one call, one
/// record).
pub fn answer_attempt<'a>(
    row: &'a store::ChallengeRow,
    username: &'a str,
    operation: &'a str,
    verdict: (Decision, Reason),
    at: DateTime<Utc>,
) -> store::NewAttempt<'a> {
    store::NewAttempt {
        provider_id: &row.provider_id,
        user_id: Some(row.user_id),
        username,
        operation,
        agent_id: &row.agent_id,
        client_ip: &row.client_ip,
        decision: decision_str(verdict.0),
        reason: reason_str(verdict.1),
        challenge_id: Some(row.id),
        at,
    }
}

/// Records the answer to a challenge (see [`answer_attempt`]).
pub async fn record_answer(
    conn: &mut PgConnection,
    row: &store::ChallengeRow,
    username: &str,
    operation: &str,
    verdict: (Decision, Reason),
    at: DateTime<Utc>,
) -> Result<(), ServiceError> {
    store::record_attempt(conn, answer_attempt(row, username, operation, verdict, at)).await?;
    Ok(())
}

/// A login past the rate limits, or not.
pub enum Counted {
    Limited(String),
    /// With the user's facts if they were read unlocked.
    Passed(Option<Box<Facts>>),
}

impl Service {
    /// Counts a login against the rate limits as `operation` (`None`: it
    /// was counted already) and, if `unlocked`, reads its user by the
    /// statement shared with other logins ([`gather_unlocked`]) at the same
    /// time: the read needs nothing the count decides, so the login waits
    /// for the database once instead of twice. A limited login's read is
    /// dropped unused.
    pub async fn count_and_read(
        &self,
        provider: &str,
        username: &Username,
        policy: Option<&rpc::PolicyContext>,
        operation: Option<&'static str>,
        unlocked: bool,
    ) -> Result<Counted, ServiceError> {
        let count = async {
            match operation {
                Some(operation) => {
                    let request = ratelimit::Request::login(provider, username.as_str(), operation, policy);
                    self.rate_limited(None, request).await
                }
                None => Ok(None),
            }
        };
        let (limited, read) = if unlocked {
            let (limited, read) = tokio::join!(count, gather_unlocked(&self.unlocked, provider, username, policy));
            (limited, Some(read))
        } else {
            (count.await, None)
        };
        match limited? {
            Some(message) => Ok(Counted::Limited(message)),
            None => Ok(Counted::Passed(read.transpose()?.map(Box::new))),
        }
    }

    pub async fn preauth(&self, req: rpc::PreauthRequest) -> Result<rpc::PreauthReply, ServiceError> {
        let provider = parse_provider(&req.provider_id)?.to_string();
        let Ok(username) = Username::parse(&req.username) else {
            return Ok(rpc::PreauthReply {
                decision: Decision::Deny as i32,
                reason: Reason::InvalidRequest as i32,
                message: "the username is not valid".into(),
                ..Default::default()
            });
        };
        // Most preauths record nothing (RADIUS records only a denial here;
        // the login's start records the rest), so the user is read by the
        // statement shared with the logins waiting at the same moment, and a
        // connection is taken only to record. A policy that remembers
        // approvals also reads the last one, on a connection of its own.
        let remembers = remembers_approvals(req.policy.as_ref());
        let counted = (!req.dry_run).then_some("preauth");
        let read = match self
            .count_and_read(&provider, &username, req.policy.as_ref(), counted, !remembers)
            .await?
        {
            Counted::Limited(message) => {
                return Ok(rpc::PreauthReply {
                    decision: Decision::Deny as i32,
                    reason: Reason::RateLimited as i32,
                    message,
                    ..Default::default()
                });
            }
            Counted::Passed(read) => read,
        };
        let now = self.clock.now();
        let mut conn = None;
        let facts = match read {
            Some(facts) => *facts,
            None => {
                let conn = conn.insert(vigil_runtime::acquire(&self.pool).await?);
                gather(conn, &provider, &username, req.policy.as_ref(), false).await?
            }
        };
        let verdict = policy::decide(facts.user_facts.as_ref(), facts.login, now);
        let recorded = !req.dry_run && (!req.record_denials_only || verdict.decision() == Decision::Deny);
        if recorded {
            let mut conn = match conn {
                Some(conn) => conn,
                None => vigil_runtime::acquire(&self.pool).await?,
            };
            record(
                &mut conn,
                &provider,
                username.as_str(),
                facts.user.as_ref().map(|u| u.id),
                "preauth",
                req.policy.as_ref(),
                (verdict.decision(), verdict.reason()),
                None,
                now,
            )
            .await?;
        }
        let factors = if verdict == Verdict::Challenge {
            facts.factors.iter().map(|f| factor_of(&f.kind) as i32).collect()
        } else {
            vec![]
        };
        Ok(rpc::PreauthReply {
            decision: verdict.decision() as i32,
            reason: verdict.reason() as i32,
            message: verdict.message().into(),
            factors,
            error: None,
        })
    }

    /// What would happen, the inputs weighed, and the user's last attempts.
    pub async fn explain(&self, req: rpc::ExplainRequest) -> Result<rpc::ExplainReply, ServiceError> {
        let provider = parse_provider(&req.provider_id)?.to_string();
        let username =
            Username::parse(&req.username).map_err(|e| ServiceError::InvalidArgument(format!("username: {e}")))?;
        let now = self.clock.now();
        let mut conn = self.pool.acquire().await?;
        let facts = gather(&mut conn, &provider, &username, req.policy.as_ref(), false).await?;
        let verdict = policy::decide(facts.user_facts.as_ref(), facts.login, now);
        let considered = policy::considered(facts.user_facts.as_ref(), facts.login, now);
        let limit = i64::from(req.attempts.clamp(1, 100));
        let attempts = store::recent_attempts(&mut conn, &provider, username.as_str(), limit).await?;
        let user = match &facts.user {
            Some(u) => Some(user_record(u, &facts.factors)),
            None => None,
        };
        Ok(rpc::ExplainReply {
            decision: verdict.decision() as i32,
            reason: verdict.reason() as i32,
            message: verdict.message().into(),
            considered,
            factors: facts.factors.iter().map(|f| factor_of(&f.kind) as i32).collect(),
            user,
            recent_attempts: attempts
                .into_iter()
                .map(|a| rpc::Attempt {
                    at: Some(timestamp(a.at)),
                    operation: a.operation,
                    agent_id: a.agent_id,
                    client_ip: a.client_ip,
                    decision: parse_decision(&a.decision) as i32,
                    reason: parse_reason(&a.reason) as i32,
                    challenge_id: a
                        .challenge_id
                        .map(|id| ChallengeId::from_uuid(id).to_string())
                        .unwrap_or_default(),
                })
                .collect(),
            error: None,
        })
    }
}
