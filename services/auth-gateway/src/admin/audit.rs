//! `Admin.ListAudit`: the gateway's own audit lines (providers, tokens,
//! activation, agents, RADIUS clients) merged with the challenge service's
//! (admin actions on users, authentication decisions), newest first, paged
//! by an (at, id) cursor both halves understand.

use chrono::{DateTime, Utc};
use uuid::Uuid;
use vigil_bus::subjects;
use vigil_core::ProviderId;
use vigil_proto::{
    rpc,
    v1::{self as api, AuditKind, Decision, Reason},
};

use super::{providers::existing, users::ask};
use crate::{app::Gateway, audit, auth::AdminScope, error::GatewayError};

const MAX_PAGE_SIZE: u32 = 500;
const DEFAULT_PAGE_SIZE: u32 = 50;

fn time(t: Option<&prost_types::Timestamp>, field: &str) -> Result<Option<DateTime<Utc>>, GatewayError> {
    t.map(|t| {
        DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(u32::MAX))
            .ok_or_else(|| GatewayError::InvalidArgument(format!("{field} is not a valid time")))
    })
    .transpose()
}

fn stamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    vigil_proto::to_timestamp(at.into())
}

/// `<microseconds since the epoch>.<uuid>` of the last entry of a page.
fn page_token(at: DateTime<Utc>, id: Uuid) -> String {
    format!("{}.{id}", at.timestamp_micros())
}

fn parse_page_token(token: &str) -> Result<Option<(DateTime<Utc>, Uuid)>, GatewayError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || GatewayError::InvalidArgument("page_token is not one this API returned".into());
    let (micros, id) = token.split_once('.').ok_or_else(bad)?;
    let at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(bad)?;
    Ok(Some((at, Uuid::parse_str(id).map_err(|_| bad())?)))
}

fn from_gateway(row: audit::Row) -> (DateTime<Utc>, Uuid, api::AuditEntry) {
    let mut entry = api::AuditEntry {
        id: row.id.to_string(),
        at: Some(stamp(row.at)),
        kind: AuditKind::Admin as i32,
        provider_id: row
            .provider_id
            .map(|p| ProviderId::from_uuid(p).to_string())
            .unwrap_or_default(),
        action: row.event,
        outcome: row.outcome,
        actor: row.actor,
        target: row.target,
        detail: row.detail,
        source: row.source,
        ..Default::default()
    };
    // A login the gateway refused itself: its outcome is the reason, its target the username.
    if entry.action == audit::LOGIN_REFUSED {
        let reason = format!("REASON_{}", std::mem::take(&mut entry.outcome).to_ascii_uppercase());
        entry.kind = AuditKind::Authentication as i32;
        entry.decision = Decision::Deny as i32;
        entry.reason = Reason::from_str_name(&reason).unwrap_or_default() as i32;
        entry.username = std::mem::take(&mut entry.target);
    }
    (row.at, row.id, entry)
}

fn from_challenge(r: rpc::AuditRecord) -> Option<(DateTime<Utc>, Uuid, api::AuditEntry)> {
    let at = time(r.at.as_ref(), "at").ok().flatten()?;
    let id = Uuid::parse_str(&r.id).ok()?;
    let authentication = r.kind == "authentication";
    let entry = api::AuditEntry {
        id: r.id,
        at: r.at,
        kind: if authentication {
            AuditKind::Authentication
        } else {
            AuditKind::Admin
        } as i32,
        provider_id: r.provider_id,
        action: r.action,
        outcome: if authentication { String::new() } else { "ok".into() },
        actor: r.actor,
        target: if authentication { r.challenge_id } else { r.user_id },
        username: r.username,
        detail: r.detail,
        source: r.client_ip,
        decision: r.decision,
        reason: r.reason,
    };
    Some((at, id, entry))
}

pub async fn list(
    gateway: &Gateway,
    scope: AdminScope,
    req: api::ListAuditRequest,
) -> Result<api::ListAuditResponse, GatewayError> {
    // A provider token always sees its own provider, and only that one.
    let provider = if req.provider_id.trim().is_empty() {
        match scope {
            AdminScope::Operator => None,
            AdminScope::Provider { provider_id, .. } => Some(provider_id),
        }
    } else {
        Some(existing(gateway, scope, &req.provider_id).await?.id)
    };
    if req.page_size > MAX_PAGE_SIZE {
        return Err(GatewayError::InvalidArgument(format!(
            "page_size is at most {MAX_PAGE_SIZE}"
        )));
    }
    let size = if req.page_size == 0 {
        DEFAULT_PAGE_SIZE
    } else {
        req.page_size
    };
    let before = parse_page_token(&req.page_token)?;
    let since = time(req.since.as_ref(), "since")?;
    let until = time(req.until.as_ref(), "until")?;
    let action = Some(req.action.trim().to_owned()).filter(|a| !a.is_empty());
    let kind = AuditKind::try_from(req.kind).unwrap_or(AuditKind::Unspecified);
    let user = req.user.trim();

    // One more than a page from each half tells whether another page follows.
    let mut merged = Vec::new();
    // The gateway's lines are about providers, agents and tokens, and logins
    // it refused itself; only those name a user (by username).
    let username = match user {
        "" => None,
        u if u.starts_with("usr_") => Some(None),
        u => Some(Some(u.to_lowercase())),
    };
    let skip = username == Some(None) || (kind == AuditKind::Admin && username.is_some());
    if !skip {
        let mut conn = gateway.pool.acquire().await?;
        let query = audit::Query {
            provider_id: provider,
            since,
            until,
            event: action.clone(),
            logins: match (kind, &username) {
                (AuditKind::Authentication, _) | (_, Some(_)) => Some(true),
                (AuditKind::Admin, _) => Some(false),
                (AuditKind::Unspecified, None) => None,
            },
            username: username.flatten(),
            before,
            limit: i64::from(size) + 1,
        };
        merged.extend(audit::list(&mut conn, &query).await?.into_iter().map(from_gateway));
    }
    let request = rpc::ListAuditRequest {
        provider_id: provider
            .map(|p| ProviderId::from_uuid(p).to_string())
            .unwrap_or_default(),
        user: user.to_owned(),
        since: req.since,
        until: req.until,
        include_admin: kind != AuditKind::Authentication,
        include_authentication: kind != AuditKind::Admin,
        action: action.unwrap_or_default(),
        before_at: before.map(|(at, _)| stamp(at)),
        before_id: before.map(|(_, id)| id.to_string()).unwrap_or_default(),
        limit: size + 1,
    };
    let reply: rpc::ListAuditReply = ask(gateway, subjects::RPC_CHALLENGE_LIST_AUDIT, &request).await?;
    merged.extend(reply.records.into_iter().filter_map(from_challenge));

    merged.sort_by_key(|e| std::cmp::Reverse((e.0, e.1)));
    let more = merged.len() > size as usize;
    merged.truncate(size as usize);
    Ok(api::ListAuditResponse {
        next_page_token: match merged.last() {
            Some((at, id, _)) if more => page_token(*at, *id),
            _ => String::new(),
        },
        entries: merged.into_iter().map(|(_, _, entry)| entry).collect(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_junk_is_refused() {
        let at = DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap();
        let id = Uuid::now_v7();
        assert_eq!(parse_page_token(&page_token(at, id)).unwrap(), Some((at, id)));
        assert_eq!(parse_page_token("").unwrap(), None);
        for junk in ["x", "12.nope", "abc.0190a0a0-0000-7000-8000-000000000000"] {
            assert!(parse_page_token(junk).is_err(), "{junk}");
        }
    }
}
