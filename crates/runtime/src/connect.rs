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

pub async fn connect_postgres(url: &str, max_connections: u32, patience: Duration) -> Result<PgPool, ConnectError> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let attempt = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(3))
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

/// A connection from `pool`, the wait for it timed in
/// `vigil_db_acquire_seconds`: a login held up by a busy pool shows there,
/// not as a slow statement. (The time includes sqlx's ping of the
/// connection it hands out.)
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
