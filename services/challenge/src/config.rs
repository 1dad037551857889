use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use vigil_runtime::ConfigError;

/// The challenge service's settings, from `VIGIL_*` environment variables.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Health and readiness endpoints (`VIGIL_HTTP_ADDR`).
    pub http_addr: String,
    /// This service's own database (`VIGIL_DATABASE_URL`).
    pub database_url: String,
    /// `VIGIL_NATS_URL`.
    pub nats_url: String,
    /// JetStream replicas for the streams this service declares.
    pub stream_replicas: usize,
    /// How long a challenge waits for its answer (`VIGIL_CHALLENGE_LIFETIME_SECS`).
    pub challenge_lifetime_secs: u32,
    /// Wrong codes a challenge accepts before it ends as denied.
    pub max_verify_attempts: u32,
    /// Key for the HMAC that stores one-time codes (`VIGIL_CODE_KEY`); required.
    #[serde(serialize_with = "vigil_runtime::config::serialize_redacted")]
    pub code_key: SecretString,
    /// SMS text; `{code}` and `{minutes}` are filled in.
    pub sms_template: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http_addr: "127.0.0.1:8082".into(),
            database_url: "postgres://postgres@127.0.0.1:5432/vigil_challenge".into(),
            nats_url: "nats://127.0.0.1:4222".into(),
            stream_replicas: 1,
            challenge_lifetime_secs: 120,
            max_verify_attempts: 3,
            code_key: SecretString::from(""),
            sms_template: "Your Vigil verification code is {code}. It expires in {minutes} min.".into(),
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.code_key.expose_secret().len() < 16 {
            return Err(ConfigError::new("VIGIL_CODE_KEY must be set to at least 16 characters"));
        }
        if self.challenge_lifetime_secs == 0 || self.max_verify_attempts == 0 {
            return Err(ConfigError::new(
                "challenge lifetime and verify attempts must be positive",
            ));
        }
        if !self.sms_template.contains("{code}") {
            return Err(ConfigError::new("sms_template must contain {code}"));
        }
        Ok(())
    }
}
