//! Retention on a real PostgreSQL: challenges and audit records past their
//! time are deleted in batches, open challenges and recent rows are kept,
//! and 0 days keeps everything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;
use uuid::Uuid;
use vigil_challenge::{Config, retention::rules};
use vigil_runtime::retention::prune;
use vigil_testkit::{PgServer, uuid_v7_at as minted_at};

async fn database() -> (PgServer, PgPool) {
    let pg = PgServer::start().await.unwrap();
    let url = pg.create_database("vigil_challenge").await.unwrap();
    let pool = PgPool::connect(&url).await.unwrap();
    sqlx::migrate!().run(&pool).await.unwrap();
    (pg, pool)
}

async fn user(pool: &PgPool, at: DateTime<Utc>) -> Uuid {
    let id = minted_at(at);
    sqlx::query(
        "INSERT INTO users (id, provider_id, username, status, created_at) VALUES ($1, 'prv_1', $2, 'enabled', $3)",
    )
    .bind(id)
    .bind(format!("user-{id}"))
    .bind(at)
    .execute(pool)
    .await
    .unwrap();
    id
}

async fn challenge(pool: &PgPool, user: Uuid, state: &str, at: DateTime<Utc>) -> Uuid {
    let id = minted_at(at);
    sqlx::query(
        "INSERT INTO challenges (id, provider_id, user_id, agent_id, factor, state, reason, max_attempts, created_at, expires_at)
         VALUES ($1, 'prv_1', $2, 'agt_1', 'sms', $3, 'ENROLLED', 3, $4, $4 + INTERVAL '2 minutes')",
    )
    .bind(id)
    .bind(user)
    .bind(state)
    .bind(at)
    .execute(pool)
    .await
    .unwrap();
    id
}

async fn audit(pool: &PgPool, user: Uuid, at: DateTime<Utc>) -> (Uuid, Uuid) {
    let attempt = minted_at(at);
    sqlx::query(
        "INSERT INTO auth_attempts (id, provider_id, user_id, username, operation, decision, reason, at)
         VALUES ($1, 'prv_1', $2, 'alice', 'authenticate', 'ALLOW', 'APPROVED', $3)",
    )
    .bind(attempt)
    .bind(user)
    .bind(at)
    .execute(pool)
    .await
    .unwrap();
    let change = minted_at(at);
    sqlx::query(
        "INSERT INTO user_audit (id, provider_id, user_id, username, actor, action, at)
         VALUES ($1, 'prv_1', $2, 'alice', 'admin', 'user_enabled', $3)",
    )
    .bind(change)
    .bind(user)
    .bind(at)
    .execute(pool)
    .await
    .unwrap();
    (attempt, change)
}

