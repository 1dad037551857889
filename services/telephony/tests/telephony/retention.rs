//! Retention on a real PostgreSQL: a delivery past its time goes with its
//! attempts, its carrier's reports and the replies to it; reports and
//! replies that matched no delivery go on their own; recent rows stay.

use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;
use uuid::Uuid;
use vigil_runtime::retention::prune;
use vigil_telephony::{Config, retention::rules};
use vigil_testkit::uuid_v7_at as minted_at;

use super::PG;

/// A delivery made at `at`, with one attempt, one carrier report and one
/// reply; returns its id and those of the report and the reply.
async fn delivery(pool: &PgPool, at: DateTime<Utc>, n: u32) -> anyhow::Result<(Uuid, Uuid, Uuid)> {
    let id = minted_at(at);
    sqlx::query(
        "INSERT INTO deliveries (id, provider_id, challenge_id, channel, destination, state, carrier, carrier_ref, created_at, updated_at)
         VALUES ($1, 'prv_1', 'chl_1', 'sms', '+15550100001', 'delivered', 'twilio', $2, $3, $3)",
    )
    .bind(id)
    .bind(format!("SM{id}"))
    .bind(at)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO delivery_attempts (delivery_id, attempt, carrier, outcome, started_at) VALUES ($1, 1, 'twilio', 'accepted', $2)",
    )
    .bind(id)
    .bind(at)
    .execute(pool)
    .await?;
    let report = callback(pool, Some(id), at).await?;
    let reply = reply(pool, Some(id), at, n).await?;
    Ok((id, report, reply))
}

async fn callback(pool: &PgPool, delivery: Option<Uuid>, at: DateTime<Utc>) -> anyhow::Result<Uuid> {
    let id = minted_at(at);
    sqlx::query(
        "INSERT INTO carrier_callbacks (id, delivery_id, carrier, kind, status, received_at) VALUES ($1, $2, 'twilio', 'sms', 'delivered', $3)",
    )
    .bind(id)
    .bind(delivery)
    .bind(at)
    .execute(pool)
    .await?;
    Ok(id)
}

async fn reply(pool: &PgPool, delivery: Option<Uuid>, at: DateTime<Utc>, n: u32) -> anyhow::Result<Uuid> {
    let id = minted_at(at);
    sqlx::query(
        "INSERT INTO inbound_messages (id, carrier_ref, from_number, to_number, body, delivery_id, received_at)
         VALUES ($1, $2, '+15550100001', '+15550000000', 'YES', $3, $4)",
    )
    .bind(id)
    .bind(format!("SMreply{n}"))
    .bind(delivery)
    .bind(at)
    .execute(pool)
    .await?;
    Ok(id)
}

async fn count(pool: &PgPool, table: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(pool)
        .await?)
}

async fn exists(pool: &PgPool, table: &str, column: &str, id: Uuid) -> anyhow::Result<bool> {
    Ok(
        sqlx::query_scalar(&format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE {column} = $1)"))
            .bind(id)
            .fetch_one(pool)
            .await?,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn deliveries_past_their_time_go_with_everything_about_them() -> anyhow::Result<()> {
    let pg = PG.get_or_try_init(vigil_testkit::PgServer::start).await?;
    let pool = PgPool::connect(&pg.create_database("retention_deliveries").await?).await?;
    sqlx::migrate!().run(&pool).await?;
    let now = Utc::now();
    let days = |n| now - Duration::days(n);

    // 12 deliveries past 90 days, deleted in batches of 5 below.
    let mut old = Vec::new();
    for n in 0..12 {
        old.push(delivery(&pool, days(91) + Duration::minutes(i64::from(n)), n).await?);
    }
    let (kept, kept_report, kept_reply) = delivery(&pool, days(89), 100).await?;
    // A late report for an old delivery, received inside the retention: it
    // must not keep the delivery, and goes with it.
    let late_report = callback(&pool, Some(old[0].0), days(89)).await?;
    // Reports and replies that matched no delivery.
    let stray_report = callback(&pool, None, days(91)).await?;
    let stray_reply = reply(&pool, None, days(91), 200).await?;
    let recent_stray_report = callback(&pool, None, days(1)).await?;
    let recent_stray_reply = reply(&pool, None, days(1), 201).await?;

    let config = Config {
        delivery_retention_days: 90,
        ..Config::default()
    };
    let deleted = prune(&pool, &rules(&config), now, 5).await?;
    assert_eq!(
        deleted,
        vec![("deliveries", 12), ("carrier_callbacks", 1), ("inbound_messages", 1)]
    );
    for (delivery, report, reply) in &old {
        assert!(!exists(&pool, "deliveries", "id", *delivery).await?);
        assert!(!exists(&pool, "delivery_attempts", "delivery_id", *delivery).await?);
        assert!(!exists(&pool, "carrier_callbacks", "id", *report).await?);
        assert!(!exists(&pool, "inbound_messages", "id", *reply).await?);
    }
    for (table, id) in [
        ("carrier_callbacks", late_report),
        ("carrier_callbacks", stray_report),
        ("inbound_messages", stray_reply),
    ] {
        assert!(!exists(&pool, table, "id", id).await?, "{table} {id}");
    }
    assert!(exists(&pool, "deliveries", "id", kept).await?);
    assert!(exists(&pool, "delivery_attempts", "delivery_id", kept).await?);
    for (table, id) in [
        ("carrier_callbacks", kept_report),
        ("inbound_messages", kept_reply),
        ("carrier_callbacks", recent_stray_report),
        ("inbound_messages", recent_stray_reply),
    ] {
        assert!(exists(&pool, table, "id", id).await?, "{table} {id}");
    }
    assert_eq!(count(&pool, "carrier_callbacks").await?, 2);

    // 0 days keeps everything.
    let forever = Config {
        delivery_retention_days: 0,
        ..Config::default()
    };
    assert!(
        prune(&pool, &rules(&forever), now + Duration::days(1000), 5)
            .await?
            .is_empty()
    );
    assert_eq!(count(&pool, "deliveries").await?, 1);
    Ok(())
}
