//! The gateway's half of the audit log (`security_audit`): every change made
//! through the admin API and every agent registration, with who did it, to
//! what, and when. A line names what changed, never a secret: no token,
//! password, agent key or shared secret is ever written here.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

/// A login the gateway refused itself, before any challenge (a RADIUS
/// password the directory refused): an authentication decision, with the
/// reason name as its outcome and the username as its target.
pub const LOGIN_REFUSED: &str = "login_refused";

/// One audit line, before it is written.
#[derive(Debug, Clone, Default)]
pub struct Event<'a> {
    pub provider_id: Option<Uuid>,
    /// What happened: `provider_created`, `agent_deleted`, ...
    pub event: &'a str,
    /// `ok`, or the refusal code of a refused registration.
    pub outcome: &'a str,
    /// Who: `operator`, `admin_token:<id>`, `activation:<login>`.
    pub actor: &'a str,
    /// What it was done to: an agent, token or RADIUS client id.
    pub target: &'a str,
    pub detail: &'a str,
    /// The caller's network address, when known.
    pub source: &'a str,
}

impl<'a> Event<'a> {
    /// A successful admin change.
    pub fn ok(provider_id: Uuid, event: &'a str, actor: &'a str, target: &'a str) -> Self {
        Self {
            provider_id: Some(provider_id),
            event,
            outcome: "ok",
            actor,
            target,
            ..Default::default()
        }
    }

    pub fn detail(self, detail: &'a str) -> Self {
        Self { detail, ..self }
    }
}

pub async fn record(conn: &mut PgConnection, e: Event<'_>, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO security_audit (id, provider_id, event, outcome, actor, target, detail, source, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(Uuid::now_v7())
    .bind(e.provider_id)
    .bind(e.event)
    .bind(e.outcome)
    .bind(e.actor)
    .bind(e.target)
    .bind(e.detail)
    .bind(e.source)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
pub struct Row {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub provider_id: Option<Uuid>,
    pub event: String,
    pub outcome: String,
    pub actor: String,
    pub target: String,
    pub detail: String,
    pub source: String,
}

/// What to list; `None` is "any".
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub provider_id: Option<Uuid>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub event: Option<String>,
    /// `Some(true)`: only refused logins; `Some(false)`: only admin changes.
    pub logins: Option<bool>,
    /// Only refused logins of this username.
    pub username: Option<String>,
    /// Strictly before this (at, id): the paging cursor.
    pub before: Option<(DateTime<Utc>, Uuid)>,
    pub limit: i64,
}

/// Newest first by (at, id).
pub async fn list(conn: &mut PgConnection, q: &Query) -> Result<Vec<Row>, sqlx::Error> {
    let mut sql = QueryBuilder::<Postgres>::new(
        "SELECT id, at, provider_id, event, outcome, actor, target, detail, source FROM security_audit WHERE TRUE",
    );
    if let Some(p) = q.provider_id {
        sql.push(" AND provider_id = ").push_bind(p);
    }
    if let Some(since) = q.since {
        sql.push(" AND at >= ").push_bind(since);
    }
    if let Some(until) = q.until {
        sql.push(" AND at < ").push_bind(until);
    }
    if let Some(event) = &q.event {
        sql.push(" AND event = ").push_bind(event.clone());
    }
    match q.logins {
        Some(true) => sql.push(" AND event = ").push_bind(LOGIN_REFUSED),
        Some(false) => sql.push(" AND event <> ").push_bind(LOGIN_REFUSED),
        None => &mut sql,
    };
    if let Some(username) = &q.username {
        sql.push(" AND target = ").push_bind(username.clone());
    }
    if let Some((at, id)) = q.before {
        sql.push(" AND (at, id) < (")
            .push_bind(at)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    sql.push(" ORDER BY at DESC, id DESC LIMIT ").push_bind(q.limit);
    sql.build_query_as().fetch_all(conn).await
}
