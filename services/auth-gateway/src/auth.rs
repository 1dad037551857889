//! Who is calling: an operator (the bootstrap token or a provider admin
//! token) or a registered agent with a signed request. Secrets are compared
//! in constant time and never logged.

use std::net::IpAddr;

use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;
use vigil_agent_auth::{Presented, SignatureError};
use vigil_core::{AgentId, ProviderId};
use vigil_secrets::Aad;

use crate::{app::Gateway, error::GatewayError, store};

/// The agent a request comes from, the provider it is bound to, and the
/// policy it applies.
#[derive(Debug, Clone)]
pub struct AgentIdentity {
    pub agent_id: AgentId,
    pub provider_id: ProviderId,
    pub require_user_match: bool,
    pub remember_minutes: u32,
    pub trusted_networks: Vec<ipnet::IpNet>,
    pub block_user_on_fraud: bool,
    /// The provider's toll-fraud caps.
    pub caps: vigil_proto::rpc::DeliveryCaps,
}

/// A provider's trusted networks as stored (validated CIDRs on the way in).
pub fn parse_networks(networks: &[String]) -> Vec<ipnet::IpNet> {
    networks.iter().filter_map(|n| n.parse().ok()).collect()
}

impl AgentIdentity {
    pub fn from_row(agent: &store::AgentRow) -> Self {
        Self {
            agent_id: AgentId::from_uuid(agent.id),
            provider_id: ProviderId::from_uuid(agent.provider_id),
            require_user_match: agent.require_user_match,
            remember_minutes: u32::try_from(agent.remember_minutes).unwrap_or(0),
            trusted_networks: parse_networks(&agent.trusted_networks),
            block_user_on_fraud: agent.block_user_on_fraud,
            caps: agent.caps.to_wire(),
        }
    }

    /// Whether `client_ip` is on one of the provider's trusted networks. An
    /// address that does not parse is never trusted.
    pub fn is_trusted(&self, client_ip: &str) -> bool {
        client_ip
            .trim()
            .parse::<IpAddr>()
            .is_ok_and(|ip| self.trusted_networks.iter().any(|net| net.contains(&ip)))
    }
}

/// Who may use the admin API, and for which providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminScope {
    /// The bootstrap token: every provider, and creating providers.
    Operator,
    /// A provider admin token: that provider only.
    Provider {
        token_id: uuid::Uuid,
        provider_id: uuid::Uuid,
    },
}

impl AdminScope {
    pub fn require_operator(self) -> Result<(), GatewayError> {
        match self {
            Self::Operator => Ok(()),
            Self::Provider { .. } => Err(GatewayError::PermissionDenied(
                "this call needs the operator token".into(),
            )),
        }
    }

    /// A provider token reaching for another provider learns nothing: "not found".
    pub fn require_provider(self, provider_id: uuid::Uuid) -> Result<(), GatewayError> {
        match self {
            Self::Provider { provider_id: own, .. } if own != provider_id => {
                Err(GatewayError::NotFound("no such provider".into()))
            }
            _ => Ok(()),
        }
    }

    /// For audit trails.
    pub fn actor(self) -> String {
        match self {
            Self::Operator => "operator".into(),
            Self::Provider { token_id, .. } => format!("admin_token:{token_id}"),
        }
    }
}

fn bearer(metadata: &MetadataMap) -> Option<&str> {
    metadata.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ")
}

const ADMIN_TOKEN_PURPOSE: &str = "admin_token";

pub async fn require_admin(metadata: &MetadataMap, gateway: &Gateway) -> Result<AdminScope, GatewayError> {
    let presented = bearer(metadata).ok_or(GatewayError::Unauthenticated)?;
    let operator = gateway.admin_token.expose_secret().as_bytes();
    // ct_eq on slices of different lengths is false without early exit on content.
    if bool::from(presented.as_bytes().ct_eq(operator)) {
        return Ok(AdminScope::Operator);
    }
    if !presented.starts_with("vat_") {
        return Err(GatewayError::Unauthenticated);
    }
    // Found by its keyed hash: the lookup itself compares hashes, not tokens.
    let hash = gateway.tokens.hash(ADMIN_TOKEN_PURPOSE, presented.as_bytes());
    let mut conn = gateway.pool.acquire().await?;
    match store::find_admin_token(&mut conn, hash.as_bytes()).await? {
        Some((token_id, provider_id)) => Ok(AdminScope::Provider { token_id, provider_id }),
        None => Err(GatewayError::Unauthenticated),
    }
}

/// A new provider admin token and the hash that is stored.
pub fn new_admin_token(gateway: &Gateway) -> (SecretString, Vec<u8>) {
    let token = vigil_secrets::generate_token(&mut rand::rng(), "vat");
    let hash = gateway
        .tokens
        .hash(ADMIN_TOKEN_PURPOSE, token.expose_secret().as_bytes())
        .into_bytes();
    (token, hash)
}

/// A fresh agent key (256 random bits), its hash, and its ciphertext under
/// the active key-encryption key, bound to the agent.
pub fn new_agent_key(gateway: &Gateway, agent_id: AgentId) -> Result<(SecretString, Vec<u8>, Vec<u8>), GatewayError> {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key = SecretString::from(format!("vak_{}", hex::encode(bytes)));
    let hash = Sha256::digest(key.expose_secret().as_bytes()).to_vec();
    let ciphertext = gateway
        .keyring
        .encrypt(
            &mut rand::rng(),
            key.expose_secret().as_bytes(),
            &agent_key_aad(agent_id),
        )
        .map_err(|e| GatewayError::Secret(e.to_string()))?;
    Ok((key, hash, ciphertext))
}

