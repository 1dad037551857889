//! The telephony service's settings: defaults below, overlaid by `VIGIL_*`
//! environment variables (nested with `__`, e.g. `VIGIL_TWILIO__AUTH_TOKEN`).

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;
use vigil_core::PhoneNumber;
use vigil_runtime::ConfigError;

/// Path of the Twilio message status callback, below `public_base_url`.
pub const STATUS_CALLBACK_PATH: &str = "/v1/carrier/twilio/status";
/// Path of the Twilio inbound SMS webhook, below `public_base_url`.
pub const INBOUND_SMS_PATH: &str = "/v1/carrier/twilio/inbound";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Where carrier callbacks and `/healthz`, `/readyz` are served
    /// (`VIGIL_HTTP_ADDR`).
    pub http_addr: String,
    /// This service's own database (`VIGIL_DATABASE_URL`).
    pub database_url: String,
    /// `VIGIL_NATS_URL`.
    pub nats_url: String,
    /// JetStream replicas for the streams this service declares
    /// (`VIGIL_STREAM_REPLICAS`).
    pub stream_replicas: usize,
    /// The base URL carriers call back (`VIGIL_PUBLIC_BASE_URL`). Used both to
    /// build callback URLs and to verify webhook signatures, because Twilio
    /// signs the exact URL it called: behind a proxy, this is the external URL.
    pub public_base_url: String,
    /// The Twilio-style carrier (`VIGIL_TWILIO__*`).
    pub twilio: TwilioConfig,
    /// Tries per message when the carrier fails in a way worth retrying
    /// (`VIGIL_SEND_ATTEMPTS`).
    pub send_attempts: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TwilioConfig {
    /// API root (`VIGIL_TWILIO__BASE_URL`): `https://api.twilio.com` in
    /// production, the carrier simulator locally.
    pub base_url: String,
    /// `VIGIL_TWILIO__ACCOUNT_SID`.
    pub account_sid: String,
    /// API password and webhook signing key (`VIGIL_TWILIO__AUTH_TOKEN`).
    /// Never serialized, so defaults never carry it; an unset variable falls
    /// back to the simulator's token.
    #[serde(skip_serializing)]
    pub auth_token: SecretString,
    /// Sender number of outgoing SMS, E.164 (`VIGIL_TWILIO__FROM_NUMBER`).
    pub from_number: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http_addr: "127.0.0.1:8083".into(),
            database_url: "postgres://postgres@127.0.0.1:5432/vigil_telephony".into(),
            nats_url: "nats://127.0.0.1:4222".into(),
            stream_replicas: 1,
            public_base_url: "http://127.0.0.1:8083".into(),
            twilio: TwilioConfig::default(),
            send_attempts: 3,
        }
    }
}

impl Default for TwilioConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:4010".into(),
            account_sid: "ACsimulator".into(),
            auth_token: SecretString::from("sim-auth-token"),
            from_number: "+15550000000".into(),
        }
    }
}

impl Config {
    /// Reads the defaults overlaid with the process's `VIGIL_*` variables.
    pub fn load() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads the given variables over the defaults (see `vigil_runtime::load_config_from`).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        vigil_runtime::load_config_from(vars)
    }

    /// Refuses settings the service could not work with, before it starts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        http_url("VIGIL_PUBLIC_BASE_URL", &self.public_base_url)?;
        http_url("VIGIL_TWILIO__BASE_URL", &self.twilio.base_url)?;
        PhoneNumber::parse(&self.twilio.from_number)
            .map_err(|e| ConfigError::new(format!("VIGIL_TWILIO__FROM_NUMBER: {e}")))?;
        if self.twilio.account_sid.is_empty() {
            return Err(ConfigError::new("VIGIL_TWILIO__ACCOUNT_SID must be set"));
        }
        if self.send_attempts == 0 {
            return Err(ConfigError::new("VIGIL_SEND_ATTEMPTS must be at least 1"));
        }
        Ok(())
    }

    /// The public URL of a webhook route, exactly as carriers call and sign it.
    pub fn public_url(&self, path: &str) -> String {
        format!("{}{path}", self.public_base_url.trim_end_matches('/'))
    }
}

