//! The transactional outbox: events are written in the same transaction as
//! the state change that causes them, then relayed to JetStream by
//! [`OutboxRelay`]. A crash between commit and publish loses nothing; a crash
//! between publish and delete republishes with the same `Nats-Msg-Id`, which
//! JetStream drops within its duplicate window (and consumers are idempotent
//! beyond it).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use async_nats::{HeaderMap, jetstream};
use futures::future::try_join_all;
use prost::Message;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{BusError, Event, envelope, trace};

/// How often the relay counts its unsent rows.
const BACKLOG_SAMPLE_INTERVAL: Duration = Duration::from_secs(10);

/// Publishes of a batch whose acks are awaited together; well under the
/// permits a JetStream context lends unacknowledged publishes (5,000 by
/// default).
const ACKS_IN_FLIGHT: usize = 256;

/// How long the relay may wait, after events nobody is waiting on were
/// committed, for more to relay in the same batch (see
/// [`Outbox::notify_unhurried`]).
const UNHURRIED_LINGER: Duration = Duration::from_millis(20);

/// The relay's transaction. Its commit does not wait for the disk: a
/// deletion lost in a database crash only publishes its rows again, which
/// the outbox already allows (see the module's comment). And its plans
/// never scan the table: the relay keeps the outbox nearly empty, so that is
/// what autovacuum finds and records, and a plan made from such statistics
/// reads the whole table for every row of a batch. Once a burst had built a
/// backlog, each batch of 256 took 0.6–4 s and the backlog only grew (seen
/// in a benchmark run; reproduced with 50,000 rows: 4 s a batch, against
/// 1 ms with the primary key).
const RELAY_TRANSACTION: &str = "BEGIN; SET LOCAL enable_seqscan = off; SET LOCAL synchronous_commit = off";

/// One batch, deleted and returned in one statement, committed only once
/// JetStream has every row: a failed publish rolls the delete back. SKIP
/// LOCKED lets several replicas relay side by side without publishing a
/// row twice. The batch is picked once, in an `ARRAY(...)` evaluated before
/// the delete: as `id IN (subquery)` a plan could run the locking subquery
/// again, each time past the rows the statement had just deleted (a
/// "batch" once took 8,460 rows and 30 s); and as a join with the picked
/// rows it could look each one up by reading the whole table.
const RELAY_BATCH: &str = "DELETE FROM vigil_outbox \
     WHERE id = ANY (ARRAY (SELECT id FROM vigil_outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)) \
     RETURNING id, subject, envelope, traceparent";

/// Writes events into the outbox inside the caller's transaction, and wakes
/// the relay once the caller has committed.
#[derive(Clone, Default)]
pub struct Outbox {
    wake: Arc<Notify>,
    unhurried: Arc<Notify>,
}

impl Outbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `event` to the outbox in the caller's transaction.
    pub async fn enqueue<E: Event>(
        &self,
        tx: &mut PgConnection,
        provider_id: &str,
        event: &E,
    ) -> Result<Uuid, BusError> {
        let envelope = envelope::wrap(provider_id, event, std::time::SystemTime::now());
        let id = envelope::envelope_id(&envelope)?;
        sqlx::query("INSERT INTO vigil_outbox (id, subject, envelope, traceparent) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(E::SUBJECT)
            .bind(envelope.encode_to_vec())
            .bind(trace::current_traceparent())
            .execute(tx)
            .await?;
        Ok(id)
    }

    /// Starts a set of events written by one statement (see [`OutboxBatch`]).
    pub fn batch(&self, provider_id: &str) -> OutboxBatch {
        OutboxBatch {
            provider_id: provider_id.to_owned(),
            ids: Vec::new(),
            subjects: Vec::new(),
            envelopes: Vec::new(),
        }
    }

    /// Tells the relay there is something to publish. Call after commit.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Tells the relay there is something to publish that no login waits
    /// on (a login answered in its own reply: its usage, its end), so it
    /// may wait [`UNHURRIED_LINGER`] for more events to go in the same
    /// batch. At low rates each login's events were a batch of their own:
    /// a transaction in the relay, and one more in each consumer. A
    /// [`Self::notify`] meanwhile relays at once. Call after commit.
    pub fn notify_unhurried(&self) {
        self.unhurried.notify_one();
    }
}

