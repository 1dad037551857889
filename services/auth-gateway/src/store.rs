//! The gateway's tables: providers and agents.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProviderRow {
    pub id: Uuid,
    pub name: String,
    pub usage_model: String,
    pub created_at: DateTime<Utc>,
    pub block_user_on_fraud: bool,
    pub fraud_webhook_url: String,
    pub trusted_networks: Vec<String>,
    #[sqlx(flatten)]
    pub caps: DeliveryCapsRow,
    /// A fraud-webhook signing secret exists (it is never read with the row).
    pub has_webhook_secret: bool,
    /// Message templates; "" is Vigil's default.
    pub sms_template: String,
    pub voice_template: String,
    /// Grows with every update (ordering of `vigil.provider.updated`).
    pub revision: i64,
}

const PROVIDER_COLUMNS: &str = "id, name, usage_model, created_at, block_user_on_fraud, fraud_webhook_url, trusted_networks, \
     sms_cap_per_hour, voice_cap_per_hour, cap_prefix_digits, webhook_secret_ciphertext IS NOT NULL AS has_webhook_secret, \
     sms_template, voice_template, revision";

/// A provider's toll-fraud caps: SMS and calls per destination prefix and
/// hour; 0 is no cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct DeliveryCapsRow {
    pub sms_cap_per_hour: i32,
    pub voice_cap_per_hour: i32,
    pub cap_prefix_digits: i32,
}

impl DeliveryCapsRow {
    /// A new provider's caps; the column defaults of migration 0020 say the same.
    pub const DEFAULT: Self = Self {
        sms_cap_per_hour: 100,
        voice_cap_per_hour: 50,
        cap_prefix_digits: 4,
    };

    pub fn to_wire(self) -> vigil_proto::rpc::DeliveryCaps {
        let n = |v: i32| u32::try_from(v).unwrap_or(0);
        vigil_proto::rpc::DeliveryCaps {
            sms_per_hour: n(self.sms_cap_per_hour),
            voice_per_hour: n(self.voice_cap_per_hour),
            prefix_digits: n(self.cap_prefix_digits),
        }
    }
}

/// What an admin asked to change on a provider; `None` keeps the value.
#[derive(Debug, Default)]
pub struct ProviderUpdate<'a> {
    pub name: Option<&'a str>,
    pub block_user_on_fraud: Option<bool>,
    pub fraud_webhook_url: Option<&'a str>,
    pub trusted_networks: Option<&'a [String]>,
    pub sms_cap_per_hour: Option<i32>,
    pub voice_cap_per_hour: Option<i32>,
    pub cap_prefix_digits: Option<i32>,
    pub sms_template: Option<&'a str>,
    pub voice_template: Option<&'a str>,
}

/// An agent with what authenticating and deciding for it needs, including
/// its provider's trusted networks (one query per request).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AgentRow {
    pub id: Uuid,
    pub provider_id: Uuid,
    pub name: String,
    pub kind: String,
    pub key_ciphertext: Option<Vec<u8>>,
    pub enabled: bool,
    pub require_user_match: bool,
    pub remember_minutes: i32,
    pub created_at: DateTime<Utc>,
    pub trusted_networks: Vec<String>,
    pub block_user_on_fraud: bool,
    #[sqlx(flatten)]
    pub caps: DeliveryCapsRow,
}

const AGENT_COLUMNS: &str = "a.id, a.provider_id, a.name, a.kind, a.key_ciphertext, a.enabled, \
     a.require_user_match, a.remember_minutes, a.created_at, p.trusted_networks, p.block_user_on_fraud, \
     p.sms_cap_per_hour, p.voice_cap_per_hour, p.cap_prefix_digits";

pub async fn insert_provider(conn: &mut PgConnection, row: &ProviderRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO providers (id, name, usage_model, created_at, block_user_on_fraud, fraud_webhook_url, trusted_networks,
             sms_cap_per_hour, voice_cap_per_hour, cap_prefix_digits)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
        .bind(row.id)
        .bind(&row.name)
        .bind(&row.usage_model)
        .bind(row.created_at)
        .bind(row.block_user_on_fraud)
        .bind(&row.fraud_webhook_url)
        .bind(&row.trusted_networks)
        .bind(row.caps.sms_cap_per_hour)
        .bind(row.caps.voice_cap_per_hour)
        .bind(row.caps.cap_prefix_digits)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn get_provider(conn: &mut PgConnection, id: Uuid) -> Result<Option<ProviderRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {PROVIDER_COLUMNS} FROM providers WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Providers after `after` in id order; `only` limits to one provider.
pub async fn list_providers(
    conn: &mut PgConnection,
    after: Uuid,
    only: Option<Uuid>,
    limit: i64,
) -> Result<Vec<ProviderRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {PROVIDER_COLUMNS} FROM providers WHERE id > $1 AND ($2::uuid IS NULL OR id = $2) ORDER BY id LIMIT $3"
    ))
    .bind(after)
    .bind(only)
    .bind(limit)
    .fetch_all(conn)
    .await
}

