//! Connections to PostgreSQL and NATS, retried at start-up so that a service
//! started before its dependencies waits for them instead of crash-looping.

use std::time::Duration;

use sqlx::{PgPool, Postgres, pool::PoolConnection, postgres::PgPoolOptions};

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("PostgreSQL unreachable")]
    Postgres(#[source] sqlx::Error),
    #[error("NATS unreachable: {0}")]
    Nats(String),
}

/// A pooled connection idle this long is checked (a ping, one round trip)
/// before the pool hands it out. sqlx checks every one by default: a round
/// trip more on each login for a connection that was in use a moment ago.
/// A database restart usually takes longer than this, so the connections
/// it cut are checked and replaced before use. One cut within a second of
/// its last use fails its statement instead (the login is denied, never
/// allowed), and the pool drops it when it comes back.
pub const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

pub async fn connect_postgres(url: &str, max_connections: u32, patience: Duration) -> Result<PgPool, ConnectError> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let attempt = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(3))
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IF_IDLE_FOR {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect(url)
            .await;
        match attempt {
            Ok(pool) => return Ok(pool),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(ConnectError::Postgres(e)),
            Err(e) => {
                tracing::info!(error = %e, "waiting for PostgreSQL");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// The connections of a service's statement batches (`crate::batch`), a pool
/// of their own: a batch must never wait for a connection held by a caller
/// that waits for that batch. One per worker of each of the service's
/// `batchers`.
pub async fn connect_batch_pool(url: &str, batchers: usize) -> Result<PgPool, ConnectError> {
    let connections = u32::try_from(crate::batch::WORKERS * batchers.max(1)).unwrap_or(u32::MAX);
    connect_postgres(url, connections, Duration::from_secs(30)).await
}

/// A connection from `pool`, the wait for it timed in
/// `vigil_db_acquire_seconds`: a login held up by a busy pool shows there,
/// not as a slow statement. (The time includes the ping of a connection
/// idle for [`PING_IF_IDLE_FOR`] or more.)
pub async fn acquire(pool: &PgPool) -> Result<PoolConnection<Postgres>, sqlx::Error> {
    let asked = std::time::Instant::now();
    let connection = pool.acquire().await;
    metrics::histogram!("vigil_db_acquire_seconds").record(asked.elapsed());
    connection
}

pub async fn connect_nats(url: &str, name: &str) -> Result<async_nats::Client, ConnectError> {
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .event_callback(|event| async move {
            tracing::info!(%event, "NATS connection event");
        })
        .connect(url)
        .await
        .map_err(|e| ConnectError::Nats(e.to_string()))
}
