//! The record of processed events (`vigil_processed_events`), kept only as
//! long as an event can come back. A consumer recognises a redelivery by
//! its envelope id there; without pruning, the table would grow by one row
//! per event per consumer for as long as the deployment runs.
//!
//! An event comes back from its stream (a redelivery, or a consumer
//! recreated to read the stream again), which holds it at most for the
//! stream's `max_age`; or from an outbox relay that published it and then
//! lost its deletion in a crash, which republishes it when it restarts.
//! Records are kept for the stream's `max_age` and a day more.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use vigil_core::ids::v7_floor;

use crate::streams::{DAY, STREAMS};

/// How often a consumer prunes its records.
const PRUNE_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// Records deleted per statement, so that pruning a long backlog never holds
/// many locks or one long transaction.
const PRUNE_BATCH: i64 = 10_000;

/// How long a consumer of `stream` keeps its records: the stream's
/// `max_age` and a day (for a relay that republishes after a crash). An
/// unknown stream gets the longest.
pub fn retention(stream: &str) -> Duration {
    let longest = STREAMS.iter().map(|s| s.max_age).max().unwrap_or(DAY);
    STREAMS.iter().find(|s| s.name == stream).map_or(longest, |s| s.max_age) + DAY
}

/// Deletes `durable`'s records of events created and processed before
/// `before`, a batch at a time until none is left or `stop` is cancelled
/// (a first prune of a large table must not hold up a shutdown); returns
/// how many. Envelope ids are UUIDv7, whose first 48 bits are their
/// creation time in milliseconds, so "created before" is a range of the
/// primary key (consumer, event_id) and needs no index of its own.
/// `processed_at` is checked too, so an id that is not a UUIDv7 (Vigil
/// writes none) is never pruned early.
pub async fn prune(
    pool: &PgPool,
    durable: &str,
    before: SystemTime,
    stop: &CancellationToken,
) -> Result<u64, sqlx::Error> {
    let processed_before = DateTime::<Utc>::from(before);
    let first_id_at = v7_floor(processed_before);
    let mut pruned = 0;
    loop {
        // The batch picked once, in an `ARRAY(...)` (see the outbox relay).
        let deleted = sqlx::query(
            "DELETE FROM vigil_processed_events WHERE consumer = $1 AND event_id = ANY (ARRAY ( \
               SELECT event_id FROM vigil_processed_events \
               WHERE consumer = $1 AND event_id < $2 AND processed_at < $3 \
               ORDER BY event_id LIMIT $4 FOR UPDATE SKIP LOCKED))",
        )
        .bind(durable)
        .bind(first_id_at)
        .bind(processed_before)
        .bind(PRUNE_BATCH)
        .execute(pool)
        .await?
        .rows_affected();
        pruned += deleted;
        if deleted < PRUNE_BATCH as u64 || stop.is_cancelled() {
            return Ok(pruned);
        }
    }
}

/// Prunes `durable`'s records every [`PRUNE_INTERVAL`] until `shutdown`.
pub(crate) async fn keep_pruned(pool: PgPool, durable: String, stream: &'static str, shutdown: CancellationToken) {
    let kept_for = retention(stream);
    loop {
        tokio::select! {
            () = tokio::time::sleep(PRUNE_INTERVAL) => {}
            () = shutdown.cancelled() => return,
        }
        let before = SystemTime::now().checked_sub(kept_for).unwrap_or(UNIX_EPOCH);
        match prune(&pool, &durable, before, &shutdown).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(consumer = %durable, pruned, "old processed-event records pruned"),
            Err(error) => tracing::warn!(consumer = %durable, %error, "processed-event records not pruned"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use chrono::{DateTime, Utc};
    use sqlx::PgPool;
    use tokio_util::sync::CancellationToken;
    use uuid::Uuid;

    use super::{DAY, prune, retention};

    fn v7_at(at: SystemTime) -> Uuid {
        vigil_testkit::uuid_v7_at(DateTime::<Utc>::from(at))
    }

    async fn record(pool: &PgPool, consumer: &str, ids: &[Uuid], processed_at: SystemTime) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO vigil_processed_events (consumer, event_id, processed_at) SELECT $1, UNNEST($2::uuid[]), $3",
        )
        .bind(consumer)
        .bind(ids)
        .bind(DateTime::<Utc>::from(processed_at))
        .execute(pool)
        .await?;
        Ok(())
    }

    async fn kept(pool: &PgPool, consumer: &str) -> anyhow::Result<Vec<Uuid>> {
        Ok(
            sqlx::query_scalar("SELECT event_id FROM vigil_processed_events WHERE consumer = $1 ORDER BY event_id")
                .bind(consumer)
                .fetch_all(pool)
                .await?,
        )
    }

    #[test]
    fn records_outlive_their_stream_by_a_day() {
        assert_eq!(retention("VIGIL_DELIVERY"), Duration::from_secs(60 * 60) + DAY);
        assert_eq!(retention("VIGIL_USAGE"), Duration::from_secs(35 * 24 * 60 * 60) + DAY);
        assert_eq!(
            retention("NOT_A_STREAM"),
            retention("VIGIL_USAGE"),
            "an unknown stream gets the longest"
        );
    }

    /// Only the named consumer's records of events both created and
    /// processed before the cut are deleted, however many batches that takes.
    #[tokio::test]
    async fn pruning_deletes_only_old_records_of_one_consumer() -> anyhow::Result<()> {
        let (_pg, pool) = crate::test_database("vigil_pruning").await?;
        let now = SystemTime::now();
        let (long_ago, cut) = (now - 40 * DAY, now - 36 * DAY);

        // More than two batches of old records, and one of each kind that stays.
        let old: Vec<Uuid> = (0..25_001).map(|_| v7_at(long_ago)).collect();
        record(&pool, "billing", &old, long_ago).await?;
        let recent = v7_at(now);
        record(&pool, "billing", &[recent], now).await?;
        // Not a UUIDv7: it sorts first, but was processed just now.
        let not_v7 = Uuid::from_u128(1);
        record(&pool, "billing", &[not_v7], now).await?;
        let other_consumers = v7_at(long_ago);
        record(&pool, "challenge", &[other_consumers], long_ago).await?;

        let running = CancellationToken::new();
        assert_eq!(prune(&pool, "billing", cut, &running).await?, 25_001);
        assert_eq!(kept(&pool, "billing").await?, vec![not_v7, recent]);
        assert_eq!(kept(&pool, "challenge").await?, vec![other_consumers]);
        assert_eq!(
            prune(&pool, "billing", cut, &running).await?,
            0,
            "nothing left to prune"
        );

        // Stopping: the batch under way finishes, no other starts.
        record(&pool, "billing", &old, long_ago).await?;
        let stopping = CancellationToken::new();
        stopping.cancel();
        assert_eq!(prune(&pool, "billing", cut, &stopping).await?, 10_000);
        Ok(())
    }
}