pub async fn update_provider(
    conn: &mut PgConnection,
    id: Uuid,
    change: &ProviderUpdate<'_>,
) -> Result<Option<ProviderRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE providers SET name = COALESCE($2, name), block_user_on_fraud = COALESCE($3, block_user_on_fraud),
             fraud_webhook_url = COALESCE($4, fraud_webhook_url), trusted_networks = COALESCE($5, trusted_networks),
             sms_cap_per_hour = COALESCE($6, sms_cap_per_hour), voice_cap_per_hour = COALESCE($7, voice_cap_per_hour),
             cap_prefix_digits = COALESCE($8, cap_prefix_digits),
             sms_template = COALESCE($9, sms_template), voice_template = COALESCE($10, voice_template),
             revision = revision + 1
         WHERE id = $1 RETURNING {PROVIDER_COLUMNS}"
    ))
    .bind(id)
    .bind(change.name)
    .bind(change.block_user_on_fraud)
    .bind(change.fraud_webhook_url)
    .bind(change.trusted_networks)
    .bind(change.sms_cap_per_hour)
    .bind(change.voice_cap_per_hour)
    .bind(change.cap_prefix_digits)
    .bind(change.sms_template)
    .bind(change.voice_template)
    .fetch_optional(conn)
    .await
}

pub struct NewAgent<'a> {
    pub id: Uuid,
    pub provider_id: Uuid,
    pub name: &'a str,
    pub kind: &'a str,
    pub key_hash: &'a [u8],
    pub key_ciphertext: &'a [u8],
    pub now: DateTime<Utc>,
}

pub async fn insert_agent(conn: &mut PgConnection, agent: NewAgent<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO agents (id, provider_id, name, kind, key_hash, key_ciphertext, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(agent.id)
    .bind(agent.provider_id)
    .bind(agent.name)
    .bind(agent.kind)
    .bind(agent.key_hash)
    .bind(agent.key_ciphertext)
    .bind(agent.now)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn get_agent(conn: &mut PgConnection, id: Uuid) -> Result<Option<AgentRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {AGENT_COLUMNS} FROM agents a JOIN providers p ON p.id = a.provider_id WHERE a.id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// What spending a request's nonce found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceSpent {
    Fresh,
    Replayed,
    /// The agent is disabled or deleted: nothing was spent.
    AgentGone,
}

/// One signed request's nonce, to spend (see [`spend_nonces`]).
#[derive(Debug, Clone)]
pub struct NonceToSpend {
    pub agent_id: Uuid,
    pub nonce: String,
    pub at: DateTime<Utc>,
}

/// Spends the nonces of the signed requests waiting at the moment in one
/// statement (see `vigil_runtime::batch`): under load, the one statement
/// each agent request cost before the login itself is shared by all of them.
pub type NonceSpender = vigil_runtime::Batcher<NonceToSpend, NonceSpent, sqlx::Error>;

/// `pool` must be the batches' own (`vigil_runtime::connect_batch_pool`).
pub fn nonce_spender(pool: sqlx::PgPool) -> NonceSpender {
    vigil_runtime::Batcher::statements("agent_nonces", 128, pool, |conn, requests| {
        Box::pin(spend_nonces(conn, requests))
    })
}

/// The statement of [`spend_nonces`]. Nonces are inserted in key order, so
/// that two batches never wait on each other's rows in opposite orders. Each
/// agent is looked up by its key, in subqueries that OFFSET 0 keeps from
/// being turned into joins: as joins, a plan cached while the agents were
/// few (a new installation's first minutes) would read every agent on every
/// batch once there are thousands.
const SPEND_NONCES: &str = "WITH asked AS (
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[]) WITH ORDINALITY AS a(agent_id, nonce, seen_at, i)),
     spent AS (
         INSERT INTO agent_nonces (agent_id, nonce, seen_at)
         SELECT a.agent_id, a.nonce, a.seen_at FROM asked a
         WHERE EXISTS (SELECT 1 FROM agents g WHERE g.id = a.agent_id AND g.enabled OFFSET 0)
         ORDER BY a.agent_id, a.nonce
         ON CONFLICT DO NOTHING RETURNING agent_id, nonce)
     SELECT s.agent_id IS NOT NULL, EXISTS (SELECT 1 FROM agents g WHERE g.id = a.agent_id AND g.enabled OFFSET 0)
     FROM asked a
     LEFT JOIN spent s ON s.agent_id = a.agent_id AND s.nonce = a.nonce
     ORDER BY a.i";

