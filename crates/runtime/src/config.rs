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

/// `serialize_with` for secrets: the defaults layer never carries a secret,
/// and nothing that serialises a config can print one.
pub fn serialize_redacted<S: serde::Serializer, T>(_: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("")
}
