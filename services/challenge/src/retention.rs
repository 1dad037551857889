//! What the challenge service forgets, and when (see [`vigil_runtime::retention`]).
//! A challenge is kept for support questions about a recent login; the
//! audit records (every login's decision, every change to a user) are kept
//! longer, for the operator's auditors. Open challenges are never deleted:
//! the expiry sweep ends them first. Counters (rate limits, delivery caps)
//! go once they no longer count, whatever the settings.

use std::time::Duration;

use vigil_runtime::retention::Rule;

use crate::config::Config;

pub fn rules(config: &Config) -> Vec<Rule> {
    vec![
        // A window still counts while the one after it runs (the sliding
        // estimate weighs the previous window), so a row goes once two of
        // its windows have passed; $1 is now. Keyed by text, so the batch is
        // picked by key; `window_start < $1` lets the index on it find the
        // candidates. $2 (a UUIDv7 floor) is only typed, as below.
        Rule {
            table: "rate_limit_windows",
            keep: Some(Duration::ZERO),
            delete: "DELETE FROM rate_limit_windows WHERE key = ANY (ARRAY (
                       SELECT key FROM rate_limit_windows
                       WHERE window_start < $1 AND window_start + 2 * window_ms * INTERVAL '1 millisecond' < $1
                         AND $2::uuid IS NOT NULL
                       ORDER BY window_start LIMIT $3 FOR UPDATE SKIP LOCKED))"
                .into(),
        },
        // An hour's delivery count caps only that hour; a day is margin.
        // Rows of past hours are never written again, so their address
        // picks them.
        Rule::days(
            "delivery_caps",
            1,
            "DELETE FROM delivery_caps WHERE ctid = ANY (ARRAY (
               SELECT ctid FROM delivery_caps WHERE hour < $1 AND $2::uuid IS NOT NULL
               ORDER BY hour LIMIT $3 FOR UPDATE SKIP LOCKED))",
        ),
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