fn agent_key_aad(agent_id: AgentId) -> Aad {
    Aad::new("agent_key").with("agent", agent_id.to_string())
}

/// An agent's credentials as presented, checked for all that needs neither
/// its key nor the database: well-formed headers, an agent id, a clock within
/// the allowed skew. A request refused here costs nothing more: it takes no
/// admission slot and reaches no database, so a flood of unsigned or replayed-
/// late requests cannot crowd out signed logins.
pub struct Credentials {
    presented: Presented,
    agent_id: AgentId,
}

fn refused(method: &str, why: &str) -> GatewayError {
    tracing::warn!(why, method, "agent request refused");
    GatewayError::Unauthenticated
}

pub fn credentials(metadata: &MetadataMap, method: &str, now_secs: i64) -> Result<Credentials, GatewayError> {
    let presented = Presented::from_metadata(metadata).map_err(|e| refused(method, &e.to_string()))?;
    let agent_id = AgentId::parse(&presented.agent_id).map_err(|_| refused(method, "malformed agent id"))?;
    presented
        .check_clock(now_secs)
        .map_err(|_| refused(method, "clock skew"))?;
    Ok(Credentials { presented, agent_id })
}

/// Checks a signed agent request, its credentials already read
/// ([`credentials`]): the agent (enabled), the signature over `method` and
/// `body`, and that the nonce is new. The signature is checked before
/// anything is written: with the agent known in memory, a request without
/// its key costs no database work at all.
pub async fn authenticate_agent(
    credentials: Credentials,
    method: &str,
    body: &[u8],
    gateway: &Gateway,
) -> Result<AgentIdentity, GatewayError> {
    let refused = |why: &str| refused(method, why);
    let Credentials { presented, agent_id } = credentials;
    let now = gateway.clock.now();
    let agent = match gateway.agents.fresh(agent_id.as_uuid()) {
        Some(known) => known,
        None => {
            let mut conn = gateway.pool.acquire().await?;
            let row = store::get_agent(&mut conn, agent_id.as_uuid())
                .await?
                .ok_or_else(|| refused("unknown agent"))?;
            gateway.agents.remember(row)
        }
    };
    if !agent.row.enabled {
        return Err(refused("agent disabled"));
    }
    check_signature(gateway, &agent.row, agent_id, &presented, method, body, now.timestamp()).map_err(
        |why| match why {
            Refusal::Secret(e) => GatewayError::Secret(e),
            Refusal::Refused(why) => refused(&why),
        },
    )?;
    let spend = store::NonceToSpend {
        agent_id: agent.row.id,
        nonce: presented.nonce,
        at: now,
    };
    match gateway.nonces.call(spend).await? {
        store::NonceSpent::Fresh => Ok(agent.identity.clone()),
        store::NonceSpent::Replayed => Err(refused("nonce replayed")),
        store::NonceSpent::AgentGone => {
            // Disabled or deleted since it was read (on another replica, say).
            gateway.agents.forget(agent.row.id);
            Err(refused("agent disabled"))
        }
    }
}

enum Refusal {
    /// The stored key could not be decrypted: a server fault, not the caller's.
    Secret(String),
    Refused(String),
}

fn check_signature(
    gateway: &Gateway,
    agent: &store::AgentRow,
    agent_id: AgentId,
    presented: &Presented,
    method: &str,
    body: &[u8],
    now: i64,
) -> Result<(), Refusal> {
    let ciphertext = agent
        .key_ciphertext
        .as_deref()
        .ok_or_else(|| Refusal::Refused("agent has no signing key".into()))?;
    let key = gateway
        .keyring
        .decrypt(ciphertext, &agent_key_aad(agent_id))
        .map_err(|e| Refusal::Secret(e.to_string()))?;
    match presented.verify(key.expose_secret(), method, body, now) {
        Ok(()) => Ok(()),
        Err(SignatureError::Skew) => Err(Refusal::Refused("clock skew".into())),
        Err(e) => Err(Refusal::Refused(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(networks: &[&str]) -> AgentIdentity {
        AgentIdentity {
            agent_id: AgentId::new(),
            provider_id: ProviderId::new(),
            require_user_match: true,
            remember_minutes: 0,
            trusted_networks: networks.iter().filter_map(|n| n.parse().ok()).collect(),
            block_user_on_fraud: true,
            caps: store::DeliveryCapsRow::DEFAULT.to_wire(),
        }
    }

    #[test]
    fn trusted_networks_match_by_cidr_and_bad_addresses_never_match() {
        let a = agent(&["10.0.0.0/8", "2001:db8::/32"]);
        assert!(a.is_trusted("10.1.2.3"));
        assert!(a.is_trusted(" 2001:db8::1 "));
        assert!(!a.is_trusted("11.0.0.1"));
        assert!(!a.is_trusted(""));
        assert!(!a.is_trusted("10.0.0.1/8"));
        assert!(!agent(&[]).is_trusted("10.1.2.3"));
    }

    #[test]
    fn provider_tokens_see_only_their_provider() {
        let own = uuid::Uuid::now_v7();
        let scope = AdminScope::Provider {
            token_id: uuid::Uuid::now_v7(),
            provider_id: own,
        };
        assert!(scope.require_provider(own).is_ok());
        assert!(matches!(
            scope.require_provider(uuid::Uuid::now_v7()),
            Err(GatewayError::NotFound(_))
        ));
        assert!(scope.require_operator().is_err());
        assert!(AdminScope::Operator.require_provider(own).is_ok());
    }
}
