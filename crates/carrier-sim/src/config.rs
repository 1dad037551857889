use std::fmt;
use std::time::Duration;

pub const DEFAULT_ACCOUNT_SID: &str = "ACsimulator";
pub const DEFAULT_AUTH_TOKEN: &str = "sim-auth-token";
pub const DEFAULT_PUSH_TOKEN: &str = "sim-push-token";
pub const DEFAULT_STATUS_DELAY: Duration = Duration::from_millis(50);

/// How the simulator presents itself.
#[derive(Clone)]
pub struct SimConfig {
    /// The only account the Messages API serves.
    pub account_sid: String,
    /// Basic-auth password, and the key webhooks are signed with.
    pub auth_token: String,
    /// Where simulated phones' replies are posted (Vigil's inbound-SMS webhook).
    pub inbound_sms_url: Option<String>,
    /// Delay before each status transition (`sent`, then `delivered`), before
    /// a called phone reacts, and before a device answers a push.
    pub status_delay: Duration,
    /// Bearer token the push endpoint accepts.
    pub push_token: String,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            account_sid: DEFAULT_ACCOUNT_SID.to_owned(),
            auth_token: DEFAULT_AUTH_TOKEN.to_owned(),
            inbound_sms_url: None,
            status_delay: DEFAULT_STATUS_DELAY,
            push_token: DEFAULT_PUSH_TOKEN.to_owned(),
        }
    }
}

// Hand-written so the token never reaches logs.
impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"<redacted>")
            .field("inbound_sms_url", &self.inbound_sms_url)
            .field("status_delay", &self.status_delay)
            .field("push_token", &"<redacted>")
            .finish()
    }
}
