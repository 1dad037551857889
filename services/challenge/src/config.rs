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
    /// Connections the service keeps to it at most
    /// (`VIGIL_DATABASE_MAX_CONNECTIONS`; see [`vigil_runtime::config::DEFAULT_DATABASE_MAX_CONNECTIONS`]).
    pub database_max_connections: u32,
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
    /// Failed answers within `lockout_window_secs` that lock a user out
    /// (`VIGIL_LOCKOUT_THRESHOLD`), and for how long (`VIGIL_LOCKOUT_DURATION_SECS`).
    pub lockout_threshold: u32,
    pub lockout_window_secs: u32,
    pub lockout_duration_secs: u32,
    /// Argon2id memory cost in KiB for PINs (`VIGIL_PIN_HASH_MEMORY_KIB`);
    /// tests lower it, production keeps the OWASP default.
    pub pin_hash_memory_kib: u32,
    /// Key-encryption keys for OTP seeds (`VIGIL_KEYS`, `id:base64`
    /// comma-separated, the first active); required.
    #[serde(serialize_with = "vigil_runtime::config::serialize_redacted")]
    pub keys: SecretString,
    /// Issuer shown in authenticator apps (`VIGIL_OTP_ISSUER`).
    pub otp_issuer: String,
    /// Preauth, Authenticate and VerifyPasscode calls per user (by username)
    /// within `VIGIL_RATE_LIMIT_USER_WINDOW_SECS` (`VIGIL_RATE_LIMIT_USER_MAX`);
    /// 0 turns the limit off.
    pub rate_limit_user_max: u32,
    pub rate_limit_user_window_secs: u32,
    /// The same calls per agent (`VIGIL_RATE_LIMIT_AGENT_MAX`,
    /// `VIGIL_RATE_LIMIT_AGENT_WINDOW_SECS`); 0 turns the limit off.
    pub rate_limit_agent_max: u32,
    pub rate_limit_agent_window_secs: u32,
    /// Telephony's public push enrolment endpoint, carried in the enrolment
    /// QR payload (`VIGIL_PUSH_ENROLL_URL`).
    pub push_enroll_url: String,
    /// How long a push enrolment code works, in seconds
    /// (`VIGIL_PUSH_ENROLLMENT_TTL_SECS`, default 600).
    pub push_enrollment_ttl_secs: u32,
    /// Requests of one kind (preauth, start, verify, ...) handled at once
    /// (`VIGIL_RPC_MAX_IN_FLIGHT`); more wait in arrival order and are
    /// dropped unanswered once their caller's deadline has passed.
    pub rpc_max_in_flight: usize,
    /// Days a finished challenge is kept (`VIGIL_CHALLENGE_RETENTION_DAYS`,
    /// default 90); 0 keeps challenges for ever.
    pub challenge_retention_days: u32,
    /// Days the audit records are kept: each login's decision and each
    /// change to a user (`VIGIL_AUDIT_RETENTION_DAYS`, default 365); 0 keeps
    /// them for ever.
    pub audit_retention_days: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http_addr: "127.0.0.1:8082".into(),
            database_url: "postgres://postgres@127.0.0.1:5432/vigil_challenge".into(),
            database_max_connections: vigil_runtime::config::DEFAULT_DATABASE_MAX_CONNECTIONS,
            nats_url: "nats://127.0.0.1:4222".into(),
            stream_replicas: 1,
            challenge_lifetime_secs: 120,
            max_verify_attempts: 3,
            code_key: SecretString::from(""),
            sms_template: "Your Vigil verification code is {code}. It expires in {minutes} min.".into(),
            lockout_threshold: 5,
            lockout_window_secs: 15 * 60,
            lockout_duration_secs: 15 * 60,
            pin_hash_memory_kib: 19 * 1024,
            keys: SecretString::from(""),
            otp_issuer: "Vigil".into(),
            rate_limit_user_max: 20,
            rate_limit_user_window_secs: 60,
            rate_limit_agent_max: 12_000,
            rate_limit_agent_window_secs: 60,
            push_enroll_url: "http://127.0.0.1:8083/v1/push/enroll".into(),
            push_enrollment_ttl_secs: 600,
            rpc_max_in_flight: vigil_bus::rpc::DEFAULT_MAX_IN_FLIGHT,
            challenge_retention_days: 90,
            audit_retention_days: 365,
        }
    }
}

