//! The gateway's tables: providers and agents.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, sqlx::FromRow)]
pub struct ProviderRow {
    pub id: Uuid,
    pub name: String,
    pub usage_model: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, sqlx::FromRow)]
pub struct AgentRow {
    pub provider_id: Uuid,
    pub key_hash: Vec<u8>,
    pub enabled: bool,
}

pub async fn insert_provider(conn: &mut PgConnection, row: &ProviderRow) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO providers (id, name, usage_model, created_at) VALUES ($1, $2, $3, $4)")
        .bind(row.id)
        .bind(&row.name)
        .bind(&row.usage_model)
        .bind(row.created_at)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn get_provider(conn: &mut PgConnection, id: Uuid) -> Result<Option<ProviderRow>, sqlx::Error> {
    sqlx::query_as("SELECT id, name, usage_model, created_at FROM providers WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

pub struct NewAgent<'a> {
    pub id: Uuid,
    pub provider_id: Uuid,
    pub name: &'a str,
    pub kind: &'a str,
    pub key_hash: &'a [u8],
    pub now: DateTime<Utc>,
}

pub async fn insert_agent(conn: &mut PgConnection, agent: NewAgent<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO agents (id, provider_id, name, kind, key_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(agent.id)
    .bind(agent.provider_id)
    .bind(agent.name)
    .bind(agent.kind)
    .bind(agent.key_hash)
    .bind(agent.now)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn get_agent(conn: &mut PgConnection, id: Uuid) -> Result<Option<AgentRow>, sqlx::Error> {
    sqlx::query_as("SELECT provider_id, key_hash, enabled FROM agents WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}
