//! The services' connection pool against a real PostgreSQL: connections
//! the server cut while they sat in the pool are replaced, never handed to
//! a login; a batch's kept connection that a restart cut is replaced.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use vigil_runtime::{
    batch::Batcher,
    connect::{PING_IF_IDLE_FOR, acquire, connect_batch_pool, connect_postgres},
};
use vigil_testkit::PgServer;

const CONNECTIONS: usize = 4;

#[tokio::test(flavor = "multi_thread")]
async fn connections_cut_by_a_database_restart_are_replaced() {
    let mut pg = PgServer::start().await.unwrap();
    let url = pg.create_database("pool").await.unwrap();
    let pool = connect_postgres(&url, CONNECTIONS as u32, Duration::from_secs(10))
        .await
        .unwrap();
    let fill = async || {
        let mut held = Vec::new();
        for _ in 0..CONNECTIONS {
            let mut conn = acquire(&pool).await.unwrap();
            sqlx::query("SELECT 1").execute(&mut *conn).await.unwrap();
            held.push(conn);
        }
        held
    };
    // Every connection the pool may have, used once and back in the pool.
    drop(fill().await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(pool.num_idle(), CONNECTIONS);

    pg.restart().await.unwrap();
    // A restart takes about this long in production; here it may be quicker.
    tokio::time::sleep(PING_IF_IDLE_FOR).await;

    // Each is checked before it is handed out: all work.
    drop(fill().await);
}

/// Each item's answer: the server process of the connection that ran it.
fn backend_pid<'c>(
    conn: &'c mut sqlx::PgConnection,
    items: &'c [u32],
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<i32>, sqlx::Error>> + Send + 'c>> {
    Box::pin(async move {
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(conn).await?;
        Ok(vec![pid; items.len()])
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_keep_their_connection_and_replace_one_a_restart_cut() {
    let mut pg = PgServer::start().await.unwrap();
    let url = pg.create_database("batches").await.unwrap();
    let pool = connect_batch_pool(&url, 1).await.unwrap();
    let batcher = Batcher::statements("test", 8, pool.clone(), backend_pid);

    let first = batcher.call(1).await.unwrap();
    assert_eq!(batcher.call(2).await.unwrap(), first, "the same connection ran both");
    // Kept by the worker, not given back to the pool (which would check it
    // with a round trip each time).
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(pool.num_idle(), 0);

    // The kept connection is cut while it sits idle; the next batch runs on
    // a new one at once, without waiting for any check.
    pg.restart().await.unwrap();
    let after = batcher.call(3).await.expect("a batch after the restart runs");
    assert_ne!(after, first);
    assert_eq!(batcher.call(4).await.unwrap(), after, "and the new one is kept");
}
