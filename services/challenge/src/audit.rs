//! The challenge service's half of the audit log: admin actions on users
//! (`user_audit`) and authentication decisions (`auth_attempts`), newest
//! first, for the gateway's `Admin.ListAudit` to merge with its own half.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;
use vigil_core::{ChallengeId, UserId, Username};
use vigil_proto::rpc;

use crate::{
    login::parse_decision,
    service::{Service, ServiceError, timestamp},
    state::parse_reason,
};

pub const MAX_LIMIT: u32 = 501;

/// The filters both halves share, already validated.
struct Filter {
    provider: Option<String>,
    user_id: Option<Uuid>,
    username: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    action: Option<String>,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
}

fn time(t: Option<&prost_types::Timestamp>) -> Result<Option<DateTime<Utc>>, ServiceError> {
    t.map(|t| {
        DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
            .ok_or_else(|| ServiceError::InvalidArgument("timestamp out of range".into()))
    })
    .transpose()
}

impl Filter {
    fn parse(req: &rpc::ListAuditRequest) -> Result<Self, ServiceError> {
        let provider = if req.provider_id.is_empty() {
            None
        } else {
            Some(crate::service::parse_provider(&req.provider_id)?.to_string())
        };
        let user = req.user.trim();
        let (user_id, username) = if user.is_empty() {
            (None, None)
        } else if let Ok(id) = UserId::parse(user) {
            (Some(id.as_uuid()), None)
        } else {
            let name = Username::parse(user).map_err(|e| ServiceError::InvalidArgument(format!("user: {e}")))?;
            (None, Some(name.as_str().to_owned()))
        };
        let before = match time(req.before_at.as_ref())? {
            None => None,
            Some(at) => {
                let id = Uuid::parse_str(&req.before_id)
                    .map_err(|_| ServiceError::InvalidArgument("before_id must be a UUID".into()))?;
                Some((at, id))
            }
        };
        if req.limit == 0 || req.limit > MAX_LIMIT {
            return Err(ServiceError::InvalidArgument(format!("limit must be 1 to {MAX_LIMIT}")));
        }
        Ok(Self {
            provider,
            user_id,
            username,
            since: time(req.since.as_ref())?,
            until: time(req.until.as_ref())?,
            action: Some(req.action.trim().to_owned()).filter(|a| !a.is_empty()),
            before,
            limit: i64::from(req.limit),
        })
    }

    /// `WHERE` clauses over columns both tables have, and the paging order.
    fn push(&self, q: &mut QueryBuilder<'_, Postgres>, action_column: &str) {
        q.push(" WHERE TRUE");
        if let Some(p) = &self.provider {
            q.push(" AND provider_id = ").push_bind(p.clone());
        }
        if let Some(id) = self.user_id {
            q.push(" AND user_id = ").push_bind(id);
        }
        if let Some(name) = &self.username {
            q.push(" AND username = ").push_bind(name.clone());
        }
        if let Some(since) = self.since {
            q.push(" AND at >= ").push_bind(since);
        }
        if let Some(until) = self.until {
            q.push(" AND at < ").push_bind(until);
        }
        if let Some(action) = &self.action {
            q.push(format!(" AND {action_column} = ")).push_bind(action.clone());
        }
        if let Some((at, id)) = self.before {
            q.push(" AND (at, id) < (")
                .push_bind(at)
                .push(", ")
                .push_bind(id)
                .push(")");
        }
        q.push(" ORDER BY at DESC, id DESC LIMIT ").push_bind(self.limit);
    }
}

#[derive(sqlx::FromRow)]
struct UserAuditRow {
    id: Uuid,
    at: DateTime<Utc>,
    provider_id: String,
    user_id: Uuid,
    username: String,
    actor: String,
    action: String,
    detail: String,
}

#[derive(sqlx::FromRow)]
struct AttemptRow {
    id: Uuid,
    at: DateTime<Utc>,
    provider_id: String,
    user_id: Option<Uuid>,
    username: String,
    operation: String,
    agent_id: String,
    client_ip: String,
    decision: String,
    reason: String,
    challenge_id: Option<Uuid>,
}

async fn admin_records(conn: &mut PgConnection, filter: &Filter) -> Result<Vec<rpc::AuditRecord>, sqlx::Error> {
    let mut q =
        QueryBuilder::new("SELECT id, at, provider_id, user_id, username, actor, action, detail FROM user_audit");
    filter.push(&mut q, "action");
    let rows: Vec<UserAuditRow> = q.build_query_as().fetch_all(conn).await?;
    Ok(rows
        .into_iter()
        .map(|r| rpc::AuditRecord {
            action: r.action,
            actor: r.actor,
            detail: r.detail,
            ..record(r.id, r.at, r.provider_id, "admin", Some(r.user_id), r.username)
        })
        .collect())
}

