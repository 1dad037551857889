//! Users live in the challenge service; these calls check the caller's
//! scope and the provider, then forward over NATS request/reply.

use vigil_bus::{rpc::RpcReply, subjects};
use vigil_proto::{rpc, v1 as api};

use super::{
    convert::{self, parse_agent},
    providers::existing,
};
use crate::{
    agent_api::policy_context,
    app::Gateway,
    auth::{AdminScope, AgentIdentity, parse_networks},
    error::{GatewayError, from_rpc},
    store,
};

pub(super) async fn ask<Req: prost::Message, Rep: RpcReply>(
    gateway: &Gateway,
    subject: &'static str,
    request: &Req,
) -> Result<Rep, GatewayError> {
    ask_within(gateway, subject, request, gateway.rpc_timeout).await
}

/// [`ask`] with a deadline of its own, for requests that do a lot of work.
pub(super) async fn ask_within<Req: prost::Message, Rep: RpcReply>(
    gateway: &Gateway,
    subject: &'static str,
    request: &Req,
    timeout: std::time::Duration,
) -> Result<Rep, GatewayError> {
    let mut reply: Rep = vigil_bus::rpc::call(&gateway.nats, subject, request, timeout)
        .await
        .map_err(|e| GatewayError::Unavailable(e.to_string()))?;
    match reply.take_error() {
        Some(error) => Err(from_rpc(error)),
        None => Ok(reply),
    }
}

fn user_of(provider_id: &str, reply: rpc::UserReply) -> Result<api::User, GatewayError> {
    reply
        .user
        .map(|u| convert::user(provider_id, u))
        .ok_or_else(|| GatewayError::Unavailable("challenge service sent no user".into()))
}

pub async fn create(
    gateway: &Gateway,
    scope: AdminScope,
    req: api::CreateUserRequest,
) -> Result<api::User, GatewayError> {
    let provider_id = existing(gateway, scope, &req.provider_id).await?.id;
    let provider_id = vigil_core::ProviderId::from_uuid(provider_id).to_string();
    let created: rpc::CreateUserReply = ask(
        gateway,
        subjects::RPC_CHALLENGE_CREATE_USER,
        &rpc::CreateUserRequest {
            provider_id: provider_id.clone(),
            username: req.username,
            display_name: req.display_name,
            sms_phone: req.sms_phone,
            actor: scope.actor(),
        },
    )
    .await?;
    let reply: rpc::UserReply = ask(
        gateway,
        subjects::RPC_CHALLENGE_GET_USER,
        &rpc::GetUserRequest {
            provider_id: provider_id.clone(),
            user: created.user_id,
        },
    )
    .await?;
    user_of(&provider_id, reply)
}

pub(super) async fn provider_text(gateway: &Gateway, scope: AdminScope, id: &str) -> Result<String, GatewayError> {
    let row = existing(gateway, scope, id).await?;
    Ok(vigil_core::ProviderId::from_uuid(row.id).to_string())
}

pub async fn get(gateway: &Gateway, scope: AdminScope, req: api::GetUserRequest) -> Result<api::User, GatewayError> {
    let provider_id = provider_text(gateway, scope, &req.provider_id).await?;
    let reply = ask(
        gateway,
        subjects::RPC_CHALLENGE_GET_USER,
        &rpc::GetUserRequest {
            provider_id: provider_id.clone(),
            user: req.user,
        },
    )
    .await?;
    user_of(&provider_id, reply)
}

pub async fn update(
    gateway: &Gateway,
    scope: AdminScope,
    req: api::UpdateUserRequest,
) -> Result<api::User, GatewayError> {
    let provider_id = provider_text(gateway, scope, &req.provider_id).await?;
    let forwarded = rpc::UpdateUserRequest {
        provider_id: provider_id.clone(),
        user: req.user,
        display_name: req.display_name,
        phone: req.phone,
        email: req.email,
        pin: req.pin,
        default_factor: req.default_factor,
        status: req.status,
        bypass_seconds: req.bypass_seconds,
        bypass_count: req.bypass_count,
        unlock: req.unlock,
        actor: scope.actor(),
    };
    let reply = ask(gateway, subjects::RPC_CHALLENGE_UPDATE_USER, &forwarded).await?;
    user_of(&provider_id, reply)
}

pub async fn delete(
    gateway: &Gateway,
    scope: AdminScope,
    req: api::DeleteUserRequest,
) -> Result<api::DeleteUserResponse, GatewayError> {
    let provider_id = provider_text(gateway, scope, &req.provider_id).await?;
    let _: rpc::DeleteUserReply = ask(
        gateway,
        subjects::RPC_CHALLENGE_DELETE_USER,
        &rpc::DeleteUserRequest {
            provider_id,
            user: req.user,
            actor: scope.actor(),
        },
    )
    .await?;
    Ok(api::DeleteUserResponse {})
}

