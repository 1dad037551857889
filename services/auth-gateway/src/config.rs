use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use vigil_runtime::ConfigError;
use vigil_secrets::{HashParams, Keyring, PasswordHasher, TokenHasher};

/// The auth gateway's settings, from `VIGIL_*` environment variables.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// gRPC for agents and admins (`VIGIL_GRPC_ADDR`).
    pub grpc_addr: String,
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
    /// Bootstrap operator token for the admin API (`VIGIL_ADMIN_TOKEN`); required.
    #[serde(serialize_with = "vigil_runtime::config::serialize_redacted")]
    pub admin_token: SecretString,
    /// Deadline for the challenge service's answers (`VIGIL_RPC_TIMEOUT_MS`);
    /// past it, the login is denied with reason `unavailable`.
    pub rpc_timeout_ms: u64,
    /// Logins (Preauth, Authenticate, VerifyPasscode, RADIUS requests) this
    /// gateway works on at once (`VIGIL_MAX_IN_FLIGHT`). Past it a login is
    /// denied at once with reason `unavailable` ("overloaded") instead of
    /// queueing until `VIGIL_RPC_TIMEOUT_MS`; counted in `vigil_gateway_shed_total`.
    /// 0 (the default): [`IN_FLIGHT_PER_CPU`] per CPU this process may use,
    /// at least [`MIN_AUTO_IN_FLIGHT`] (see [`Config::in_flight_bound`]).
    pub max_in_flight: usize,
    /// Key-encryption keys for agent keys at rest (`VIGIL_KEYS`, `id:base64`
    /// comma-separated, the first active; `openssl rand -base64 32`); required.
    #[serde(serialize_with = "vigil_runtime::config::serialize_redacted")]
    pub keys: SecretString,
    /// Pepper of the keyed hash that stores admin tokens (`VIGIL_TOKEN_PEPPER`,
    /// base64 of at least 32 bytes); required.
    #[serde(serialize_with = "vigil_runtime::config::serialize_redacted")]
    pub token_pepper: SecretString,
    /// Argon2id memory for activation passwords, KiB (`VIGIL_PASSWORD_HASH_MEMORY_KIB`).
    pub password_hash_memory_kib: u32,
    /// How long activation credentials stay valid (`VIGIL_ACTIVATION_TTL_SECS`).
    pub activation_ttl_secs: u32,
    /// RADIUS (UDP) for NPS, RD Gateway and VPNs (`VIGIL_RADIUS_ADDR`);
    /// an empty string turns RADIUS off.
    pub radius_addr: String,
    /// Fraud webhook: wait after a failed attempt (`VIGIL_WEBHOOK_RETRY_BASE_MS`),
    /// doubling after each further failure up to an hour; attempts before giving
    /// up (`VIGIL_WEBHOOK_MAX_ATTEMPTS`); deadline per attempt (`VIGIL_WEBHOOK_TIMEOUT_MS`).
    pub webhook_retry_base_ms: u64,
    pub webhook_max_attempts: u32,
    pub webhook_timeout_ms: u64,
    /// Days an activation credential is kept once it has expired, used or
    /// not (`VIGIL_ACTIVATION_RETENTION_DAYS`, default 30); 0 keeps them
    /// for ever. The audit log records each registration either way.
    pub activation_retention_days: u32,
    /// Days the security audit log and the record of each fraud
    /// notification sent are kept (`VIGIL_AUDIT_RETENTION_DAYS`, default
    /// 365, as the challenge service's audit); 0 keeps them for ever.
    pub audit_retention_days: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            grpc_addr: "127.0.0.1:50051".into(),
            http_addr: "127.0.0.1:8081".into(),
            database_url: "postgres://postgres@127.0.0.1:5432/vigil_gateway".into(),
            database_max_connections: vigil_runtime::config::DEFAULT_DATABASE_MAX_CONNECTIONS,
            nats_url: "nats://127.0.0.1:4222".into(),
            stream_replicas: 1,
            admin_token: SecretString::from(""),
            rpc_timeout_ms: 2000,
            max_in_flight: 0,
            keys: SecretString::from(""),
            token_pepper: SecretString::from(""),
            password_hash_memory_kib: 19 * 1024,
            activation_ttl_secs: 600,
            radius_addr: "127.0.0.1:1812".into(),
            webhook_retry_base_ms: 5000,
            webhook_max_attempts: 8,
            webhook_timeout_ms: 10_000,
            activation_retention_days: 30,
            audit_retention_days: 365,
        }
    }
}

