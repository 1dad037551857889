//! The `radius_clients` table.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// A RADIUS client as stored; the secret stays encrypted.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RadiusClientRow {
    pub id: Uuid,
    pub agent_id: Uuid,
    pub provider_id: Uuid,
    pub name: String,
    pub source_cidr: String,
    pub secret_ciphertext: Vec<u8>,
    pub mode: String,
    pub timeout_secs: i32,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "r.id, r.agent_id, r.provider_id, r.name, r.source_cidr, r.secret_ciphertext, r.mode, r.timeout_secs, r.created_at";

/// A client with its agent's policy and its provider's trusted networks:
/// everything answering a packet needs, loaded in one query.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ServingRow {
    #[sqlx(flatten)]
    pub client: RadiusClientRow,
    pub require_user_match: bool,
    pub remember_minutes: i32,
    pub trusted_networks: Vec<String>,
    pub block_user_on_fraud: bool,
    #[sqlx(flatten)]
    pub caps: crate::store::DeliveryCapsRow,
}

pub async fn insert(conn: &mut PgConnection, row: &RadiusClientRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO radius_clients (id, agent_id, provider_id, name, source_cidr, secret_ciphertext, mode, timeout_secs, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(row.id)
    .bind(row.agent_id)
    .bind(row.provider_id)
    .bind(&row.name)
    .bind(&row.source_cidr)
    .bind(&row.secret_ciphertext)
    .bind(&row.mode)
    .bind(row.timeout_secs)
    .bind(row.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<RadiusClientRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM radius_clients r WHERE r.id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

pub async fn list(conn: &mut PgConnection, provider_id: Uuid) -> Result<Vec<RadiusClientRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM radius_clients r WHERE r.provider_id = $1 ORDER BY r.created_at, r.id"
    ))
    .bind(provider_id)
    .fetch_all(conn)
    .await
}

pub async fn delete(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query("DELETE FROM radius_clients WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(deleted == 1)
}

/// The clients whose agent is enabled: the ones the server answers.
pub async fn serving(conn: &mut PgConnection) -> Result<Vec<ServingRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS}, a.require_user_match, a.remember_minutes, p.trusted_networks, p.block_user_on_fraud,
                p.sms_cap_per_hour, p.voice_cap_per_hour, p.cap_prefix_digits
         FROM radius_clients r
         JOIN agents a ON a.id = r.agent_id
         JOIN providers p ON p.id = r.provider_id
         WHERE a.enabled AND a.kind = 'radius'"
    ))
    .fetch_all(conn)
    .await
}
