//! What the gateway forgets, and when (see [`vigil_runtime::retention`]).
//! Nonces matter only while a signed request could still be replayed.
//! Activation credentials matter only until they are used, replaced or
//! expired; after that only the audit log needs to know about them, and it
//! records each registration. The audit log and the record of each fraud
//! notification are kept for the operator's auditors.

use std::time::Duration;

use vigil_runtime::retention::Rule;

use crate::config::Config;

/// How long a nonce is kept: twice the clock skew a signed request may
/// have. Until then a replay is refused for its nonce; after, for its
/// timestamp, which no longer verifies.
const NONCE_KEEP: Duration = Duration::from_secs(2 * vigil_agent_auth::MAX_SKEW_SECS.unsigned_abs());

pub fn rules(config: &Config) -> Vec<Rule> {
    vec![
        // Keyed by (agent, nonce), not UUIDv7: the batch is picked by row
        // address, from the index on `seen_at`. Nonces are never updated, so
        // an address stays its row's. $2 (a UUIDv7 floor) has no use here
        // and is only typed; so in the next two.
        Rule {
            table: "agent_nonces",
            keep: Some(NONCE_KEEP),
            delete: "DELETE FROM agent_nonces WHERE ctid = ANY (ARRAY (
                       SELECT ctid FROM agent_nonces WHERE seen_at < $1 AND $2::uuid IS NOT NULL
                       ORDER BY seen_at LIMIT $3 FOR UPDATE SKIP LOCKED))"
                .into(),
        },
        // Keyed by their login name: the batch is picked by the expiry, and
        // a credential is kept while it could still be used.
        Rule::days(
            "activation_credentials",
            config.activation_retention_days,
            "DELETE FROM activation_credentials WHERE login = ANY (ARRAY (
               SELECT login FROM activation_credentials
               WHERE expires_at < $1 AND $2::uuid IS NOT NULL
               ORDER BY expires_at LIMIT $3 FOR UPDATE SKIP LOCKED))",
        ),
        Rule::rows("security_audit", config.audit_retention_days, "at", ""),
        // A notification still being retried is kept, however old.
        Rule::days(
            "fraud_notifications",
            config.audit_retention_days,
            "DELETE FROM fraud_notifications WHERE event_id = ANY (ARRAY (
               SELECT event_id FROM fraud_notifications
               WHERE created_at < $1 AND status <> 'pending' AND $2::uuid IS NOT NULL
               ORDER BY created_at LIMIT $3 FOR UPDATE SKIP LOCKED))",
        ),
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use chrono::{DateTime, Utc};
    use sqlx::PgPool;
    use uuid::Uuid;
    use vigil_runtime::retention::{BATCH_TRANSACTION, prune};
    use vigil_testkit::uuid_v7_at;

    use super::*;
    use crate::store::tests::database;

    fn config(activation_days: u32, audit_days: u32) -> Config {
        Config {
            activation_retention_days: activation_days,
            audit_retention_days: audit_days,
            ..Config::default()
        }
    }

    async fn count(pool: &PgPool, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(pool)
            .await
            .unwrap()
    }

    /// One row of each table at `at`: a nonce seen then, a credential that
    /// expired then, an audit line and a fraud notification in `status`.
    async fn rows_at(pool: &PgPool, provider: Uuid, at: DateTime<Utc>, status: &str) {
        let id = uuid_v7_at(at);
        sqlx::query(
            "WITH n AS (INSERT INTO agent_nonces (agent_id, nonce, seen_at) VALUES ($1, $2, $3)),
                  c AS (INSERT INTO activation_credentials (login, provider_id, password_hash, created_at, expires_at)
                        VALUES ($2, $4, 'x', $3 - INTERVAL '10 minutes', $3)),
                  a AS (INSERT INTO security_audit (id, provider_id, event, outcome, at) VALUES ($1, $4, 'agent_created', 'ok', $3))
             INSERT INTO fraud_notifications (event_id, provider_id, challenge_id, body, status, created_at, next_attempt_at)
             VALUES ($1, $4, 'chl_1', '{}', $5, $3, $3)",
        )
        .bind(id)
        .bind(id.to_string())
        .bind(at)
        .bind(provider)
        .bind(status)
        .execute(pool)
        .await
        .unwrap();
    }

    const TABLES: [&str; 4] = [
        "agent_nonces",
        "activation_credentials",
        "security_audit",
        "fraud_notifications",
    ];

    /// The nonces are the one table here that grows with every login (some
    /// 600,000 rows at 1,000 logins/s): each batch must find its rows by
    /// the index on `seen_at`, also in a plan cached while the table was
    /// empty, not by reading and sorting the table.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_nonce_batch_finds_its_rows_by_time_in_any_plan() {
        let (_pg, pool) = database().await;
        let mut conn = pool.acquire().await.unwrap();
        let nonces = rules(&config(30, 365)).remove(0);
        assert_eq!(nonces.table, "agent_nonces");
        for (mode, plan) in vigil_testkit::retention_batch_plans(&mut conn, BATCH_TRANSACTION, &nonces.delete)
            .await
            .unwrap()
        {
            assert!(!plan.contains("Seq Scan"), "{mode}: a batch reads every nonce:\n{plan}");
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn rows_past_their_time_go_in_batches_and_the_rest_stay() {
        let (_pg, pool) = database().await;
        let provider = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO providers (id, name, usage_model, created_at) VALUES ($1, 'p', 'per_authentication', now())",
        )
        .bind(provider)
        .execute(&pool)
        .await
        .unwrap();
        let now = Utc::now();
        let ago = |d: chrono::Duration| now - d;
        // Past every rule's time: 12 of each, deleted in batches of 5.
        for i in 0..12 {
            rows_at(
                &pool,
                provider,
                ago(chrono::Duration::days(400) + chrono::Duration::minutes(i)),
                "delivered",
            )
            .await;
        }
        // Past every rule's time but still being retried: the notification stays.
        rows_at(&pool, provider, ago(chrono::Duration::days(401)), "pending").await;
        // Inside every rule's time: a nonce a replay could still use (inside
        // twice the skew), a credential expired a day ago, a recent audit line.
        rows_at(&pool, provider, ago(chrono::Duration::seconds(500)), "failed").await;
        // A nonce past twice the skew only; the other rows of that moment stay.
        rows_at(&pool, provider, ago(chrono::Duration::seconds(700)), "delivered").await;

        let deleted = prune(&pool, &rules(&config(30, 365)), now, 5).await.unwrap();
        assert_eq!(
            deleted,
            vec![
                ("agent_nonces", 14),
                ("activation_credentials", 13),
                ("security_audit", 13),
                ("fraud_notifications", 12),
            ]
        );
        assert_eq!(
            count(&pool, "agent_nonces").await,
            1,
            "the nonce inside the replay window"
        );
        assert_eq!(count(&pool, "activation_credentials").await, 2);
        assert_eq!(count(&pool, "security_audit").await, 2);
        assert_eq!(
            count(&pool, "fraud_notifications").await,
            3,
            "two recent and the pending one"
        );
        let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM fraud_notifications WHERE status = 'pending'")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(pending, 1);

        // 0 days keeps credentials and the audit for ever; nonces always go.
        rows_at(&pool, provider, ago(chrono::Duration::days(400)), "delivered").await;
        let deleted = prune(&pool, &rules(&config(0, 0)), now, 5).await.unwrap();
        assert_eq!(deleted, vec![("agent_nonces", 1)]);
        for (table, left) in TABLES.into_iter().zip([1, 3, 3, 4]) {
            assert_eq!(count(&pool, table).await, left, "{table}");
        }
    }
}