/// Logins in flight per CPU when `VIGIL_MAX_IN_FLIGHT` is 0. Measured on
/// the 2-core reference box (BENCHMARKS.md), offered 1,000 logins/s, more
/// than it answers: 64 in flight served 770/s at p99 145 ms where 512 served
/// 623/s at p99 1.15 s; what is admitted beyond what the machine serves
/// only queues.
pub const IN_FLIGHT_PER_CPU: usize = 32;
/// The least the automatic bound gives, so a one-CPU pod still takes bursts.
pub const MIN_AUTO_IN_FLIGHT: usize = 64;

impl Config {
    /// Logins this gateway admits at once: `VIGIL_MAX_IN_FLIGHT`, or when
    /// that is 0, [`IN_FLIGHT_PER_CPU`] per CPU the process may use (cgroup
    /// quotas included), at least [`MIN_AUTO_IN_FLIGHT`].
    pub fn in_flight_bound(&self) -> usize {
        if self.max_in_flight > 0 {
            return self.max_in_flight;
        }
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        (cpus * IN_FLIGHT_PER_CPU).max(MIN_AUTO_IN_FLIGHT)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        vigil_runtime::config::check_database_max_connections(self.database_max_connections)?;
        if self.admin_token.expose_secret().len() < 16 {
            return Err(ConfigError::new(
                "VIGIL_ADMIN_TOKEN must be set to at least 16 characters",
            ));
        }
        if self.rpc_timeout_ms == 0 {
            return Err(ConfigError::new("VIGIL_RPC_TIMEOUT_MS must be positive"));
        }
        if self.max_in_flight > tokio::sync::Semaphore::MAX_PERMITS {
            return Err(ConfigError::new(format!(
                "VIGIL_MAX_IN_FLIGHT must be between 0 (sized by the CPUs) and {}",
                tokio::sync::Semaphore::MAX_PERMITS
            )));
        }
        if self.webhook_retry_base_ms == 0 || self.webhook_max_attempts == 0 || self.webhook_timeout_ms == 0 {
            return Err(ConfigError::new(
                "VIGIL_WEBHOOK_RETRY_BASE_MS, VIGIL_WEBHOOK_MAX_ATTEMPTS and VIGIL_WEBHOOK_TIMEOUT_MS must be positive",
            ));
        }
        if self.activation_ttl_secs == 0 {
            return Err(ConfigError::new("VIGIL_ACTIVATION_TTL_SECS must be positive"));
        }
        self.keyring()?;
        self.token_hasher()?;
        self.password_hasher()?;
        Ok(())
    }

    pub fn webhook_settings(&self) -> crate::fraud_webhook::Settings {
        crate::fraud_webhook::Settings {
            retry_base: std::time::Duration::from_millis(self.webhook_retry_base_ms),
            max_attempts: i32::try_from(self.webhook_max_attempts).unwrap_or(i32::MAX),
            timeout: std::time::Duration::from_millis(self.webhook_timeout_ms),
        }
    }

    pub fn keyring(&self) -> Result<Keyring, ConfigError> {
        Keyring::from_secret(&self.keys).map_err(|e| ConfigError::new(format!("VIGIL_KEYS: {e}")))
    }

    pub fn token_hasher(&self) -> Result<TokenHasher, ConfigError> {
        TokenHasher::from_base64(&self.token_pepper).map_err(|e| ConfigError::new(format!("VIGIL_TOKEN_PEPPER: {e}")))
    }

    pub fn password_hasher(&self) -> Result<PasswordHasher, ConfigError> {
        PasswordHasher::new(HashParams {
            m_cost_kib: self.password_hash_memory_kib,
            ..HashParams::OWASP
        })
        .map_err(|e| ConfigError::new(format!("VIGIL_PASSWORD_HASH_MEMORY_KIB: {e}")))
    }
}

#[cfg(test)]
mod in_flight_tests {
    use super::*;

    #[test]
    fn an_explicit_bound_is_kept_and_zero_is_sized_by_the_cpus() {
        let explicit = Config {
            max_in_flight: 7,
            ..Config::default()
        };
        assert_eq!(explicit.in_flight_bound(), 7);
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let auto = Config::default();
        assert_eq!(auto.max_in_flight, 0);
        assert_eq!(
            auto.in_flight_bound(),
            (cpus * IN_FLIGHT_PER_CPU).max(MIN_AUTO_IN_FLIGHT)
        );
        assert!(auto.in_flight_bound() >= MIN_AUTO_IN_FLIGHT);
    }
}