impl Config {
    pub fn pin_hasher(&self) -> Result<vigil_secrets::PasswordHasher, ConfigError> {
        vigil_secrets::PasswordHasher::new(vigil_secrets::HashParams {
            m_cost_kib: self.pin_hash_memory_kib,
            ..vigil_secrets::HashParams::OWASP
        })
        .map_err(|e| ConfigError::new(format!("VIGIL_PIN_HASH_MEMORY_KIB: {e}")))
    }

    pub fn keyring(&self) -> Result<vigil_secrets::Keyring, ConfigError> {
        vigil_secrets::Keyring::from_secret(&self.keys).map_err(|e| ConfigError::new(format!("VIGIL_KEYS: {e}")))
    }

    pub fn rate_limits(&self) -> crate::ratelimit::Limits {
        let limit = |max: u32, secs: u32| crate::ratelimit::Limit {
            max,
            window: chrono::Duration::seconds(i64::from(secs)),
        };
        crate::ratelimit::Limits {
            user: limit(self.rate_limit_user_max, self.rate_limit_user_window_secs),
            agent: limit(self.rate_limit_agent_max, self.rate_limit_agent_window_secs),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        vigil_runtime::config::check_database_max_connections(self.database_max_connections)?;
        self.keyring()?;
        if self.rpc_max_in_flight == 0 || self.rpc_max_in_flight > tokio::sync::Semaphore::MAX_PERMITS {
            return Err(ConfigError::new(format!(
                "VIGIL_RPC_MAX_IN_FLIGHT must be between 1 and {}",
                tokio::sync::Semaphore::MAX_PERMITS
            )));
        }
        if self.code_key.expose_secret().len() < 16 {
            return Err(ConfigError::new("VIGIL_CODE_KEY must be set to at least 16 characters"));
        }
        if self.challenge_lifetime_secs == 0 || self.max_verify_attempts == 0 || self.push_enrollment_ttl_secs == 0 {
            return Err(ConfigError::new(
                "challenge lifetime, verify attempts and push enrolment TTL must be positive",
            ));
        }
        if self.lockout_threshold == 0 || self.lockout_window_secs == 0 || self.lockout_duration_secs == 0 {
            return Err(ConfigError::new(
                "lockout threshold, window and duration must be positive",
            ));
        }
        if self.rate_limit_user_window_secs == 0 || self.rate_limit_agent_window_secs == 0 {
            return Err(ConfigError::new(
                "rate-limit windows must be positive (set the _MAX to 0 to turn a limit off)",
            ));
        }
        match url::Url::parse(&self.push_enroll_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => return Err(ConfigError::new("VIGIL_PUSH_ENROLL_URL must be an http(s) URL")),
        }
        if !self.sms_template.contains("{code}") {
            return Err(ConfigError::new("sms_template must contain {code}"));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn valid() -> Config {
        Config {
            code_key: SecretString::from("a-code-key-of-16-or-more"),
            // A 32-byte key, base64: what `openssl rand -base64 32` prints.
            keys: SecretString::from("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
            ..Config::default()
        }
    }

    #[test]
    fn the_rpc_bound_defaults_to_the_bus_default_and_must_be_positive() {
        assert!(valid().validate().is_ok());
        assert_eq!(valid().rpc_max_in_flight, vigil_bus::rpc::DEFAULT_MAX_IN_FLIGHT);
        let zero = Config {
            rpc_max_in_flight: 0,
            ..valid()
        };
        let refused = zero.validate().expect_err("0 handlers would answer nothing");
        assert!(refused.to_string().contains("VIGIL_RPC_MAX_IN_FLIGHT"), "{refused}");
    }
}
