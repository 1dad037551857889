//! Layered configuration: built-in defaults, then `VIGIL_` environment
//! variables, nested with `__`. (No config file layer yet: Kubernetes
//! ConfigMaps arrive as environment variables.)

use figment::{
    Figment,
    providers::{Env, Serialized},
};
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
    Figment::from(Serialized::defaults(T::default()))
        .merge(Env::prefixed("VIGIL_").split("__"))
        .extract()
        .map_err(|e| ConfigError(e.to_string()))
}

/// `serialize_with` for secrets: the defaults layer never carries a secret,
/// and nothing that serialises a config can print one.
pub fn serialize_redacted<S: serde::Serializer, T>(_: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("")
}
