//! Connections to PostgreSQL and NATS, retried at start-up so that a service
//! started before its dependencies waits for them instead of crash-looping.

use std::{str::FromStr, time::Duration};

use sqlx::{
    PgPool, Postgres,
    pool::PoolConnection,
    postgres::{PgConnectOptions, PgPoolOptions},
};

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
    connect_postgres_with(url, max_connections, patience, &[]).await
}

/// [`connect_postgres`], each connection starting with the server
/// `settings` given (`name`, `value`).
async fn connect_postgres_with(
    url: &str,
    max_connections: u32,
    patience: Duration,
    settings: &[(&str, &str)],
) -> Result<PgPool, ConnectError> {
    let options = PgConnectOptions::from_str(url)
        .map_err(ConnectError::Postgres)?
        .options(settings.iter().copied());
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
            .connect_with(options.clone())
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
///
/// Their plans are generic. A batch's statement takes arrays whose length
/// only the call knows; PostgreSQL's plan for each call's own length
/// always looked cheaper than the generic one, so it planned such a
/// statement anew on every call (seen: a batched user read planned 5,586
/// times in 5,580 calls).
pub async fn connect_batch_pool(url: &str, batchers: usize) -> Result<PgPool, ConnectError> {
    batch_pool_with(url, batchers, &[]).await
}

/// [`connect_batch_pool`] whose commits do not wait for the WAL to reach
/// the disk (`synchronous_commit = off`): a crash of PostgreSQL may forget
/// what they committed in the moment before it (up to three times
/// `wal_writer_delay`), but no later commit, as WAL is flushed in order.
/// For statements whose effect only matters to the requests that go on to
/// a durable commit of their own, such as rate-limit counts: their count
/// is on disk before their answer is.
pub async fn connect_deferred_commit_batch_pool(url: &str, batchers: usize) -> Result<PgPool, ConnectError> {
    batch_pool_with(url, batchers, &[("synchronous_commit", "off")]).await
}

async fn batch_pool_with(url: &str, batchers: usize, settings: &[(&str, &str)]) -> Result<PgPool, ConnectError> {
    let connections = u32::try_from(crate::batch::WORKERS * batchers.max(1)).unwrap_or(u32::MAX);
    let mut all = vec![("plan_cache_mode", "force_generic_plan")];
    all.extend_from_slice(settings);
    connect_postgres_with(url, connections, Duration::from_secs(30), &all).await
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// Batch connections plan generically, and only the deferred ones
    /// commit without waiting for the disk; the others keep PostgreSQL's
    /// choices.
    #[tokio::test(flavor = "multi_thread")]
    async fn batch_connections_plan_generically_and_only_deferred_ones_skip_the_disk() {
        let pg = vigil_testkit::PgServer::start().await.unwrap();
        let url = pg.create_database("vigil_connect").await.unwrap();
        // The test server defers every commit; this database, as a
        // production one, waits for the disk unless a connection says not.
        let setup = connect_postgres(&url, 1, Duration::from_secs(5)).await.unwrap();
        sqlx::query("ALTER DATABASE vigil_connect SET synchronous_commit = on")
            .execute(&setup)
            .await
            .unwrap();
        let settings = async |pool: PgPool| -> (String, String) {
            sqlx::query_as("SELECT current_setting('plan_cache_mode'), current_setting('synchronous_commit')")
                .fetch_one(&pool)
                .await
                .unwrap()
        };
        let generic_and = |commit: &str| ("force_generic_plan".to_owned(), commit.to_owned());
        let batches = connect_batch_pool(&url, 2).await.unwrap();
        assert_eq!(batches.options().get_max_connections(), 4);
        assert_eq!(settings(batches).await, generic_and("on"));
        let deferred = connect_deferred_commit_batch_pool(&url, 1).await.unwrap();
        assert_eq!(deferred.options().get_max_connections(), 2);
        assert_eq!(settings(deferred).await, generic_and("off"));
        let requests = connect_postgres(&url, 1, Duration::from_secs(5)).await.unwrap();
        assert_eq!(settings(requests).await, ("auto".to_owned(), "on".to_owned()));
    }
}
