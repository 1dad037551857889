//! The challenge state machine: `pending → delivered → approved | denied |
//! expired | fraud | failed`. Terminal states never change.

use vigil_proto::v1 as api;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeState {
    Pending,
    Delivered,
    Approved,
    Denied,
    Expired,
    Fraud,
    Failed,
}

impl ChallengeState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Fraud => "fraud",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "delivered" => Self::Delivered,
            "approved" => Self::Approved,
            "denied" => Self::Denied,
            "expired" => Self::Expired,
            "fraud" => Self::Fraud,
            "failed" => Self::Failed,
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Pending | Self::Delivered)
    }

    /// Whether the machine allows `self → next`.
    pub fn can_become(self, next: Self) -> bool {
        match (self, next) {
            (Self::Pending, Self::Delivered) => true,
            (Self::Pending | Self::Delivered, n) => n.is_terminal(),
            _ => false,
        }
    }

    pub fn to_proto(self) -> api::ChallengeState {
        match self {
            Self::Pending => api::ChallengeState::Pending,
            Self::Delivered => api::ChallengeState::Delivered,
            Self::Approved => api::ChallengeState::Approved,
            Self::Denied => api::ChallengeState::Denied,
            Self::Expired => api::ChallengeState::Expired,
            Self::Fraud => api::ChallengeState::Fraud,
            Self::Failed => api::ChallengeState::Failed,
        }
    }
}

/// Reasons as stored beside a challenge; the proto enum is the contract.
pub fn reason_str(reason: api::Reason) -> &'static str {
    reason.as_str_name().strip_prefix("REASON_").unwrap_or("UNSPECIFIED")
}

pub fn parse_reason(s: &str) -> api::Reason {
    api::Reason::from_str_name(&format!("REASON_{s}")).unwrap_or(api::Reason::Unspecified)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChallengeState::*;

    const ALL: [ChallengeState; 7] = [Pending, Delivered, Approved, Denied, Expired, Fraud, Failed];

    #[test]
    fn terminal_states_never_change() {
        for from in ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in ALL {
                assert!(!from.can_become(to), "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn open_states_move_forward_only() {
        assert!(Pending.can_become(Delivered));
        assert!(!Delivered.can_become(Pending));
        assert!(!Delivered.can_become(Delivered));
        for end in [Approved, Denied, Expired, Fraud, Failed] {
            assert!(Pending.can_become(end));
            assert!(Delivered.can_become(end));
        }
    }

    #[test]
    fn names_round_trip() {
        for s in ALL {
            assert_eq!(ChallengeState::parse(s.as_str()), Some(s));
        }
        assert_eq!(parse_reason(reason_str(api::Reason::WrongCode)), api::Reason::WrongCode);
    }
}