pub async fn list(
    gateway: &Gateway,
    scope: AdminScope,
    req: api::ListUsersRequest,
) -> Result<api::ListUsersResponse, GatewayError> {
    let provider_id = provider_text(gateway, scope, &req.provider_id).await?;
    let reply: rpc::ListUsersReply = ask(
        gateway,
        subjects::RPC_CHALLENGE_LIST_USERS,
        &rpc::ListUsersRequest {
            provider_id: provider_id.clone(),
            query: req.query,
            page_size: req.page_size,
            page_token: req.page_token,
        },
    )
    .await?;
    Ok(api::ListUsersResponse {
        users: reply
            .users
            .into_iter()
            .map(|u| convert::user(&provider_id, u))
            .collect(),
        next_page_token: reply.next_page_token,
    })
}

pub async fn enroll_factor(
    gateway: &Gateway,
    scope: AdminScope,
    req: api::EnrollFactorRequest,
) -> Result<api::EnrollFactorResponse, GatewayError> {
    let provider_id = provider_text(gateway, scope, &req.provider_id).await?;
    let reply: rpc::EnrollFactorReply = ask(
        gateway,
        subjects::RPC_CHALLENGE_ENROLL_FACTOR,
        &rpc::EnrollFactorRequest {
            provider_id,
            user: req.user,
            factor: req.factor,
            actor: scope.actor(),
        },
    )
    .await?;
    Ok(api::EnrollFactorResponse {
        factor: reply.factor,
        otpauth_uri: reply.otpauth_uri,
        secret_base32: reply.secret_base32,
        qr_png: reply.qr_png,
        backup_codes: reply.backup_codes,
        enrollment_code: reply.enrollment_code,
        enrollment_uri: reply.enrollment_uri,
        enrollment_expires_at: reply.enrollment_expires_at,
    })
}

pub async fn resync_hotp(
    gateway: &Gateway,
    scope: AdminScope,
    req: api::ResyncHotpRequest,
) -> Result<api::User, GatewayError> {
    let provider_id = provider_text(gateway, scope, &req.provider_id).await?;
    let reply = ask(
        gateway,
        subjects::RPC_CHALLENGE_RESYNC_HOTP,
        &rpc::ResyncHotpRequest {
            provider_id: provider_id.clone(),
            user: req.user,
            first_code: req.first_code,
            second_code: req.second_code,
            actor: scope.actor(),
        },
    )
    .await?;
    user_of(&provider_id, reply)
}

pub async fn explain(
    gateway: &Gateway,
    scope: AdminScope,
    req: api::ExplainLoginRequest,
) -> Result<api::LoginExplanation, GatewayError> {
    let provider = existing(gateway, scope, &req.provider_id).await?;
    let provider_id = vigil_core::ProviderId::from_uuid(provider.id);
    // Without an agent, the strict defaults: unknown users denied, nothing remembered.
    let agent = if req.agent_id.is_empty() {
        AgentIdentity {
            agent_id: vigil_core::AgentId::from_uuid(uuid::Uuid::nil()),
            provider_id,
            require_user_match: true,
            remember_minutes: 0,
            block_user_on_fraud: provider.block_user_on_fraud,
            trusted_networks: parse_networks(&provider.trusted_networks),
            caps: provider.caps.to_wire(),
        }
    } else {
        let id = parse_agent(&req.agent_id)?;
        let mut conn = gateway.pool.acquire().await?;
        let row = store::get_agent(&mut conn, id.as_uuid())
            .await?
            .filter(|a| a.provider_id == provider.id)
            .ok_or_else(|| GatewayError::NotFound(format!("agent {id} does not exist in this provider")))?;
        AgentIdentity::from_row(&row)
    };
    let reply: rpc::ExplainReply = ask(
        gateway,
        subjects::RPC_CHALLENGE_EXPLAIN,
        &rpc::ExplainRequest {
            provider_id: provider_id.to_string(),
            username: req.username,
            policy: Some(policy_context(&agent, &req.client_ip)),
            attempts: 20,
        },
    )
    .await?;
    Ok(api::LoginExplanation {
        decision: reply.decision,
        reason: reply.reason,
        message: reply.message,
        factors: reply.factors,
        considered: reply.considered,
        user: reply.user.map(|u| convert::user(&provider_id.to_string(), u)),
        recent_attempts: reply
            .recent_attempts
            .into_iter()
            .map(|a| api::LoginAttempt {
                at: a.at,
                operation: a.operation,
                agent_id: a.agent_id,
                client_ip: a.client_ip,
                decision: a.decision,
                reason: a.reason,
                challenge_id: a.challenge_id,
            })
            .collect(),
    })
}
