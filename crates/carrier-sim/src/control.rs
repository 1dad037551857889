//! JSON bodies of the `/sim/*` control API, public so tests and tools in
//! other crates can use them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One message in a simulated phone's inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxEntry {
    pub sid: String,
    pub from: String,
    pub to: String,
    pub body: String,
    pub status: String,
    pub num_segments: u32,
    /// RFC 3339.
    pub received_at: DateTime<Utc>,
}

/// Response of `DELETE /sim/inbox/{number}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClearedInbox {
    pub cleared: usize,
}

/// Body of `POST /sim/phones/{number}/reply`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyRequest {
    pub body: String,
    /// Who the phone replies to; defaults to the sender of the latest message
    /// in its inbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// Response of `POST /sim/phones/{number}/reply`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyResponse {
    pub message_sid: String,
    /// HTTP status the inbound-SMS webhook answered with.
    pub webhook_status: u16,
}

/// Body of `POST /sim/faults`, and its response (the plan now in force).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// How many upcoming Messages API calls fail.
    pub fail_next: u32,
    /// HTTP status they fail with (400-599).
    #[serde(default = "default_fault_status")]
    pub status: u16,
}

fn default_fault_status() -> u16 {
    500
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            fail_next: 0,
            status: default_fault_status(),
        }
    }
}

/// Response of `GET /sim/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub messages_accepted: u64,
    /// Messages API calls answered with an error, injected faults included.
    pub requests_failed: u64,
}

/// Body of every control-API error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlErrorBody {
    pub error: String,
    pub status: u16,
}
