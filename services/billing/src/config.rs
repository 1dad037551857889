use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use vigil_runtime::ConfigError;

/// The billing service's settings: these defaults overlaid with `VIGIL_*`
/// environment variables (see [`vigil_runtime::load_config`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Where the usage API and the health endpoints listen (`VIGIL_HTTP_ADDR`).
    pub http_addr: String,
    /// This service's own database (`VIGIL_DATABASE_URL`).
    pub database_url: String,
    /// `VIGIL_NATS_URL`.
    pub nats_url: String,
    /// JetStream replicas for the streams declared at start-up
    /// (`VIGIL_STREAM_REPLICAS`); 3 on a production cluster.
    pub stream_replicas: usize,
    /// The operator's bearer token (`VIGIL_API_TOKEN`); required. It reads
    /// every provider, sets rates and issues the providers' read-only tokens.
    #[serde(serialize_with = "never_serialize")]
    pub api_token: SecretString,
    /// How long after a month ends its statement closes
    /// (`VIGIL_STATEMENT_CLOSE_DELAY_SECS`; default 3 days), so events still
    /// in flight at month end land on it rather than as adjustments.
    pub statement_close_delay_secs: u64,
    /// How often billing looks for statements to close
    /// (`VIGIL_STATEMENT_CHECK_INTERVAL_MS`; default one minute).
    pub statement_check_interval_ms: u64,
}

/// The secret never leaves the process, not even through the config loader,
/// which serialises the defaults (where the token is empty anyway).
fn never_serialize<S: serde::Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("")
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http_addr: "127.0.0.1:8084".into(),
            database_url: "postgres://postgres@127.0.0.1:5432/vigil_billing".into(),
            nats_url: "nats://127.0.0.1:4222".into(),
            stream_replicas: 1,
            api_token: SecretString::from(""),
            statement_close_delay_secs: 3 * 24 * 60 * 60,
            statement_check_interval_ms: 60_000,
        }
    }
}

impl Config {
    /// Refuses settings the service cannot run safely with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let token = self.api_token.expose_secret();
        if token.trim().is_empty() {
            return Err(ConfigError::new(
                "VIGIL_API_TOKEN must be set: it is the bearer token the usage API requires",
            ));
        }
        // HTTP strips surrounding whitespace from header values, so such a
        // token could never be presented.
        if token.trim() != token {
            return Err(ConfigError::new(
                "VIGIL_API_TOKEN must not start or end with whitespace",
            ));
        }
        if self.statement_check_interval_ms == 0 {
            return Err(ConfigError::new("VIGIL_STATEMENT_CHECK_INTERVAL_MS must be at least 1"));
        }
        if self.stream_replicas == 0 {
            return Err(ConfigError::new("VIGIL_STREAM_REPLICAS must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_token(token: &str) -> Config {
        Config {
            api_token: SecretString::from(token),
            ..Config::default()
        }
    }

    #[test]
    fn requires_an_api_token() {
        let error = Config::default().validate().err().map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.contains("VIGIL_API_TOKEN must be set")));
        assert!(with_token("   ").validate().is_err());
        assert!(with_token(" padded ").validate().is_err());
        assert!(with_token("s3cret-dashboard-token").validate().is_ok());
    }

    #[test]
    fn refuses_zero_replicas() {
        let config = Config {
            stream_replicas: 0,
            ..with_token("token")
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn never_prints_the_token() {
        let config = with_token("s3cret-dashboard-token");
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
