//! The services' connection pool against a real PostgreSQL: connections
//! the server cut while they sat in the pool are replaced, never handed to
//! a login.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use vigil_runtime::connect::{PING_IF_IDLE_FOR, acquire, connect_postgres};
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
