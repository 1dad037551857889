use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use vigil_runtime::ConfigError;

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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            grpc_addr: "127.0.0.1:50051".into(),
            http_addr: "127.0.0.1:8081".into(),
            database_url: "postgres://postgres@127.0.0.1:5432/vigil_gateway".into(),
            nats_url: "nats://127.0.0.1:4222".into(),
            stream_replicas: 1,
            admin_token: SecretString::from(""),
            rpc_timeout_ms: 2000,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.admin_token.expose_secret().len() < 16 {
            return Err(ConfigError::new(
                "VIGIL_ADMIN_TOKEN must be set to at least 16 characters",
            ));
        }
        if self.rpc_timeout_ms == 0 {
            return Err(ConfigError::new("VIGIL_RPC_TIMEOUT_MS must be positive"));
        }
        Ok(())
    }
}