/// Several events of one transaction, inserted by one statement: on a login
/// path every round trip to the database is CPU on both ends, and a
/// challenge's start writes two or three events.
pub struct OutboxBatch {
    provider_id: String,
    ids: Vec<Uuid>,
    subjects: Vec<&'static str>,
    envelopes: Vec<Vec<u8>>,
}

impl OutboxBatch {
    pub fn push<E: Event>(&mut self, event: &E) -> Result<Uuid, BusError> {
        let envelope = envelope::wrap(&self.provider_id, event, std::time::SystemTime::now());
        let id = envelope::envelope_id(&envelope)?;
        self.ids.push(id);
        self.subjects.push(E::SUBJECT);
        self.envelopes.push(envelope.encode_to_vec());
        Ok(id)
    }

    /// Inserts the events, in the order pushed, in the caller's transaction.
    pub async fn write(self, tx: &mut PgConnection) -> Result<(), BusError> {
        if self.ids.is_empty() {
            return Ok(());
        }
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| insert_rows_sql(1, ""));
        let rows = self.rows();
        sqlx::query(&SQL)
            .bind(rows.ids)
            .bind(rows.subjects)
            .bind(rows.envelopes)
            .bind(rows.traceparent)
            .execute(tx)
            .await?;
        Ok(())
    }

    /// The events as the four parameters of the statement [`Self::write`]
    /// runs, for a caller that writes them inside a statement of its own: a
    /// state change and its events in one round trip, on paths where every
    /// round trip counts.
    pub fn rows(&self) -> OutboxRows<'_> {
        // One trace context for all: they are written under the same span.
        self.rows_traced(trace::current_traceparent())
    }

    /// [`Self::rows`] under the trace context `traceparent`, taken where the
    /// events were caused: for a statement that another task runs, such as
    /// one that writes the events of many callers (`vigil_runtime::batch`).
    pub fn rows_traced(&self, traceparent: Option<String>) -> OutboxRows<'_> {
        OutboxRows {
            ids: &self.ids,
            subjects: &self.subjects,
            envelopes: &self.envelopes,
            traceparent,
        }
    }
}

/// An [`OutboxBatch`]'s rows as the four parameters of [`insert_rows_sql`]:
/// ids, subjects, envelopes, then the trace context. The default is no rows.
#[derive(Default)]
pub struct OutboxRows<'a> {
    pub ids: &'a [Uuid],
    pub subjects: &'a [&'static str],
    pub envelopes: &'a [Vec<u8>],
    pub traceparent: Option<String>,
}

/// The statement that writes [`OutboxRows`] bound from parameter `$first`
/// on (four parameters), if `condition` holds (`""`: always). A statement
/// that changes a state and writes its events in one round trip uses it as
/// one of its parts: `… announced AS ({insert_rows_sql(5, "WHERE EXISTS
/// (SELECT 1 FROM moved)")}) …`.
pub fn insert_rows_sql(first: usize, condition: &str) -> String {
    let (ids, subjects, envelopes, traceparent) = (first, first + 1, first + 2, first + 3);
    format!(
        "INSERT INTO vigil_outbox (id, subject, envelope, traceparent) \
         SELECT e.id, e.subject, e.envelope, ${traceparent} \
         FROM UNNEST(${ids}::uuid[], ${subjects}::text[], ${envelopes}::bytea[]) AS e (id, subject, envelope) \
         {condition}"
    )
}

/// Publishes committed outbox rows to JetStream; their deletion commits
/// once JetStream has acknowledged every one of them.
pub struct OutboxRelay {
    pool: PgPool,
    js: jetstream::Context,
    outbox: Outbox,
    poll_interval: Duration,
    batch_size: i64,
    publish_timeout: Duration,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    subject: String,
    envelope: Vec<u8>,
    traceparent: Option<String>,
}

