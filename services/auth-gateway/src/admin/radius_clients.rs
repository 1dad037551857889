//! RADIUS clients: a source address or network, a shared secret (kept
//! encrypted, never returned) and a mode, tied to an agent of kind radius.
//! Every change wakes the RADIUS server's client list at once.

use std::{net::IpAddr, time::SystemTime};

use chrono::SubsecRound;
use uuid::Uuid;
use vigil_core::{AgentId, ProviderId};
use vigil_proto::v1::{self as api, RadiusMode};

use super::{convert::parse_agent, providers::existing};
use crate::{
    app::Gateway,
    audit,
    auth::{AdminScope, new_agent_key},
    error::GatewayError,
    radius::{Mode, client_id_text, parse_client_id, secret_aad, store},
    registration::agent_name,
    store as gateway_store,
};

const MIN_SECRET_LEN: usize = 16;
const MAX_SECRET_LEN: usize = 128;
const DEFAULT_TIMEOUT_SECS: u32 = 60;
/// Below the RADIUS server's handler limit (120 s), so a wait always ends in an answer.
const MAX_TIMEOUT_SECS: u32 = 100;

/// `192.0.2.10` → `192.0.2.10/32`, `10.1.2.0/16` → `10.1.0.0/16`. Very wide
/// blocks are refused: the secret would be the only thing keeping the
/// internet out.
fn source_cidr(text: &str) -> Result<String, GatewayError> {
    let text = text.trim();
    let bad = || {
        GatewayError::InvalidArgument(format!(
            "source_cidr {text:?} is not an address or a CIDR like 10.1.0.0/16"
        ))
    };
    let net = match text.parse::<ipnet::IpNet>() {
        Ok(net) => net.trunc(),
        Err(_) => ipnet::IpNet::from(text.parse::<IpAddr>().map_err(|_| bad())?),
    };
    let narrow_enough = match net {
        ipnet::IpNet::V4(v4) => v4.prefix_len() >= 8,
        ipnet::IpNet::V6(v6) => v6.prefix_len() >= 32,
    };
    if !narrow_enough {
        return Err(GatewayError::InvalidArgument(format!(
            "source_cidr {net} is too wide; use /8 or narrower (IPv6: /32)"
        )));
    }
    Ok(net.to_string())
}

fn shared_secret(secret: &str) -> Result<&str, GatewayError> {
    let len = secret.chars().count();
    if len < MIN_SECRET_LEN || secret.len() > MAX_SECRET_LEN {
        return Err(GatewayError::InvalidArgument(format!(
            "shared_secret must be {MIN_SECRET_LEN} to {MAX_SECRET_LEN} characters"
        )));
    }
    Ok(secret)
}

fn timeout_secs(asked: u32) -> Result<i32, GatewayError> {
    match asked {
        0 => Ok(DEFAULT_TIMEOUT_SECS as i32),
        5..=MAX_TIMEOUT_SECS => Ok(asked as i32),
        _ => Err(GatewayError::InvalidArgument(format!(
            "timeout_seconds must be 5 to {MAX_TIMEOUT_SECS} (0 for {DEFAULT_TIMEOUT_SECS})"
        ))),
    }
}

fn to_api(row: &store::RadiusClientRow) -> api::RadiusClient {
    api::RadiusClient {
        id: client_id_text(row.id),
        provider_id: ProviderId::from_uuid(row.provider_id).to_string(),
        agent_id: AgentId::from_uuid(row.agent_id).to_string(),
        name: row.name.clone(),
        source_cidr: row.source_cidr.clone(),
        mode: Mode::parse(&row.mode).map_or(RadiusMode::Unspecified, Mode::to_proto) as i32,
        timeout_seconds: u32::try_from(row.timeout_secs).unwrap_or(0),
        created_at: Some(vigil_proto::to_timestamp(SystemTime::from(row.created_at))),
    }
}

