//! The rate-limit counters on a real PostgreSQL, with a clock moved by hand:
//! one upsert per request, shared by every replica, and a limit that
//! recovers once the window has slid by.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, Utc};
use vigil_challenge::ratelimit::{Limit, hit};
use vigil_core::{Clock, ManualClock};
use vigil_testkit::PgServer;

fn limit(max: u32) -> Limit {
    Limit {
        max,
        window: Duration::seconds(60),
    }
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
    assert_eq!(hit(&mut a, &keys(3), clock.now()).await.unwrap(), None);
    assert_eq!(hit(&mut b, &keys(3), clock.now()).await.unwrap(), None);
    assert_eq!(hit(&mut a, &keys(3), clock.now()).await.unwrap(), None);
    let limited = hit(&mut b, &keys(3), clock.now())
        .await
        .unwrap()
        .expect("the fourth is limited");
    assert_eq!(limited.scope, "user");
    // 4 in this window: the next window must be half through (4 * 0.5 + 1 = 3).
    assert_eq!(limited.retry_at, start + Duration::seconds(50 + 30));

    // Another user is not affected.
    let bob = [("user", "user:prv_1:bob".to_owned(), limit(3))];
    assert_eq!(hit(&mut a, &bob, clock.now()).await.unwrap(), None);

    // Just before the retry time it is still limited (and that try counts) ...
    clock.advance(Duration::seconds(79));
    assert!(hit(&mut a, &keys(3), clock.now()).await.unwrap().is_some());
    // ... and after a whole quiet window it is not.
    clock.advance(Duration::seconds(121));
    assert_eq!(hit(&mut a, &keys(3), clock.now()).await.unwrap(), None);

    // A limit of 0 is off: nothing is stored or refused.
    for _ in 0..10 {
        assert_eq!(hit(&mut a, &keys(0), clock.now()).await.unwrap(), None);
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
                hit(&mut conn, &keys, now).await.unwrap()
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