impl OutboxRelay {
    pub fn new(pool: PgPool, js: jetstream::Context, outbox: Outbox) -> Self {
        Self {
            pool,
            js,
            outbox,
            poll_interval: Duration::from_millis(500),
            batch_size: 256,
            publish_timeout: Duration::from_secs(30),
        }
    }

    /// At most `rows` events per transaction (256 by default).
    pub fn with_batch_size(mut self, rows: u32) -> Self {
        self.batch_size = i64::from(rows.max(1));
        self
    }

    /// How often the relay looks for rows nobody told it about (500 ms by
    /// default): rows left by a relay that failed, or by another replica.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How long a batch's publishes may take before the batch fails and its
    /// rows wait for the next try (30 s by default).
    pub fn with_publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// Runs until `shutdown`, then relays what is left once more.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        let mut sampled_at: Option<Instant> = None;
        loop {
            match self.drain_sampled(&mut sampled_at).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(error) => {
                    tracing::warn!(error = %error, "outbox relay failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
            tokio::select! {
                () = self.outbox.wake.notified() => {}
                () = self.outbox.unhurried.notified() => {
                    tokio::select! {
                        () = self.outbox.wake.notified() => {}
                        () = tokio::time::sleep(UNHURRIED_LINGER) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
                () = tokio::time::sleep(self.poll_interval) => {}
                () = shutdown.cancelled() => {
                    if let Err(error) = self.drain().await {
                        tracing::warn!(error = %error, "outbox not fully relayed at shutdown; rows stay for the next start");
                    }
                    return;
                }
            }
        }
    }

    /// Sets the backlog gauges: unsent rows and the age of the oldest (its
    /// id is a UUIDv7, so it carries its creation time).
    async fn sample_backlog(&self) {
        // (PostgreSQL has no min() over uuid.)
        let sampled: Result<(i64, Option<Uuid>), sqlx::Error> = sqlx::query_as(
            "SELECT (SELECT count(*) FROM vigil_outbox), (SELECT id FROM vigil_outbox ORDER BY id LIMIT 1)",
        )
        .fetch_one(&self.pool)
        .await;
        match sampled {
            Ok((count, oldest)) => {
                metrics::gauge!("vigil_outbox_backlog").set(count as f64);
                let age = oldest.and_then(|id| id.get_timestamp()).map_or(0.0, |ts| {
                    let (secs, nanos) = ts.to_unix();
                    let created = std::time::UNIX_EPOCH + Duration::new(secs, nanos);
                    created.elapsed().unwrap_or_default().as_secs_f64()
                });
                metrics::gauge!("vigil_outbox_oldest_age_seconds").set(age);
            }
            Err(error) => tracing::warn!(%error, "outbox backlog not sampled"),
        }
    }

    /// Relays batches until the outbox is empty.
    pub async fn drain(&self) -> Result<(), BusError> {
        while self.relay_batch().await? == self.batch_size as usize {}
        Ok(())
    }

    /// [`Self::drain`], sampling the backlog first and between batches when
    /// a sample is due: during a long drain, and while relaying fails (the
    /// run loop comes round every poll interval or backoff), the gauges
    /// show the backlog growing instead of the last value before it.
    async fn drain_sampled(&self, sampled_at: &mut Option<Instant>) -> Result<(), BusError> {
        loop {
            if sampled_at.is_none_or(|at| at.elapsed() >= BACKLOG_SAMPLE_INTERVAL) {
                self.sample_backlog().await;
                *sampled_at = Some(Instant::now());
            }
            if self.relay_batch().await? < self.batch_size as usize {
                return Ok(());
            }
        }
    }

    /// Relays one batch; returns how many rows it published.
    async fn relay_batch(&self) -> Result<usize, BusError> {
        let mut tx = self.pool.begin_with(RELAY_TRANSACTION).await?;
        let mut rows: Vec<Row> = sqlx::query_as(RELAY_BATCH)
            .bind(self.batch_size)
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        // In the order written (ids are UUIDv7); RETURNING keeps none.
        rows.sort_unstable_by_key(|r| r.id);
        // Bounded: a publish that never settles fails the batch (its delete
        // rolls back and the relay retries) instead of holding the relay,
        // and the outbox behind it, forever.
        let published = tokio::time::timeout(self.publish_timeout, self.publish(&rows))
            .await
            .unwrap_or_else(|_| {
                Err(BusError::Publish(format!(
                    "JetStream did not take the batch within {:?}",
                    self.publish_timeout
                )))
            });
        if let Err(error) = published {
            // Rolled back now, not when the pool gets round to it: until
            // then the batch stays locked, and the next try (this relay's
            // or another replica's) would skip it and find nothing to do.
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(error = %rollback, "rolling back a batch that was not relayed failed");
            }
            return Err(error);
        }
        tx.commit().await?;
        metrics::counter!("vigil_outbox_relayed_total").increment(rows.len() as u64);
        tracing::debug!(count = rows.len(), "relayed outbox events");
        Ok(rows.len())
    }

    /// Publishes `rows` in order, with at most [`ACKS_IN_FLIGHT`] acks
    /// awaited at once: the JetStream context lends each unacknowledged
    /// publish one of a bounded number of permits, and a publish waiting
    /// for a permit that only an ack not yet awaited would return waits
    /// forever.
    async fn publish(&self, rows: &[Row]) -> Result<(), BusError> {
        let mut acks = Vec::with_capacity(rows.len().min(ACKS_IN_FLIGHT));
        for row in rows {
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", row.id.to_string().as_str());
            if let Some(tp) = &row.traceparent {
                headers.insert("traceparent", tp.as_str());
            }
            let ack = self
                .js
                .publish_with_headers(row.subject.clone(), headers, row.envelope.clone().into())
                .await
                .map_err(|e| BusError::Publish(e.to_string()))?;
            acks.push(ack.into_future());
            if acks.len() == ACKS_IN_FLIGHT {
                try_join_all(acks.drain(..))
                    .await
                    .map_err(|e| BusError::Publish(e.to_string()))?;
            }
        }
        // Pipelined: every publish of a window is in flight before the first ack is awaited.
        try_join_all(acks).await.map_err(|e| BusError::Publish(e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{RELAY_BATCH, RELAY_TRANSACTION};

    /// The relay's plan keys on the primary key however stale the table's
    /// statistics: here they say "empty" (what autovacuum records of an
    /// outbox the relay keeps up with) while 2,000 rows wait. Both the plan
    /// made for one call and the one cached for every call are checked.
    #[tokio::test]
    async fn a_batch_is_found_by_the_primary_key_when_the_statistics_say_empty() -> anyhow::Result<()> {
        let (_pg, pool) = crate::test_database("vigil_relay_plan").await?;
        // One at a time: VACUUM cannot run in the implicit transaction of
        // several statements sent together.
        for statement in [
            "ALTER TABLE vigil_outbox SET (autovacuum_enabled = off)",
            "VACUUM ANALYZE vigil_outbox",
            "INSERT INTO vigil_outbox (id, subject, envelope)
                 SELECT gen_random_uuid(), 'vigil.test', '\\x00' FROM generate_series(1, 2000)",
        ] {
            sqlx::raw_sql(statement).execute(&pool).await?;
        }
        let mut tx = pool.begin_with(RELAY_TRANSACTION).await?;
        for (mode, plan) in vigil_testkit::prepared_plans(&mut tx, RELAY_BATCH, "256").await? {
            assert!(
                !plan.contains("Seq Scan"),
                "{mode}: the relay's batch reads the whole table:\n{plan}"
            );
            assert!(
                plan.contains("Index Cond: (id = ANY"),
                "{mode}: the batch's rows are not deleted by their key:\n{plan}"
            );
        }
        Ok(())
    }
}
