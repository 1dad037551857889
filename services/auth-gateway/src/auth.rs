//! Who is calling: an operator with the admin token, or a registered agent
//! with its key. Secrets are compared in constant time and never logged.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;
use vigil_core::{AgentId, ProviderId};

use crate::{error::GatewayError, store};

pub const AGENT_ID_HEADER: &str = "x-vigil-agent-id";

/// The agent a request comes from, and the provider it is bound to.
#[derive(Debug, Clone, Copy)]
pub struct AgentIdentity {
    pub agent_id: AgentId,
    pub provider_id: ProviderId,
}

fn bearer(metadata: &MetadataMap) -> Option<&str> {
    metadata.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ")
}

pub fn require_admin(metadata: &MetadataMap, admin_token: &SecretString) -> Result<(), GatewayError> {
    let presented = bearer(metadata).ok_or(GatewayError::Unauthenticated)?;
    let expected = admin_token.expose_secret().as_bytes();
    // ct_eq on slices of different lengths is false without early exit on content.
    if bool::from(presented.as_bytes().ct_eq(expected)) {
        Ok(())
    } else {
        Err(GatewayError::Unauthenticated)
    }
}

/// A fresh agent key (256 random bits) and the hash that is stored.
pub fn new_agent_key() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key = format!("vak_{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash_key(&key);
    (key, hash)
}

fn hash_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

pub async fn authenticate_agent(metadata: &MetadataMap, pool: &PgPool) -> Result<AgentIdentity, GatewayError> {
    let agent_id = metadata
        .get(AGENT_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| AgentId::parse(v).ok())
        .ok_or(GatewayError::Unauthenticated)?;
    let key = bearer(metadata).ok_or(GatewayError::Unauthenticated)?;
    let mut conn = pool.acquire().await?;
    let agent = store::get_agent(&mut conn, agent_id.as_uuid()).await?;
    // Hash even when the agent is unknown, so timing does not reveal which ids exist.
    let presented = hash_key(key);
    let Some(agent) = agent else {
        return Err(GatewayError::Unauthenticated);
    };
    if !bool::from(presented.ct_eq(&agent.key_hash)) || !agent.enabled {
        return Err(GatewayError::Unauthenticated);
    }
    Ok(AgentIdentity {
        agent_id,
        provider_id: ProviderId::from_uuid(agent.provider_id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_token_must_match_exactly() {
        let token = SecretString::from("0123456789abcdef");
        let mut md = MetadataMap::new();
        assert!(require_admin(&md, &token).is_err());
        md.insert(
            "authorization",
            "Bearer 0123456789abcdeX".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert!(require_admin(&md, &token).is_err());
        md.insert(
            "authorization",
            "Bearer 0123456789abcdef0".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert!(require_admin(&md, &token).is_err());
        md.insert(
            "authorization",
            "Bearer 0123456789abcdef".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert!(require_admin(&md, &token).is_ok());
    }

    #[test]
    fn agent_keys_are_random_and_only_hashes_are_kept() {
        let (a, ha) = new_agent_key();
        let (b, hb) = new_agent_key();
        assert_ne!(a, b);
        assert_ne!(ha, hb);
        assert_eq!(hash_key(&a), ha);
        assert!(a.starts_with("vak_") && a.len() > 40);
    }
}