/// Spends each request's nonce, if its agent still exists and is enabled,
/// and says for each what it found, in the requests' order. A nonce twice
/// in one batch (a replay racing its original) is spent by the first only.
pub async fn spend_nonces(conn: &mut PgConnection, requests: &[NonceToSpend]) -> Result<Vec<NonceSpent>, sqlx::Error> {
    let mut seen = std::collections::HashSet::with_capacity(requests.len());
    let first: Vec<bool> = requests
        .iter()
        .map(|r| seen.insert((r.agent_id, r.nonce.as_str())))
        .collect();
    let unique: Vec<&NonceToSpend> = requests
        .iter()
        .zip(&first)
        .filter(|(_, f)| **f)
        .map(|(r, _)| r)
        .collect();
    let agents: Vec<Uuid> = unique.iter().map(|r| r.agent_id).collect();
    let nonces: Vec<&str> = unique.iter().map(|r| r.nonce.as_str()).collect();
    let ats: Vec<DateTime<Utc>> = unique.iter().map(|r| r.at).collect();
    let found: Vec<(bool, bool)> = sqlx::query_as(SPEND_NONCES)
        .bind(&agents)
        .bind(&nonces)
        .bind(&ats)
        .fetch_all(conn)
        .await?;
    let mut found = found.into_iter();
    Ok(first
        .into_iter()
        .map(|first| match first.then(|| found.next()).flatten() {
            Some((true, _)) => NonceSpent::Fresh,
            Some((false, false)) => NonceSpent::AgentGone,
            // Spent before, or by a request earlier in this batch.
            _ => NonceSpent::Replayed,
        })
        .collect())
}

pub async fn list_agents(conn: &mut PgConnection, provider_id: Uuid) -> Result<Vec<AgentRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {AGENT_COLUMNS} FROM agents a JOIN providers p ON p.id = a.provider_id
         WHERE a.provider_id = $1 ORDER BY a.created_at"
    ))
    .bind(provider_id)
    .fetch_all(conn)
    .await
}

pub async fn update_agent(
    conn: &mut PgConnection,
    id: Uuid,
    enabled: Option<bool>,
    require_user_match: Option<bool>,
    remember_minutes: Option<i32>,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE agents SET enabled = COALESCE($2, enabled), require_user_match = COALESCE($3, require_user_match),
             remember_minutes = COALESCE($4, remember_minutes) WHERE id = $1",
    )
    .bind(id)
    .bind(enabled)
    .bind(require_user_match)
    .bind(remember_minutes)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

