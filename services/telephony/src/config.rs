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
/// Prefix of a call's TwiML URL, `{prefix}/{delivery_id}`, and of its gather
/// action (`.../gather`) and status callback (`.../status`).
pub const VOICE_PATH: &str = "/v1/carrier/twilio/voice";
/// Where devices post their signed push answers.
pub const PUSH_ANSWER_PATH: &str = "/v1/push/answer";
/// Where a device enrols for push with a one-time code.
pub const PUSH_ENROLL_PATH: &str = "/v1/push/enroll";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Where carrier callbacks and `/healthz`, `/readyz` are served
    /// (`VIGIL_HTTP_ADDR`).
    pub http_addr: String,
    /// This service's own database (`VIGIL_DATABASE_URL`).
    pub database_url: String,
    /// Connections the service keeps to it at most
    /// (`VIGIL_DATABASE_MAX_CONNECTIONS`; see [`vigil_runtime::config::DEFAULT_DATABASE_MAX_CONNECTIONS`]).
    /// A delivery takes one only for each of its short transactions, never
    /// while a carrier answers, so this does not grow with `delivery_concurrency`.
    pub database_max_connections: u32,
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
    /// (`VIGIL_SEND_ATTEMPTS`), per carrier.
    pub send_attempts: u32,
    /// Carriers in order of preference (`VIGIL_CARRIERS__0__NAME`,
    /// `VIGIL_CARRIERS__0__BASE_URL`, ..., `VIGIL_CARRIERS__1__...`). A
    /// delivery the first cannot take fails over to the next. Empty (the
    /// default): the single carrier of `VIGIL_TWILIO__*`, named `twilio`.
    #[serde(deserialize_with = "carriers::deserialize")]
    pub carriers: Vec<CarrierConfig>,
    /// The FCM-style push service (`VIGIL_PUSH__*`).
    pub push: PushConfig,
    /// Two-way SMS reply keywords (`VIGIL_SMS_KEYWORDS__*`).
    pub sms_keywords: SmsKeywords,
    /// Seconds a called phone may ring before the call is `no-answer`
    /// (`VIGIL_CALL_RING_SECONDS`).
    pub call_ring_seconds: u32,
    /// Seconds of silence before a call's gather gives up
    /// (`VIGIL_GATHER_TIMEOUT_SECONDS`).
    pub gather_timeout_seconds: u32,
    /// Largest clock difference accepted between a push answer's timestamp
    /// and now (`VIGIL_PUSH_ANSWER_MAX_SKEW_SECONDS`).
    pub push_answer_max_skew_seconds: u32,
    /// How long a delivery without `expires_at` may be retried and answered
    /// (`VIGIL_DEFAULT_EXPIRY_SECONDS`).
    pub default_expiry_seconds: u32,
    /// How long a device's enrolment waits for the challenge service
    /// (`VIGIL_RPC_TIMEOUT_MS`).
    pub rpc_timeout_ms: u64,
    /// Deliveries sent side by side (`VIGIL_DELIVERY_CONCURRENCY`): each
    /// waits on a carrier's HTTP API, so this, not CPU, bounds how many
    /// SMS a second one replica sends. None holds a database connection
    /// while it waits.
    pub delivery_concurrency: usize,
    /// Days a delivery is kept, with its attempts, its carrier's reports
    /// and the replies to it (`VIGIL_DELIVERY_RETENTION_DAYS`, default 90);
    /// 0 keeps them for ever.
    pub delivery_retention_days: u32,
}

/// Most deliveries sent side by side: each is a task, an HTTP request in
/// flight and a message JetStream waits to have acknowledged.
pub const MAX_DELIVERY_CONCURRENCY: usize = 256;

/// One Twilio-style carrier account.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CarrierConfig {
    /// Names the carrier in events, rows and logs (`twilio-primary`, ...).
    pub name: String,
    pub base_url: String,
    pub account_sid: String,
    /// API password and webhook signing key. Never serialized.
    #[serde(skip_serializing)]
    pub auth_token: SecretString,
    /// Sender of SMS and caller ID of calls, E.164.
    pub from_number: String,
}

/// The FCM-style push service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PushConfig {
    /// API root (`VIGIL_PUSH__BASE_URL`), e.g. `https://fcm.googleapis.com`
    /// or the carrier simulator.
    pub base_url: String,
    /// `VIGIL_PUSH__PROJECT_ID`.
    pub project_id: String,
    /// OAuth bearer token for the send API (`VIGIL_PUSH__ACCESS_TOKEN`).
    /// Never serialized; unset falls back to the simulator's token.
    #[serde(skip_serializing)]
    pub access_token: SecretString,
}

/// Words a user may reply to a two-way SMS instead of the code, each a
/// comma-separated list matched case-insensitively on the whole reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SmsKeywords {
    /// `VIGIL_SMS_KEYWORDS__APPROVE`, default `YES,Y`.
    pub approve: String,
    /// `VIGIL_SMS_KEYWORDS__DENY`, default `NO,N`.
    pub deny: String,
    /// `VIGIL_SMS_KEYWORDS__FRAUD`, default `FRAUD,0`.
    pub fraud: String,
}

