//! The challenge service's tables. Runtime-checked queries: no database is
//! needed at build time.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::state::ChallengeState;

#[derive(Debug, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub status: String,
}

#[derive(Debug, sqlx::FromRow)]
pub struct FactorRow {
    pub kind: String,
    pub destination: String,
}

#[derive(Debug, sqlx::FromRow)]
pub struct ChallengeRow {
    pub id: Uuid,
    pub provider_id: String,
    pub user_id: Uuid,
    pub state: String,
    pub reason: String,
    pub code_hash: Option<Vec<u8>>,
    pub max_attempts: i32,
    pub expires_at: DateTime<Utc>,
}

impl ChallengeRow {
    pub fn state(&self) -> ChallengeState {
        // The CHECK constraint admits only known states.
        ChallengeState::parse(&self.state).unwrap_or(ChallengeState::Failed)
    }
}

pub struct NewUser<'a> {
    pub id: Uuid,
    pub provider_id: &'a str,
    pub username: &'a str,
    pub display_name: &'a str,
    pub now: DateTime<Utc>,
}

/// Inserts the user; `false` when the username is taken in that provider.
pub async fn insert_user(conn: &mut PgConnection, user: NewUser<'_>) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO users (id, provider_id, username, display_name, status, created_at)
         VALUES ($1, $2, $3, $4, 'enabled', $5) ON CONFLICT (provider_id, username) DO NOTHING",
    )
    .bind(user.id)
    .bind(user.provider_id)
    .bind(user.username)
    .bind(user.display_name)
    .bind(user.now)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

pub async fn insert_factor(
    conn: &mut PgConnection,
    user_id: Uuid,
    kind: &str,
    destination: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO factors (id, user_id, kind, destination, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(Uuid::now_v7())
        .bind(user_id)
        .bind(kind)
        .bind(destination)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn find_user(
    conn: &mut PgConnection,
    provider_id: &str,
    username: &str,
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as("SELECT id, status FROM users WHERE provider_id = $1 AND username = $2")
        .bind(provider_id)
        .bind(username)
        .fetch_optional(conn)
        .await
}

pub async fn user_factors(conn: &mut PgConnection, user_id: Uuid) -> Result<Vec<FactorRow>, sqlx::Error> {
    sqlx::query_as("SELECT kind, destination FROM factors WHERE user_id = $1 ORDER BY created_at")
        .bind(user_id)
        .fetch_all(conn)
        .await
}

pub struct NewChallenge<'a> {
    pub id: Uuid,
    pub provider_id: &'a str,
    pub user_id: Uuid,
    pub agent_id: &'a str,
    pub factor: &'a str,
    pub code_hash: Vec<u8>,
    pub max_attempts: i32,
    pub client_ip: &'a str,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Inserts a pending challenge; `false` if that id exists already (a retried request).
pub async fn insert_challenge(conn: &mut PgConnection, c: NewChallenge<'_>) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO challenges (id, provider_id, user_id, agent_id, factor, state, reason, code_hash, max_attempts, client_ip, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, 'pending', 'ENROLLED', $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING",
    )
    .bind(c.id)
    .bind(c.provider_id)
    .bind(c.user_id)
    .bind(c.agent_id)
    .bind(c.factor)
    .bind(c.code_hash)
    .bind(c.max_attempts)
    .bind(c.client_ip)
    .bind(c.now)
    .bind(c.expires_at)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

const CHALLENGE_COLUMNS: &str = "id, provider_id, user_id, state, reason, code_hash, max_attempts, expires_at";

/// Reads a challenge of `provider_id`; another provider's challenge is "not found".
pub async fn get_challenge(
    conn: &mut PgConnection,
    provider_id: &str,
    id: Uuid,
    lock: bool,
) -> Result<Option<ChallengeRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE id = $1 AND provider_id = $2{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    sqlx::query_as(&sql)
        .bind(id)
        .bind(provider_id)
        .fetch_optional(conn)
        .await
}

/// Moves an open challenge to `state`; `false` if it was no longer open.
pub async fn transition(
    conn: &mut PgConnection,
    id: Uuid,
    state: ChallengeState,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let completed_at = state.is_terminal().then_some(now);
    let updated = sqlx::query(
        "UPDATE challenges SET state = $2, reason = $3, completed_at = $4
         WHERE id = $1 AND state IN ('pending', 'delivered') AND ($2 <> 'delivered' OR state = 'pending')",
    )
    .bind(id)
    .bind(state.as_str())
    .bind(reason)
    .bind(completed_at)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// Counts a wrong code; returns the attempts so far.
pub async fn count_attempt(conn: &mut PgConnection, id: Uuid) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("UPDATE challenges SET attempts = attempts + 1 WHERE id = $1 RETURNING attempts")
        .bind(id)
        .fetch_one(conn)
        .await
}

#[derive(Debug, sqlx::FromRow)]
pub struct ExpiredRow {
    pub id: Uuid,
    pub provider_id: String,
    pub user_id: Uuid,
}

/// Ends open challenges whose time is up, a batch at a time.
pub async fn expire_overdue(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<ExpiredRow>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE challenges SET state = 'expired', reason = 'EXPIRED', completed_at = $1
         WHERE id IN (SELECT id FROM challenges WHERE state IN ('pending', 'delivered') AND expires_at <= $1
                      ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING id, provider_id, user_id",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await
}
