//! Connections to PostgreSQL and NATS, retried at start-up so that a service
//! started before its dependencies waits for them instead of crash-looping.

use std::time::Duration;

use sqlx::{PgPool, postgres::PgPoolOptions};

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