pub async fn create(
    gateway: &Gateway,
    scope: AdminScope,
    req: api::CreateRadiusClientRequest,
) -> Result<api::RadiusClient, GatewayError> {
    let provider = existing(gateway, scope, &req.provider_id).await?;
    let name = agent_name(&req.name)?;
    let cidr = source_cidr(&req.source_cidr)?;
    let secret = shared_secret(&req.shared_secret)?;
    let mode = Mode::from_proto(RadiusMode::try_from(req.mode).unwrap_or_default()).ok_or_else(|| {
        GatewayError::InvalidArgument("mode must be second_factor, challenge or password_code".into())
    })?;
    let timeout = timeout_secs(req.timeout_seconds)?;
    let now = gateway.clock.now();
    let mut tx = gateway.pool.begin().await?;
    let agent_id = if req.agent_id.trim().is_empty() {
        // A RADIUS client never signs gRPC calls: its agent key is made and never shown.
        let agent_id = AgentId::new();
        let (_key, key_hash, key_ciphertext) = new_agent_key(gateway, agent_id)?;
        gateway_store::insert_agent(
            &mut tx,
            gateway_store::NewAgent {
                id: agent_id.as_uuid(),
                provider_id: provider.id,
                name,
                kind: "radius",
                key_hash: &key_hash,
                key_ciphertext: &key_ciphertext,
                now,
            },
        )
        .await?;
        agent_id.as_uuid()
    } else {
        let agent_id = parse_agent(&req.agent_id)?;
        let agent = gateway_store::get_agent(&mut tx, agent_id.as_uuid())
            .await?
            .filter(|a| a.provider_id == provider.id)
            .ok_or_else(|| GatewayError::NotFound(format!("agent {agent_id} does not exist")))?;
        if agent.kind != "radius" {
            return Err(GatewayError::FailedPrecondition(format!(
                "agent {agent_id} is of kind {}; a RADIUS client needs an agent of kind radius",
                agent.kind
            )));
        }
        agent.id
    };
    let id = Uuid::now_v7();
    let secret_ciphertext = gateway
        .keyring
        .encrypt(&mut rand::rng(), secret.as_bytes(), &secret_aad(id))
        .map_err(|e| GatewayError::Secret(e.to_string()))?;
    let row = store::RadiusClientRow {
        id,
        agent_id,
        provider_id: provider.id,
        name: name.to_owned(),
        source_cidr: cidr,
        secret_ciphertext,
        mode: mode.as_str().to_owned(),
        timeout_secs: timeout,
        // As PostgreSQL keeps it, so the answer equals what List returns later.
        created_at: now.trunc_subsecs(6),
    };
    store::insert(&mut tx, &row).await.map_err(|e| match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            GatewayError::AlreadyExists(format!("a RADIUS client for {} is already registered", row.source_cidr))
        }
        other => other.into(),
    })?;
    let (actor, target) = (scope.actor(), client_id_text(id));
    let detail = format!(
        "name={:?} source={} mode={} agent={}",
        row.name,
        row.source_cidr,
        row.mode,
        AgentId::from_uuid(agent_id)
    );
    audit::record(
        &mut tx,
        audit::Event::ok(provider.id, "radius_client_created", &actor, &target).detail(&detail),
        now,
    )
    .await?;
    tx.commit().await?;
    gateway.radius_changed.notify_one();
    tracing::info!(client = %client_id_text(id), source = %row.source_cidr, mode = mode.as_str(), "RADIUS client registered");
    Ok(to_api(&row))
}

pub async fn list(
    gateway: &Gateway,
    scope: AdminScope,
    req: api::ListRadiusClientsRequest,
) -> Result<api::ListRadiusClientsResponse, GatewayError> {
    let provider = existing(gateway, scope, &req.provider_id).await?;
    let mut conn = gateway.pool.acquire().await?;
    let rows = store::list(&mut conn, provider.id).await?;
    Ok(api::ListRadiusClientsResponse {
        clients: rows.iter().map(to_api).collect(),
    })
}

pub async fn delete(
    gateway: &Gateway,
    scope: AdminScope,
    req: api::DeleteRadiusClientRequest,
) -> Result<api::DeleteRadiusClientResponse, GatewayError> {
    let id = parse_client_id(&req.radius_client_id)
        .ok_or_else(|| GatewayError::InvalidArgument("radius_client_id must look like rcl_<32 hex digits>".into()))?;
    let not_found = || GatewayError::NotFound(format!("RADIUS client {} does not exist", client_id_text(id)));
    let mut tx = gateway.pool.begin().await?;
    let row = store::get(&mut tx, id).await?.ok_or_else(not_found)?;
    // Another provider's client is "not found", never "forbidden".
    scope.require_provider(row.provider_id).map_err(|_| not_found())?;
    store::delete(&mut tx, id).await?;
    let (actor, target) = (scope.actor(), client_id_text(id));
    let detail = format!("name={:?} source={}", row.name, row.source_cidr);
    audit::record(
        &mut tx,
        audit::Event::ok(row.provider_id, "radius_client_deleted", &actor, &target).detail(&detail),
        gateway.clock.now(),
    )
    .await?;
    tx.commit().await?;
    gateway.radius_changed.notify_one();
    Ok(api::DeleteRadiusClientResponse {})
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_are_normalised_and_wide_blocks_refused() {
        assert_eq!(source_cidr(" 192.0.2.10 ").unwrap(), "192.0.2.10/32");
        assert_eq!(source_cidr("10.1.2.3/16").unwrap(), "10.1.0.0/16");
        assert_eq!(source_cidr("2001:db8::1").unwrap(), "2001:db8::1/128");
        assert!(source_cidr("0.0.0.0/0").is_err());
        assert!(source_cidr("10.0.0.0/7").is_err());
        assert!(source_cidr("::/0").is_err());
        assert!(source_cidr("nas.example.com").is_err());
        assert!(source_cidr("").is_err());
    }

    #[test]
    fn secrets_and_timeouts_are_bounded() {
        assert!(shared_secret("short").is_err());
        assert!(shared_secret("0123456789abcdef").is_ok());
        assert!(shared_secret(&"x".repeat(129)).is_err());
        assert_eq!(timeout_secs(0).unwrap(), 60);
        assert_eq!(timeout_secs(30).unwrap(), 30);
        assert!(timeout_secs(4).is_err());
        assert!(timeout_secs(101).is_err());
    }
}
