//! The rate-limit counters on a real PostgreSQL, with a clock moved by hand:
//! shared by every replica, counted in order within a batch, and a limit
//! that recovers once the window has slid by.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, Utc};
use sqlx::PgConnection;
use vigil_challenge::ratelimit::{Hit, Limit, Limited, counter, hit};
use vigil_core::{Clock, ManualClock};
use vigil_testkit::PgServer;

fn limit(max: u32) -> Limit {
    Limit {
        max,
        window: Duration::seconds(60),
    }
}

/// Counts one request alone, as a batch of one.
async fn hit_one(
    conn: &mut PgConnection,
    keys: &[(&'static str, String, Limit)],
    now: DateTime<Utc>,
) -> Option<Limited> {
    let hits = [Hit {
        keys: keys.to_vec(),
        now,
    }];
    let mut counted = hit(conn, &hits).await.unwrap();
    assert_eq!(counted.len(), 1);
    counted.pop().unwrap()
}

/// A fresh database with the challenge service's tables.
async fn database() -> (PgServer, sqlx::PgPool) {
    let pg = PgServer::start().await.unwrap();
    let url = pg.create_database("vigil_challenge").await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::migrate!().run(&pool).await.unwrap();
    (pg, pool)
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_hold_across_connections_and_recover_after_the_window() {
    let (_pg, pool) = database().await;
    // Ten seconds into a minute.
    let start = DateTime::<Utc>::from_timestamp(1_800_000_010, 0).unwrap();
    let clock = ManualClock::new(start);
    let keys = |max| {
        [
            ("user", "user:prv_1:alice".to_owned(), limit(max)),
            ("agent", String::new(), limit(max)),
        ]
    };

    // Two "replicas": separate connections count into the same row.
    let mut a = pool.acquire().await.unwrap();
    let mut b = pool.acquire().await.unwrap();
    assert_eq!(hit_one(&mut a, &keys(3), clock.now()).await, None);
    assert_eq!(hit_one(&mut b, &keys(3), clock.now()).await, None);
    assert_eq!(hit_one(&mut a, &keys(3), clock.now()).await, None);
    let limited = hit_one(&mut b, &keys(3), clock.now())
        .await
        .expect("the fourth is limited");
    assert_eq!(limited.scope, "user");
    // 4 in this window: the next window must be half through (4 * 0.5 + 1 = 3).
    assert_eq!(limited.retry_at, start + Duration::seconds(50 + 30));

    // Another user is not affected.
    let bob = [("user", "user:prv_1:bob".to_owned(), limit(3))];
    assert_eq!(hit_one(&mut a, &bob, clock.now()).await, None);

    // Just before the retry time it is still limited (and that try counts) ...
    clock.advance(Duration::seconds(79));
    assert!(hit_one(&mut a, &keys(3), clock.now()).await.is_some());
    // ... and after a whole quiet window it is not.
    clock.advance(Duration::seconds(121));
    assert_eq!(hit_one(&mut a, &keys(3), clock.now()).await, None);

    // A limit of 0 is off: nothing is stored or refused.
    for _ in 0..10 {
        assert_eq!(hit_one(&mut a, &keys(0), clock.now()).await, None);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_requests_are_each_counted_once() {
    let (_pg, pool) = database().await;
    let now = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut conn = pool.acquire().await.unwrap();
                let keys = [("agent", "agent:agt_1".to_owned(), limit(10))];
                hit_one(&mut conn, &keys, now).await
            })
        })
        .collect();
    let mut refused = 0;
    for task in tasks {
        if task.await.unwrap().is_some() {
            refused += 1;
        }
    }
    assert_eq!(refused, 10, "exactly the requests past the limit are refused");
}

fn login(user: &str, agent: &str, now: DateTime<Utc>) -> Hit {
    Hit {
        keys: vec![
            ("user", format!("user:{user}"), limit(20)),
            ("agent", format!("agent:{agent}"), limit(25)),
        ],
        now,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_counts_its_requests_in_order_as_one_upsert_each_would() {
    let (_pg, pool) = database().await;
    let mut conn = pool.acquire().await.unwrap();
    let now = DateTime::<Utc>::from_timestamp(1_800_000_010, 0).unwrap();
    let first = hit(&mut conn, &vec![login("ann", "a1", now); 10]).await.unwrap();
    assert!(first.iter().all(Option::is_none));
    // 10 more from ann, then 10 from bob, all through agent a1 (25 a
    // minute), then ann's 21st through a2.
    let mut batch = vec![login("ann", "a1", now); 10];
    batch.extend(vec![login("bob", "a1", now); 10]);
    batch.push(login("ann", "a2", now));
    let second = hit(&mut conn, &batch).await.unwrap();
    let scopes: Vec<_> = second.iter().map(|l| l.as_ref().map(|l| l.scope)).collect();
    let mut expected = vec![None; 15];
    expected.extend(vec![Some("agent"); 5]);
    expected.push(Some("user"));
    assert_eq!(
        scopes, expected,
        "a1's 26th login is over its limit, ann's 21st over hers"
    );
    let counts: Vec<(String, i32)> = sqlx::query_as("SELECT key, count FROM rate_limit_windows ORDER BY key")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    let counts: Vec<(&str, i32)> = counts.iter().map(|(k, c)| (k.as_str(), *c)).collect();
    assert_eq!(
        counts,
        [("agent:a1", 30), ("agent:a2", 1), ("user:ann", 21), ("user:bob", 10)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn of_many_logins_at_once_through_the_batches_exactly_the_limit_get_through() {
    let (_pg, pool) = database().await;
    let counter = counter(pool.clone());
    let now = DateTime::<Utc>::from_timestamp(1_800_000_010, 0).unwrap();
    let answers = futures::future::join_all((0..100).map(|i| {
        let counter = counter.clone();
        async move { counter.call(login("ann", &format!("a{}", i % 3), now)).await.unwrap() }
    }))
    .await;
    assert_eq!(answers.iter().filter(|a| a.is_none()).count(), 20);
    let count: i32 = sqlx::query_scalar("SELECT count FROM rate_limit_windows WHERE key = 'user:ann'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 100, "each login counted once");
}
