//! The gateway's metrics: every answer an agent gets, by decision and reason,
//! and the logins shed because the gateway was at its in-flight bound.

use vigil_proto::{
    enum_label,
    v1::{Decision, Reason},
};

/// Counts one answered login question; `api` is `grpc` or `radius`.
pub fn decision(api: &'static str, decision: Decision, reason: Reason) {
    metrics::counter!(
        "vigil_decisions_total",
        "api" => api,
        "decision" => enum_label(decision.as_str_name(), "DECISION_"),
        "reason" => enum_label(reason.as_str_name(), "REASON_"),
    )
    .increment(1);
}

/// Counts one login denied unheard because `VIGIL_MAX_IN_FLIGHT` logins were
/// already in flight; `api` is `grpc` or `radius`. The answer itself is also
/// counted by [`decision`], as a deny with reason `unavailable`.
pub fn shed(api: &'static str) {
    metrics::counter!("vigil_gateway_shed_total", "api" => api).increment(1);
}