async fn authentication_records(
    conn: &mut PgConnection,
    filter: &Filter,
) -> Result<Vec<rpc::AuditRecord>, sqlx::Error> {
    let mut q = QueryBuilder::new(
        "SELECT id, at, provider_id, user_id, username, operation, agent_id, client_ip, decision, reason, challenge_id
         FROM auth_attempts",
    );
    filter.push(&mut q, "operation");
    let rows: Vec<AttemptRow> = q.build_query_as().fetch_all(conn).await?;
    Ok(rows
        .into_iter()
        .map(|r| rpc::AuditRecord {
            action: r.operation,
            actor: if r.agent_id.is_empty() {
                String::new()
            } else {
                format!("agent:{}", r.agent_id)
            },
            client_ip: r.client_ip,
            decision: parse_decision(&r.decision) as i32,
            reason: parse_reason(&r.reason) as i32,
            challenge_id: r
                .challenge_id
                .map(|id| ChallengeId::from_uuid(id).to_string())
                .unwrap_or_default(),
            ..record(r.id, r.at, r.provider_id, "authentication", r.user_id, r.username)
        })
        .collect())
}

/// The fields every record has.
fn record(
    id: Uuid,
    at: DateTime<Utc>,
    provider_id: String,
    kind: &str,
    user_id: Option<Uuid>,
    username: String,
) -> rpc::AuditRecord {
    rpc::AuditRecord {
        id: id.to_string(),
        at: Some(timestamp(at)),
        provider_id,
        kind: kind.into(),
        user_id: user_id.map(|id| UserId::from_uuid(id).to_string()).unwrap_or_default(),
        username,
        ..Default::default()
    }
}

/// Newest first by (at, id), the order the gateway pages in.
fn newest_first(records: &mut [rpc::AuditRecord]) {
    let key = |r: &rpc::AuditRecord| {
        let at = r.at.as_ref().map(|t| (t.seconds, t.nanos)).unwrap_or_default();
        (at, Uuid::parse_str(&r.id).unwrap_or_default())
    };
    records.sort_by_key(|r| std::cmp::Reverse(key(r)));
}

impl Service {
    pub async fn list_audit(&self, req: rpc::ListAuditRequest) -> Result<rpc::ListAuditReply, ServiceError> {
        let filter = Filter::parse(&req)?;
        let mut conn = self.pool.acquire().await?;
        let mut records = Vec::new();
        if req.include_admin {
            records.extend(admin_records(&mut conn, &filter).await?);
        }
        if req.include_authentication {
            records.extend(authentication_records(&mut conn, &filter).await?);
        }
        newest_first(&mut records);
        records.truncate(usize::try_from(filter.limit).unwrap_or(0));
        Ok(rpc::ListAuditReply { records, error: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_validated() {
        let ok = rpc::ListAuditRequest {
            limit: 10,
            ..Default::default()
        };
        assert!(Filter::parse(&ok).is_ok());
        for bad in [
            rpc::ListAuditRequest { limit: 0, ..ok.clone() },
            rpc::ListAuditRequest {
                limit: MAX_LIMIT + 1,
                ..ok.clone()
            },
            rpc::ListAuditRequest {
                provider_id: "acme".into(),
                ..ok.clone()
            },
            rpc::ListAuditRequest {
                before_at: Some(prost_types::Timestamp::default()),
                before_id: "x".into(),
                ..ok.clone()
            },
        ] {
            assert!(Filter::parse(&bad).is_err());
        }
    }

    #[test]
    fn records_sort_newest_first_with_the_id_breaking_ties() {
        let rec = |s: i64, id: &str| rpc::AuditRecord {
            id: id.into(),
            at: Some(prost_types::Timestamp { seconds: s, nanos: 0 }),
            ..Default::default()
        };
        let a = "00000000-0000-7000-8000-000000000001";
        let b = "00000000-0000-7000-8000-000000000002";
        let mut records = vec![rec(1, a), rec(2, a), rec(2, b)];
        newest_first(&mut records);
        let order: Vec<_> = records
            .iter()
            .map(|r| (r.at.as_ref().map(|t| t.seconds), r.id.as_str()))
            .collect();
        assert_eq!(order, vec![(Some(2), b), (Some(2), a), (Some(1), a)]);
    }
}
