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
    /// How many upcoming API calls fail.
    pub fail_next: u32,
    /// HTTP status they fail with (400-599).
    #[serde(default = "default_fault_status")]
    pub status: u16,
    /// Which API the faults hit; the others keep working.
    #[serde(default)]
    pub api: FaultApi,
}

/// The API an injected fault applies to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultApi {
    /// Whichever API is called next.
    #[default]
    Any,
    Messages,
    Calls,
    Push,
}

fn default_fault_status() -> u16 {
    500
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            fail_next: 0,
            status: default_fault_status(),
            api: FaultApi::Any,
        }
    }
}

/// Response of `GET /sim/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub messages_accepted: u64,
    /// API calls (messages, calls, push) answered with an error, injected
    /// faults included.
    pub requests_failed: u64,
    #[serde(default)]
    pub calls_placed: u64,
    #[serde(default)]
    pub pushes_accepted: u64,
}

/// What a simulated phone does when it is called: body of
/// `PUT /sim/phones/{number}/voice`, and the default when none was set
/// (`answer`, press `#`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceBehaviour {
    pub action: VoiceAction,
    /// Keys pressed once the greeting has played (`answer` only): `0-9`,
    /// `*`, `#`. `"#"` approves, `"1234#"` enters a PIN, `"0#"` reports
    /// fraud, `""` stays silent.
    #[serde(default = "default_digits")]
    pub digits: String,
    /// Length of an answered call, reported as `CallDuration`.
    #[serde(default = "default_call_seconds")]
    pub duration_seconds: u32,
}

/// How a simulated phone reacts to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoiceAction {
    /// Picks up, listens and presses `digits`.
    Answer,
    /// Rings out: `no-answer`.
    NoAnswer,
    /// `busy`.
    Busy,
    /// Picks up and hangs up before pressing anything.
    HangUp,
    /// The carrier cannot connect the call: `failed`.
    Fail,
}

fn default_digits() -> String {
    "#".to_owned()
}

fn default_call_seconds() -> u32 {
    12
}

impl Default for VoiceBehaviour {
    fn default() -> Self {
        Self {
            action: VoiceAction::Answer,
            digits: default_digits(),
            duration_seconds: default_call_seconds(),
        }
    }
}

/// One call placed to a simulated phone, in `GET /sim/calls/{number}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallEntry {
    pub sid: String,
    pub from: String,
    pub to: String,
    /// The call's latest status (`queued` ... `completed`, `busy`, ...).
    pub status: String,
    pub duration_seconds: u32,
    /// Every `<Say>` the phone heard, in order.
    pub heard: Vec<String>,
    /// The `Digits` posted to the gather action, if any.
    pub digits_sent: Option<String>,
    /// HTTP statuses Vigil answered the TwiML fetch, the gather post and the
    /// final status callback with (`None`: not made, or unreachable).
    pub twiml_status: Option<u16>,
    pub gather_status: Option<u16>,
    pub status_callback_status: Option<u16>,
}

/// Body of `POST /sim/devices` (optional) and of
/// `PUT /sim/devices/{device_id}/behaviour`: what the device does with each
/// push. The `script` steps are used up one per push, in order; after them
/// (or without them) every push gets `action`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceBehaviour {
    pub action: DeviceAction,
    /// The number the user picks on the device (number matching). Unset:
    /// `approve` and `wrong_number` look at the sign-in screen (see
    /// `PUT /sim/screens/{challenge_id}`); the others pick the first offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pick: Option<u32>,
    /// `push_error`: the HTTP status the push service answers (default 503).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub script: Vec<DeviceStep>,
}

/// One scripted reaction to one push.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceStep {
    pub action: DeviceAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pick: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

/// What a simulated device does with a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceAction {
    #[default]
    Approve,
    Deny,
    Fraud,
    /// Receives the push and never answers.
    Ignore,
    /// Approves, but picks a number the sign-in screen does not show.
    WrongNumber,
    /// The push service refuses this device's push (every retry of it) with
    /// a 5xx: the push never arrives.
    PushError,
}

/// Body of `POST /sim/devices/{device_id}/answer`: the device answers one
/// of its pushes now (a late or repeated answer), whatever its script says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerNow {
    /// Which push, oldest first; default the newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    pub action: DeviceAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pick: Option<u32>,
}

/// Response of `POST /sim/devices/{device_id}/answer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answered {
    /// HTTP status Vigil's answer endpoint gave; `None` when nothing was posted.
    pub status: Option<u16>,
}

/// Body of `PUT /sim/screens/{challenge_id}`: the number the sign-in screen
/// shows for a push challenge, which the simulated user looks at before
/// picking on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Screen {
    pub number: u32,
}

/// Body of `POST /sim/devices/enroll`: a simulated phone enrols with Vigil
/// the way the app does: it makes a key pair and a push token and posts them
/// with the one-time code to Vigil's enrolment URL. Give the QR `payload`
/// (`vigil-push://enroll?url=...&code=...`) or `url` and `code`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollDevice {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behaviour: Option<DeviceBehaviour>,
}

/// Response of `POST /sim/devices/enroll`: what Vigil answered. A refused
/// code is not a control-API error: `enrolled` is false and `error` holds
/// Vigil's error code (`enrollment_code_expired`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceEnrolled {
    pub enrolled: bool,
    /// HTTP status of Vigil's enrolment endpoint.
    pub status: u16,
    /// The id Vigil gave the device (its pushes and answers carry it).
    #[serde(default)]
    pub device_id: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    /// The push registration token and public key the device presented.
    pub token: String,
    pub public_key: String,
}

/// Response of `POST /sim/devices`: what a device shows at enrolment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCreated {
    pub device_id: String,
    /// The push registration token (FCM-style).
    pub token: String,
    /// Ed25519 public key, standard base64 of the 32 raw bytes.
    pub public_key: String,
}

/// One push a simulated device received, in `GET /sim/devices/{id}/pushes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushEntry {
    /// `projects/{project}/messages/{id}`.
    pub name: String,
    /// The message's `data` map as sent.
    pub data: std::collections::BTreeMap<String, String>,
    /// The answer the device posted (its exact JSON body), if it answered.
    pub answer: Option<String>,
    /// HTTP status the callback URL answered with.
    pub answer_status: Option<u16>,
}

/// Body of every control-API error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlErrorBody {
    pub error: String,
    pub status: u16,
}