async fn exists(pool: &PgPool, table: &str, id: Uuid) -> bool {
    sqlx::query_scalar::<_, bool>(&format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE id = $1)"))
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

fn config(challenge_days: u32, audit_days: u32) -> Config {
    Config {
        challenge_retention_days: challenge_days,
        audit_retention_days: audit_days,
        ..Config::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_past_their_time_go_in_batches_and_the_rest_stay() {
    let (_pg, pool) = database().await;
    let now = Utc::now();
    let days = |n| now - Duration::days(n);
    let alice = user(&pool, days(400)).await;

    // 25 finished challenges past 90 days, in batches of 10 below.
    let mut old = Vec::new();
    for i in 0..25 {
        let state = ["approved", "denied", "expired", "fraud", "failed"][i % 5];
        old.push(
            challenge(
                &pool,
                alice,
                state,
                days(100) + Duration::minutes(i64::try_from(i).unwrap()),
            )
            .await,
        );
    }
    // Open challenges are never deleted, however old: the sweep ends them.
    let old_pending = challenge(&pool, alice, "pending", days(100)).await;
    let old_delivered = challenge(&pool, alice, "delivered", days(100)).await;
    // A day inside the retention.
    let recent = challenge(&pool, alice, "approved", days(89)).await;
    // Audit records: past 365 days, and inside it.
    let (old_attempt, old_change) = audit(&pool, alice, days(366)).await;
    let (kept_attempt, kept_change) = audit(&pool, alice, days(364)).await;
    // A challenge's audit record outlives the challenge.
    let (attempt_of_old_challenge, _) = audit(&pool, alice, days(100)).await;

    let deleted = prune(&pool, &rules(&config(90, 365)), now, 10).await.unwrap();
    assert_eq!(
        deleted,
        vec![
            ("rate_limit_windows", 0),
            ("delivery_caps", 0),
            ("challenges", 25),
            ("auth_attempts", 1),
            ("user_audit", 1)
        ]
    );
    for id in old {
        assert!(!exists(&pool, "challenges", id).await);
    }
    for id in [old_pending, old_delivered, recent] {
        assert!(exists(&pool, "challenges", id).await);
    }
    assert!(!exists(&pool, "auth_attempts", old_attempt).await);
    assert!(!exists(&pool, "user_audit", old_change).await);
    for (table, id) in [
        ("auth_attempts", kept_attempt),
        ("user_audit", kept_change),
        ("auth_attempts", attempt_of_old_challenge),
    ] {
        assert!(exists(&pool, table, id).await, "{table} {id}");
    }

    // Nothing left to delete: a second pass deletes nothing.
    let again = prune(&pool, &rules(&config(90, 365)), now, 10).await.unwrap();
    assert_eq!(
        again,
        vec![
            ("rate_limit_windows", 0),
            ("delivery_caps", 0),
            ("challenges", 0),
            ("auth_attempts", 0),
            ("user_audit", 0)
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn zero_days_keeps_everything() {
    let (_pg, pool) = database().await;
    let now = Utc::now();
    let alice = user(&pool, now - Duration::days(4000)).await;
    let ancient = challenge(&pool, alice, "approved", now - Duration::days(3000)).await;
    let (attempt, change) = audit(&pool, alice, now - Duration::days(3000)).await;

    let deleted = prune(&pool, &rules(&config(0, 0)), now, 10).await.unwrap();
    assert_eq!(deleted, vec![("rate_limit_windows", 0), ("delivery_caps", 0)]);
    assert!(exists(&pool, "challenges", ancient).await);
    assert!(exists(&pool, "auth_attempts", attempt).await);
    assert!(exists(&pool, "user_audit", change).await);

    // The two settings are independent: audit kept, challenges not.
    let deleted = prune(&pool, &rules(&config(90, 0)), now, 10).await.unwrap();
    assert_eq!(
        deleted,
        vec![("rate_limit_windows", 0), ("delivery_caps", 0), ("challenges", 1)]
    );
    assert!(exists(&pool, "auth_attempts", attempt).await);
}

/// Counters go once they no longer count, in batches, whatever the
/// retention settings: a rate-limit window once the one after it has
/// passed too, an hour's delivery count a day after that hour.
#[tokio::test(flavor = "multi_thread")]
async fn counters_go_once_they_no_longer_count() {
    let (_pg, pool) = database().await;
    let now = Utc::now();
    let window = |key: String, start: DateTime<Utc>, ms: i64| {
        sqlx::query(
            "INSERT INTO rate_limit_windows (key, window_start, window_ms, count, previous) VALUES ($1, $2, $3, 5, 5)",
        )
        .bind(key)
        .bind(start)
        .bind(ms)
    };
    // 12 minute windows that ended more than a window ago: done.
    for i in 0..12 {
        window(format!("user:prv_1:done{i}"), now - Duration::minutes(3), 60_000)
            .execute(&pool)
            .await
            .unwrap();
    }
    // The window before the current one still weighs in the estimate.
    window("user:prv_1:previous".into(), now - Duration::seconds(90), 60_000)
        .execute(&pool)
        .await
        .unwrap();
    // An hour-long window that began long ago is not over.
    window("agent:agt_1".into(), now - Duration::minutes(50), 3_600_000)
        .execute(&pool)
        .await
        .unwrap();
    for (prefix, hour) in [("1555", now - Duration::days(2)), ("1556", now - Duration::hours(2))] {
        sqlx::query(
            "INSERT INTO delivery_caps (provider_id, channel, prefix, hour, count) VALUES ('prv_1', 'sms', $1, $2, 3)",
        )
        .bind(prefix)
        .bind(hour)
        .execute(&pool)
        .await
        .unwrap();
    }

    let deleted = prune(&pool, &rules(&config(0, 0)), now, 5).await.unwrap();
    assert_eq!(deleted, vec![("rate_limit_windows", 12), ("delivery_caps", 1)]);
    let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM rate_limit_windows ORDER BY key")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(keys, ["agent:agt_1", "user:prv_1:previous"]);
    let prefixes: Vec<String> = sqlx::query_scalar("SELECT prefix FROM delivery_caps")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(prefixes, ["1556"]);
}

/// The rate-limit counters grow with the users (a row per user and agent):
/// each batch must find its rows by index, also in a plan cached while the
/// table was empty, in the transaction every batch runs in.
#[tokio::test(flavor = "multi_thread")]
async fn a_counter_batch_finds_its_rows_by_index_in_any_plan() {
    let (_pg, pool) = database().await;
    let mut conn = pool.acquire().await.unwrap();
    let counters = rules(&config(90, 365)).remove(0);
    assert_eq!(counters.table, "rate_limit_windows");
    let batch = vigil_runtime::retention::BATCH_TRANSACTION;
    for (mode, plan) in vigil_testkit::retention_batch_plans(&mut conn, batch, &counters.delete)
        .await
        .unwrap()
    {
        assert!(
            !plan.contains("Seq Scan"),
            "{mode}: a batch reads every counter:\n{plan}"
        );
    }
}
