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

/// The largest CSV accepted in one import.
const MAX_CSV_BYTES: usize = 4 * 1024 * 1024;

pub(super) async fn ask<Req: prost::Message, Rep: RpcReply>(
    gateway: &Gateway,
    subject: &'static str,
    request: &Req,
) -> Result<Rep, GatewayError> {
    let mut reply: Rep = vigil_bus::rpc::call(&gateway.nats, subject, request, gateway.rpc_timeout)
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

async fn provider_text(gateway: &Gateway, scope: AdminScope, id: &str) -> Result<String, GatewayError> {
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

/// Parses the CSV: a header naming the columns (any order; `username`
/// required), then one user per line. Lines that do not parse are reported
/// as rejected and the rest still go through.
fn parse_csv(csv_text: &str) -> Result<(Vec<rpc::ImportRow>, Vec<api::ImportRowResult>), GatewayError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(csv_text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| GatewayError::InvalidArgument(format!("csv header: {e}")))?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect::<Vec<_>>();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let username = column("username").ok_or_else(|| {
        GatewayError::InvalidArgument(
            "csv header must name a username column (username,display_name,phone,email,default_method)".into(),
        )
    })?;
    let (display, phone, email, method) = (
        column("display_name"),
        column("phone"),
        column("email"),
        column("default_method"),
    );
    // Columns the file lacks are left alone on existing users.
    let absent: Vec<String> = [
        ("display_name", display),
        ("phone", phone),
        ("email", email),
        ("default_method", method),
    ]
    .into_iter()
    .filter(|(_, column)| column.is_none())
    .map(|(name, _)| name.to_owned())
    .collect();
    let mut rows = Vec::new();
    let mut rejected = Vec::new();
    for (index, record) in reader.records().enumerate() {
        // Line 1 is the header.
        let line = u32::try_from(index + 2).unwrap_or(u32::MAX);
        match record {
            Ok(r) => {
                let field = |i: Option<usize>| i.and_then(|i| r.get(i)).unwrap_or("").to_owned();
                rows.push(rpc::ImportRow {
                    line,
                    username: field(Some(username)),
                    display_name: field(display),
                    phone: field(phone),
                    email: field(email),
                    default_method: field(method),
                    absent: absent.clone(),
                });
            }
            Err(e) => rejected.push(api::ImportRowResult {
                line,
                username: String::new(),
                outcome: "rejected".into(),
                reason: format!("not valid CSV: {e}"),
            }),
        }
    }
    Ok((rows, rejected))
}

pub async fn import(
    gateway: &Gateway,
    scope: AdminScope,
    req: api::ImportUsersRequest,
) -> Result<api::ImportUsersResponse, GatewayError> {
    let provider_id = provider_text(gateway, scope, &req.provider_id).await?;
    if req.csv.len() > MAX_CSV_BYTES {
        return Err(GatewayError::InvalidArgument(format!(
            "csv is larger than {MAX_CSV_BYTES} bytes; split it"
        )));
    }
    let (rows, mut results) = parse_csv(&req.csv)?;
    let reply: rpc::ImportUsersReply = ask(
        gateway,
        subjects::RPC_CHALLENGE_IMPORT_USERS,
        &rpc::ImportUsersRequest {
            provider_id,
            rows,
            actor: scope.actor(),
        },
    )
    .await?;
    results.extend(reply.results.into_iter().map(|r| {
        api::ImportRowResult {
            line: r.line,
            username: r.username,
            outcome: match rpc::ImportOutcome::try_from(r.outcome).unwrap_or_default() {
                rpc::ImportOutcome::Created => "created",
                rpc::ImportOutcome::Updated => "updated",
                rpc::ImportOutcome::Unchanged => "unchanged",
                _ => "rejected",
            }
            .into(),
            reason: r.reason,
        }
    }));
    results.sort_by_key(|r| r.line);
    let count = |o: &str| u32::try_from(results.iter().filter(|r| r.outcome == o).count()).unwrap_or(u32::MAX);
    Ok(api::ImportUsersResponse {
        created: count("created"),
        updated: count("updated"),
        unchanged: count("unchanged"),
        rejected: count("rejected"),
        rows: results,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_columns_in_any_order_and_bad_lines_reported() {
        let (rows, rejected) =
            parse_csv("Email,username,phone\nann@example.com,Ann,+15551234567\n\"broken,bob\n").unwrap_or_default();
        // The csv crate is lenient with an unclosed quote: the line is either
        // a row (rejected later if its fields are bad) or reported, never lost.
        assert_eq!(rows.len() + rejected.len(), 2);
        assert_eq!(rows[0].username, "Ann");
        assert_eq!(rows[0].email, "ann@example.com");
        assert_eq!(rows[0].line, 2);
        assert_eq!(
            rows[0].absent,
            vec!["display_name".to_owned(), "default_method".to_owned()]
        );
        assert!(parse_csv("name,phone\nann,+1555\n").is_err());
    }
}
