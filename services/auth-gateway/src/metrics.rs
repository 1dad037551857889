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

/// Times one agent request from its handler's start to its answer, into
/// `vigil_gateway_request_seconds{api, method}` when dropped (so an early
/// `?` return counts too). Against the agent's own clock the difference is
/// the transport; against `vigil_rpc_call_seconds` it is the gateway's part.
pub struct RequestTimer {
    api: &'static str,
    method: &'static str,
    began: std::time::Instant,
}

impl RequestTimer {
    pub fn start(api: &'static str, method: &'static str) -> Self {
        Self {
            api,
            method,
            began: std::time::Instant::now(),
        }
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        metrics::histogram!("vigil_gateway_request_seconds", "api" => self.api, "method" => self.method)
            .record(self.began.elapsed());
    }
}
