//! The tables the bus needs in every service's database. They are created
//! here, not in each service's migrations, so the outbox and the consumer
//! bookkeeping cannot drift apart between services.

use sqlx::{Executor, PgPool};

use crate::BusError;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS vigil_outbox (
    -- The envelope id (UUIDv7), so rows relay in the order they were written.
    id          UUID PRIMARY KEY,
    subject     TEXT NOT NULL,
    envelope    BYTEA NOT NULL,
    traceparent TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS vigil_processed_events (
    consumer     TEXT NOT NULL,
    event_id     UUID NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Events a consumer could not handle and will never be able to (malformed,
-- or failed every delivery). Kept, never dropped, so an operator can replay.
CREATE TABLE IF NOT EXISTS vigil_dead_letters (
    id          BIGSERIAL PRIMARY KEY,
    consumer    TEXT NOT NULL,
    subject     TEXT NOT NULL,
    message     BYTEA NOT NULL,
    error       TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
"#;

/// Creates the bus tables if they are missing. Safe to call from every
/// replica at start-up: an advisory lock serialises concurrent starts.
pub async fn install(pool: &PgPool) -> Result<(), BusError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(7160001)")
        .execute(&mut *tx)
        .await?;
    // Through `Executor` so the future stays `Send` (raw_sql's own execute is not).
    (&mut *tx).execute(sqlx::raw_sql(SCHEMA)).await?;
    tx.commit().await?;
    Ok(())
}
