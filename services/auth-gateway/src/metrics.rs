//! The gateway's metrics: every answer an agent gets, by decision and reason.

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