pub async fn delete_agent(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query("DELETE FROM agents WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(deleted == 1)
}

#[derive(Debug, sqlx::FromRow)]
pub struct ActivationRow {
    pub login: String,
    pub provider_id: Uuid,
    pub password_hash: String,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Stores new activation credentials and revokes the provider's unused ones.
pub async fn replace_activation(
    conn: &mut PgConnection,
    provider_id: Uuid,
    login: &str,
    password_hash: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE activation_credentials SET revoked_at = $2
         WHERE provider_id = $1 AND used_at IS NULL AND revoked_at IS NULL",
    )
    .bind(provider_id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO activation_credentials (login, provider_id, password_hash, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(login)
    .bind(provider_id)
    .bind(password_hash)
    .bind(now)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn get_activation(conn: &mut PgConnection, login: &str) -> Result<Option<ActivationRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT login, provider_id, password_hash, expires_at, used_at, revoked_at
         FROM activation_credentials WHERE login = $1 FOR UPDATE",
    )
    .bind(login)
    .fetch_optional(conn)
    .await
}

pub async fn use_activation(
    conn: &mut PgConnection,
    login: &str,
    agent_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE activation_credentials SET used_at = $2, agent_id = $3 WHERE login = $1")
        .bind(login)
        .bind(now)
        .bind(agent_id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn insert_admin_token(
    conn: &mut PgConnection,
    id: Uuid,
    provider_id: Uuid,
    token_hash: &[u8],
    description: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO admin_tokens (id, provider_id, token_hash, description, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(provider_id)
    .bind(token_hash)
    .bind(description)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// The token id and provider of an admin token, found by its keyed hash.
pub async fn find_admin_token(conn: &mut PgConnection, token_hash: &[u8]) -> Result<Option<(Uuid, Uuid)>, sqlx::Error> {
    sqlx::query_as("SELECT id, provider_id FROM admin_tokens WHERE token_hash = $1")
        .bind(token_hash)
        .fetch_optional(conn)
        .await
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// The gateway's database, migrated, on a server of its own.
    pub(crate) async fn database() -> (vigil_testkit::PgServer, sqlx::PgPool) {
        let pg = vigil_testkit::PgServer::start().await.unwrap();
        let pool = sqlx::PgPool::connect(&pg.create_database("vigil_gateway").await.unwrap())
            .await
            .unwrap();
        sqlx::migrate!().run(&pool).await.unwrap();
        (pg, pool)
    }

    async fn agent(pool: &sqlx::PgPool, enabled: bool) -> Uuid {
        let (provider, agent) = (Uuid::now_v7(), Uuid::now_v7());
        sqlx::query(
            "INSERT INTO providers (id, name, usage_model, created_at) VALUES ($1, 'p', 'per_authentication', now())",
        )
        .bind(provider)
        .execute(pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO agents (id, provider_id, name, kind, key_hash, enabled, created_at)
             VALUES ($1, $2, 'a', 'app', '\\x00', $3, now())",
        )
        .bind(agent)
        .bind(provider)
        .bind(enabled)
        .execute(pool)
        .await
        .unwrap();
        agent
    }

    fn spend(agent_id: Uuid, nonce: &str) -> NonceToSpend {
        NonceToSpend {
            agent_id,
            nonce: nonce.into(),
            at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn a_batch_of_nonces_answers_each_request_for_itself() {
        let (_pg, pool) = database().await;
        let (on, off) = (agent(&pool, true).await, agent(&pool, false).await);
        let mut conn = pool.acquire().await.unwrap();
        assert_eq!(
            spend_nonces(&mut conn, &[spend(on, "spent-before")]).await.unwrap(),
            [NonceSpent::Fresh]
        );
        let found = spend_nonces(
            &mut conn,
            &[
                spend(on, "new-1"),
                spend(on, "spent-before"),
                spend(off, "new-2"),
                spend(on, "twice"),
                spend(Uuid::now_v7(), "new-3"),
                spend(on, "twice"),
                // The same nonce from another agent is that agent's own.
                spend(agent(&pool, true).await, "twice"),
            ],
        )
        .await
        .unwrap();
        assert_eq!(
            found,
            [
                NonceSpent::Fresh,
                NonceSpent::Replayed,
                NonceSpent::AgentGone,
                NonceSpent::Fresh,
                NonceSpent::AgentGone,
                NonceSpent::Replayed,
                NonceSpent::Fresh,
            ]
        );
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM agent_nonces")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(stored, 4, "a disabled or unknown agent spends nothing");
    }

    /// Each batch looks its agents up by key, also in the plan made while
    /// there were none (the one a connection may cache from a new
    /// installation's first minutes and keep while agents are added).
    #[tokio::test]
    async fn a_batch_finds_its_agents_by_key_in_a_plan_made_while_there_were_none() {
        let (_pg, pool) = database().await;
        let mut conn = pool.acquire().await.unwrap();
        for (mode, plan) in vigil_testkit::prepared_plans(&mut conn, SPEND_NONCES, "'{}', '{}', '{}'")
            .await
            .unwrap()
        {
            assert!(!plan.contains("Seq Scan"), "{mode}: a batch reads every agent:\n{plan}");
            assert!(
                plan.contains("using agents_pkey on agents"),
                "{mode}: agents are not looked up by their key:\n{plan}"
            );
        }
    }

    #[tokio::test]
    async fn of_many_requests_with_one_nonce_at_once_exactly_one_is_fresh() {
        let (_pg, pool) = database().await;
        let on = agent(&pool, true).await;
        let spender = nonce_spender(pool.clone());
        let found = futures::future::join_all((0..200).map(|i| {
            let spender = spender.clone();
            async move {
                // Every tenth request replays one nonce; the rest are new.
                let nonce = if i % 10 == 0 {
                    "replayed".to_string()
                } else {
                    format!("n-{i}")
                };
                spender.call(spend(on, &nonce)).await.unwrap()
            }
        }))
        .await;
        let fresh = found.iter().filter(|f| **f == NonceSpent::Fresh).count();
        let replayed = found.iter().filter(|f| **f == NonceSpent::Replayed).count();
        assert_eq!((fresh, replayed), (181, 19));
    }
}
