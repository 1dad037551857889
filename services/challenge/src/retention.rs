//! What the challenge service forgets, and when (see [`vigil_runtime::retention`]).
//! A challenge is kept for support questions about a recent login; the
//! audit records (every login's decision, every change to a user) are kept
//! longer, for the operator's auditors. Open challenges are never deleted:
//! the expiry sweep ends them first.

use vigil_runtime::retention::Rule;

use crate::config::Config;

pub fn rules(config: &Config) -> Vec<Rule> {
    vec![
        Rule::rows(
            "challenges",
            config.challenge_retention_days,
            "created_at",
            " AND state NOT IN ('pending', 'delivered')",
        ),
        Rule::rows("auth_attempts", config.audit_retention_days, "at", ""),
        Rule::rows("user_audit", config.audit_retention_days, "at", ""),
    ]
}
