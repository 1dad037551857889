//! Agents: provisioned directly or through activation credentials, listed,
//! disabled (refused at once) and deleted.

use secrecy::ExposeSecret;
use vigil_core::AgentId;
use vigil_proto::v1 as api;

use super::{
    convert::{self, parse_agent},
    providers::existing,
};
use crate::{
    app::Gateway,
    audit,
    auth::{AdminScope, new_agent_key},
    error::GatewayError,
    registration::{agent_kind, agent_name, create_activation as new_activation},
    store,
};

pub async fn create(
    gateway: &Gateway,
    scope: AdminScope,
    req: api::CreateAgentRequest,
) -> Result<api::CreateAgentResponse, GatewayError> {
    let provider = existing(gateway, scope, &req.provider_id).await?;
    let kind = agent_kind(req.kind)?;
    let name = agent_name(&req.name)?;
    let agent_id = AgentId::new();
    let (key, key_hash, key_ciphertext) = new_agent_key(gateway, agent_id)?;
    let now = gateway.clock.now();
    let mut tx = gateway.pool.begin().await?;
    store::insert_agent(
        &mut tx,
        store::NewAgent {
            id: agent_id.as_uuid(),
            provider_id: provider.id,
            name,
            kind,
            key_hash: &key_hash,
            key_ciphertext: &key_ciphertext,
            now,
        },
    )
    .await?;
    let (actor, target) = (scope.actor(), agent_id.to_string());
    let detail = format!("name={name:?} kind={kind}");
    audit::record(
        &mut tx,
        audit::Event::ok(provider.id, "agent_created", &actor, &target).detail(&detail),
        now,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(%agent_id, kind, "agent provisioned");
    Ok(api::CreateAgentResponse {
        agent_id: agent_id.to_string(),
        agent_key: key.expose_secret().to_owned(),
    })
}

pub async fn create_activation(
    gateway: &Gateway,
    scope: AdminScope,
    req: api::CreateActivationRequest,
) -> Result<api::ActivationCredentials, GatewayError> {
    let provider = existing(gateway, scope, &req.provider_id).await?;
    new_activation(gateway, provider.id, &scope.actor()).await
}

/// The agent, if `scope` may see it; another provider's agent is "not found".
async fn visible(gateway: &Gateway, scope: AdminScope, id: &str) -> Result<store::AgentRow, GatewayError> {
    let agent_id = parse_agent(id)?;
    let mut conn = gateway.pool.acquire().await?;
    let row = store::get_agent(&mut conn, agent_id.as_uuid())
        .await?
        .ok_or_else(|| GatewayError::NotFound(format!("agent {agent_id} does not exist")))?;
    scope
        .require_provider(row.provider_id)
        .map_err(|_| GatewayError::NotFound(format!("agent {agent_id} does not exist")))?;
    Ok(row)
}

pub async fn list(
    gateway: &Gateway,
    scope: AdminScope,
    req: api::ListAgentsRequest,
) -> Result<api::ListAgentsResponse, GatewayError> {
    let provider = existing(gateway, scope, &req.provider_id).await?;
    let mut conn = gateway.pool.acquire().await?;
    let rows = store::list_agents(&mut conn, provider.id).await?;
    Ok(api::ListAgentsResponse {
        agents: rows.iter().map(convert::agent).collect(),
    })
}

pub async fn update(
    gateway: &Gateway,
    scope: AdminScope,
    req: api::UpdateAgentRequest,
) -> Result<api::Agent, GatewayError> {
    let row = visible(gateway, scope, &req.agent_id).await?;
    let remember = match req.remember_minutes {
        Some(m) if m > 7 * 24 * 60 => {
            return Err(GatewayError::InvalidArgument(
                "remember_minutes is at most 10080 (a week)".into(),
            ));
        }
        Some(m) => Some(i32::try_from(m).unwrap_or(0)),
        None => None,
    };
    let mut tx = gateway.pool.begin().await?;
    store::update_agent(&mut tx, row.id, req.enabled, req.require_user_match, remember).await?;
    let updated = store::get_agent(&mut tx, row.id)
        .await?
        .ok_or_else(|| GatewayError::NotFound("the agent was deleted meanwhile".into()))?;
    let detail = format!(
        "enabled={} require_user_match={} remember_minutes={}",
        updated.enabled, updated.require_user_match, updated.remember_minutes
    );
    let (actor, target) = (scope.actor(), AgentId::from_uuid(row.id).to_string());
    audit::record(
        &mut tx,
        audit::Event::ok(row.provider_id, "agent_updated", &actor, &target).detail(&detail),
        gateway.clock.now(),
    )
    .await?;
    tx.commit().await?;
    gateway.agents.forget(row.id);
    Ok(convert::agent(&updated))
}

pub async fn delete(
    gateway: &Gateway,
    scope: AdminScope,
    req: api::DeleteAgentRequest,
) -> Result<api::DeleteAgentResponse, GatewayError> {
    let row = visible(gateway, scope, &req.agent_id).await?;
    let mut tx = gateway.pool.begin().await?;
    store::delete_agent(&mut tx, row.id).await?;
    let (actor, target) = (scope.actor(), AgentId::from_uuid(row.id).to_string());
    let detail = format!("name={:?} kind={}", row.name, row.kind);
    audit::record(
        &mut tx,
        audit::Event::ok(row.provider_id, "agent_deleted", &actor, &target).detail(&detail),
        gateway.clock.now(),
    )
    .await?;
    tx.commit().await?;
    gateway.agents.forget(row.id);
    Ok(api::DeleteAgentResponse {})
}
