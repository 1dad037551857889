//! Layered configuration: built-in defaults, then `VIGIL_` environment
//! variables, nested with `__`. (No config file layer yet: Kubernetes
//! ConfigMaps arrive as environment variables.)

use figment::{Figment, providers::Serialized};
use serde::{Serialize, de::DeserializeOwned};

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Reads `T` from its defaults overlaid with `VIGIL_*` environment variables
/// (`VIGIL_DATABASE_URL` sets `database_url`, `VIGIL_SMS__FROM` sets `sms.from`).
pub fn load_config<T: Serialize + DeserializeOwned + Default>() -> Result<T, ConfigError> {
    load_config_from(std::env::vars())
}

/// Like [`load_config`], from the given variables. Every value is taken as
/// text: figment's own `Env` provider reads `+15550000000` or an all-digit
/// token as a number, which a string field then refuses. Numeric and boolean
/// fields still parse, through `extract_lossy`.
pub fn load_config_from<T: Serialize + DeserializeOwned + Default>(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    for (name, value) in vars {
        let Some(key) = name.strip_prefix("VIGIL_").filter(|k| !k.is_empty()) else {
            continue;
        };
        let path = key.to_ascii_lowercase().replace("__", ".");
        figment = figment.merge(Serialized::default(&path, value));
    }
    figment.extract_lossy().map_err(|e| ConfigError(e.to_string()))
}

/// Database connections a service's pool keeps at most unless
/// `VIGIL_DATABASE_MAX_CONNECTIONS` says otherwise. A login holds one for a
/// few round trips, and a pool hands its connections out in turn, so a
/// larger pool only spreads the same work over more PostgreSQL processes: at
/// 700 logins/s on the 2-core benchmark box, 8 used 6% less CPU per login
/// than 20 (BENCHMARKS.md).
pub const DEFAULT_DATABASE_MAX_CONNECTIONS: u32 = 8;

/// Refuses a pool of no connections, which would answer no login.
pub fn check_database_max_connections(max: u32) -> Result<(), ConfigError> {
    if max == 0 {
        return Err(ConfigError::new("VIGIL_DATABASE_MAX_CONNECTIONS must be at least 1"));
    }
    Ok(())
}

/// `serialize_with` for secrets: the defaults layer never carries a secret,
/// and nothing that serialises a config can print one.
pub fn serialize_redacted<S: serde::Serializer, T>(_: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_needs_a_connection() {
        assert!(check_database_max_connections(DEFAULT_DATABASE_MAX_CONNECTIONS).is_ok());
        assert!(check_database_max_connections(1).is_ok());
        let refused = check_database_max_connections(0).err().map(|e| e.to_string());
        assert!(
            refused.is_some_and(|e| e.contains("VIGIL_DATABASE_MAX_CONNECTIONS")),
            "a pool of no connections would answer no login"
        );
    }
}