impl Default for CarrierConfig {
    fn default() -> Self {
        let twilio = TwilioConfig::default();
        Self {
            name: String::new(),
            base_url: twilio.base_url,
            account_sid: twilio.account_sid,
            auth_token: twilio.auth_token,
            from_number: twilio.from_number,
        }
    }
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:4010".into(),
            project_id: "vigil-local".into(),
            access_token: SecretString::from("sim-push-token"),
        }
    }
}

impl Default for SmsKeywords {
    fn default() -> Self {
        Self {
            approve: "YES,Y".into(),
            deny: "NO,N".into(),
            fraud: "FRAUD,0".into(),
        }
    }
}

mod carriers {
    use std::fmt;

    use serde::Deserializer;
    use serde::de::{Error, MapAccess, SeqAccess, Visitor};

    use super::CarrierConfig;

    /// A list, or (as environment variables make it) a map keyed by index.
    /// A visitor rather than an untagged enum, so each field is read straight
    /// from the config source (which reads `0042` as text for a text field).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<CarrierConfig>, D::Error> {
        d.deserialize_any(CarriersVisitor)
    }

    struct CarriersVisitor;

    impl<'de> Visitor<'de> for CarriersVisitor {
        type Value = Vec<CarrierConfig>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of carriers, or carriers keyed 0, 1, 2, ...")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut list = Vec::new();
            while let Some(carrier) = seq.next_element()? {
                list.push(carrier);
            }
            Ok(list)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut indexed = Vec::new();
            while let Some(key) = map.next_key::<String>()? {
                let index: u32 = key
                    .parse()
                    .map_err(|_| A::Error::custom(format!("carriers are keyed 0, 1, 2, ..., not {key:?}")))?;
                indexed.push((index, map.next_value::<CarrierConfig>()?));
            }
            indexed.sort_by_key(|(i, _)| *i);
            Ok(indexed.into_iter().map(|(_, c)| c).collect())
        }
    }
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
    /// Sender number of outgoing SMS and caller ID of calls, E.164
    /// (`VIGIL_TWILIO__FROM_NUMBER`).
    pub from_number: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http_addr: "127.0.0.1:8083".into(),
            database_url: "postgres://postgres@127.0.0.1:5432/vigil_telephony".into(),
            database_max_connections: vigil_runtime::config::DEFAULT_DATABASE_MAX_CONNECTIONS,
            nats_url: "nats://127.0.0.1:4222".into(),
            stream_replicas: 1,
            public_base_url: "http://127.0.0.1:8083".into(),
            twilio: TwilioConfig::default(),
            send_attempts: 3,
            carriers: Vec::new(),
            push: PushConfig::default(),
            sms_keywords: SmsKeywords::default(),
            call_ring_seconds: 30,
            gather_timeout_seconds: 10,
            push_answer_max_skew_seconds: 300,
            default_expiry_seconds: 300,
            rpc_timeout_ms: 2000,
            delivery_concurrency: 16,
            delivery_retention_days: 90,
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
        vigil_runtime::config::check_database_max_connections(self.database_max_connections)?;
        if !(1..=MAX_DELIVERY_CONCURRENCY).contains(&self.delivery_concurrency) {
            return Err(ConfigError::new(format!(
                "VIGIL_DELIVERY_CONCURRENCY must be between 1 and {MAX_DELIVERY_CONCURRENCY}"
            )));
        }
        http_url("VIGIL_PUBLIC_BASE_URL", &self.public_base_url)?;
        http_url("VIGIL_PUSH__BASE_URL", &self.push.base_url)?;
        let mut names = std::collections::HashSet::new();
        for (i, carrier) in self.carrier_list().iter().enumerate() {
            let var = |field: &str| {
                if self.carriers.is_empty() {
                    format!("VIGIL_TWILIO__{field}")
                } else {
                    format!("VIGIL_CARRIERS__{i}__{field}")
                }
            };
            http_url(&var("BASE_URL"), &carrier.base_url)?;
            PhoneNumber::parse(&carrier.from_number)
                .map_err(|e| ConfigError::new(format!("{}: {e}", var("FROM_NUMBER"))))?;
            if carrier.account_sid.is_empty() {
                return Err(ConfigError::new(format!("{} must be set", var("ACCOUNT_SID"))));
            }
            if !names.insert(carrier.name.clone()) {
                return Err(ConfigError::new(format!(
                    "{}: carrier names must be unique, {:?} repeats",
                    var("NAME"),
                    carrier.name
                )));
            }
        }
        if self.send_attempts == 0 {
            return Err(ConfigError::new("VIGIL_SEND_ATTEMPTS must be at least 1"));
        }
        if self.call_ring_seconds == 0 || self.gather_timeout_seconds == 0 {
            return Err(ConfigError::new(
                "VIGIL_CALL_RING_SECONDS and VIGIL_GATHER_TIMEOUT_SECONDS must be at least 1",
            ));
        }
        if self.default_expiry_seconds == 0 {
            return Err(ConfigError::new("VIGIL_DEFAULT_EXPIRY_SECONDS must be at least 1"));
        }
        Ok(())
    }

    /// The carriers in order of preference: `carriers`, or the single
    /// `twilio` carrier when none is listed. Unnamed carriers are called
    /// `carrier-<n>`.
    pub fn carrier_list(&self) -> Vec<CarrierConfig> {
        if self.carriers.is_empty() {
            return vec![CarrierConfig {
                name: crate::carrier::TWILIO.to_owned(),
                base_url: self.twilio.base_url.clone(),
                account_sid: self.twilio.account_sid.clone(),
                auth_token: self.twilio.auth_token.clone(),
                from_number: self.twilio.from_number.clone(),
            }];
        }
        self.carriers
            .iter()
            .enumerate()
            .map(|(i, c)| CarrierConfig {
                name: if c.name.is_empty() {
                    format!("carrier-{i}")
                } else {
                    c.name.clone()
                },
                ..c.clone()
            })
            .collect()
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
    fn reads_an_ordered_carrier_list() -> Result<(), ConfigError> {
        let c = Config::from_vars(vars(&[
            ("VIGIL_CARRIERS__1__NAME", "backup"),
            ("VIGIL_CARRIERS__1__BASE_URL", "https://backup.example.com"),
            ("VIGIL_CARRIERS__1__AUTH_TOKEN", "0042"),
            ("VIGIL_CARRIERS__0__NAME", "primary"),
            ("VIGIL_CARRIERS__0__ACCOUNT_SID", "ACp"),
            ("VIGIL_CARRIERS__0__FROM_NUMBER", "+15557654321"),
        ]))?;
        let list = c.carrier_list();
        let names: Vec<_> = list.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["primary", "backup"]);
        assert_eq!(list[0].account_sid, "ACp");
        assert_eq!(list[0].from_number, "+15557654321");
        assert_eq!(list[1].base_url, "https://backup.example.com");
        assert_eq!(list[1].auth_token.expose_secret(), "0042");
        assert!(c.validate().is_ok());
        assert!(Config::from_vars(vars(&[("VIGIL_CARRIERS__X__NAME", "x")])).is_err());
        Ok(())
    }

    #[test]
    fn a_single_twilio_carrier_stays_the_default() -> Result<(), ConfigError> {
        let c = Config::from_vars(vars(&[("VIGIL_TWILIO__ACCOUNT_SID", "AC9")]))?;
        let list = c.carrier_list();
        assert_eq!(list.len(), 1);
        assert_eq!((list[0].name.as_str(), list[0].account_sid.as_str()), ("twilio", "AC9"));
        let named = |name: &str| CarrierConfig {
            name: name.into(),
            ..CarrierConfig::default()
        };
        let dup = Config {
            carriers: vec![named("a"), named("a")],
            ..Config::default()
        };
        assert!(dup.validate().is_err(), "names must be unique");
        Ok(())
    }

    #[test]
    fn delivery_concurrency_and_pool_size_are_bounded() -> Result<(), ConfigError> {
        let with = |n: &str| Config::from_vars(vars(&[("VIGIL_DELIVERY_CONCURRENCY", n)]));
        assert_eq!(with("16")?.delivery_concurrency, 16);
        assert!(with("16")?.validate().is_ok());
        assert!(with("0")?.validate().is_err(), "nothing would ever be sent");
        assert!(with(&MAX_DELIVERY_CONCURRENCY.to_string())?.validate().is_ok());
        let over = (MAX_DELIVERY_CONCURRENCY + 1).to_string();
        assert!(with(&over)?.validate().is_err(), "unbounded sends");
        let pool = |n: &str| Config::from_vars(vars(&[("VIGIL_DATABASE_MAX_CONNECTIONS", n)]));
        assert_eq!(pool("3")?.database_max_connections, 3);
        assert!(pool("3")?.validate().is_ok());
        assert!(pool("0")?.validate().is_err(), "no connection at all");
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
        c.push.access_token = SecretString::from("s3cr3t-push");
        c.carriers = vec![CarrierConfig {
            auth_token: SecretString::from("s3cr3t-backup"),
            ..CarrierConfig::default()
        }];
        let json = serde_json::to_string(&c)?;
        assert!(!json.contains("s3cr3t") && !json.contains("auth_token"));
        assert!(!format!("{c:?}").contains("s3cr3t"));
        // Missing from the input, it falls back to the default.
        let back: Config = serde_json::from_str(&json)?;
        assert_eq!(back.twilio.auth_token.expose_secret(), "sim-auth-token");
        Ok(())
    }
}