fn http_url(name: &str, value: &str) -> Result<Url, ConfigError> {
    Url::parse(value)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| ConfigError::new(format!("{name} must be an http(s) URL, got {value:?}")))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn reads_vigil_variables_as_text_and_numbers_where_wanted() -> Result<(), ConfigError> {
        let c = Config::from_vars(vars(&[
            ("VIGIL_HTTP_ADDR", "0.0.0.0:9000"),
            ("VIGIL_PUBLIC_BASE_URL", "https://mfa.example.com"),
            ("VIGIL_STREAM_REPLICAS", "3"),
            ("VIGIL_SEND_ATTEMPTS", "5"),
            ("VIGIL_TWILIO__BASE_URL", "https://api.twilio.com"),
            ("VIGIL_TWILIO__ACCOUNT_SID", "AC123"),
            ("VIGIL_TWILIO__AUTH_TOKEN", "0123456789"),
            ("VIGIL_TWILIO__FROM_NUMBER", "+15557654321"),
            ("OTHER_SEND_ATTEMPTS", "9"),
        ]))?;
        assert_eq!(
            (c.http_addr.as_str(), c.public_base_url.as_str()),
            ("0.0.0.0:9000", "https://mfa.example.com")
        );
        assert_eq!((c.stream_replicas, c.send_attempts), (3, 5));
        assert_eq!(
            (c.twilio.base_url.as_str(), c.twilio.account_sid.as_str()),
            ("https://api.twilio.com", "AC123")
        );
        assert_eq!(
            c.twilio.auth_token.expose_secret(),
            "0123456789",
            "digits and leading zero kept"
        );
        assert_eq!(c.twilio.from_number, "+15557654321", "the + is kept");
        // Unset variables keep their defaults.
        assert_eq!(c.database_url, Config::default().database_url);
        assert!(Config::from_vars(vars(&[("VIGIL_SEND_ATTEMPTS", "many")])).is_err());
        Ok(())
    }

    #[test]
    fn unset_auth_token_falls_back_to_the_simulator_token() -> Result<(), ConfigError> {
        let c = Config::from_vars(vars(&[("VIGIL_TWILIO__FROM_NUMBER", "+15557654321")]))?;
        assert_eq!(c.twilio.auth_token.expose_secret(), "sim-auth-token");
        Ok(())
    }

    #[test]
    fn defaults_are_valid() {
        assert!(Config::default().validate().is_ok());
    }

    #[test]
    fn refuses_bad_urls_numbers_and_attempts() {
        let mut c = Config {
            public_base_url: "not a url".into(),
            ..Config::default()
        };
        assert!(c.validate().is_err());
        c.public_base_url = "ftp://x".into();
        assert!(c.validate().is_err());
        c = Config::default();
        c.twilio.from_number = "5550000".into();
        assert!(c.validate().is_err());
        c = Config {
            send_attempts: 0,
            ..Config::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn public_url_joins_without_double_slash() {
        let c = Config {
            public_base_url: "https://mfa.example.com/".into(),
            ..Config::default()
        };
        assert_eq!(
            c.public_url(STATUS_CALLBACK_PATH),
            "https://mfa.example.com/v1/carrier/twilio/status"
        );
    }

    #[test]
    fn auth_token_is_never_serialized_or_printed() -> Result<(), serde_json::Error> {
        let mut c = Config::default();
        c.twilio.auth_token = SecretString::from("s3cr3t-value");
        let json = serde_json::to_string(&c)?;
        assert!(!json.contains("s3cr3t") && !json.contains("auth_token"));
        assert!(!format!("{c:?}").contains("s3cr3t"));
        // Missing from the input, it falls back to the default.
        let back: Config = serde_json::from_str(&json)?;
        assert_eq!(back.twilio.auth_token.expose_secret(), "sim-auth-token");
        Ok(())
    }
}
