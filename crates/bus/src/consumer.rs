//! Idempotent durable consumers. Each event is handled in a database
//! transaction that also records its envelope id; the message is acknowledged
//! only after that commit. A redelivery (after a crash, a lost ack, a relay
//! retry) finds the id already recorded and is acknowledged without effect.
//! The record of processed ids is pruned once their events can no longer
//! come back ([`crate::processed`]).
//! A handler that commits its own work and bears repeats by itself
//! ([`Handler::COMMITS_ITSELF`]) is run on a bare connection instead.
//!
//! Under load, the events already delivered are applied in batches: one
//! transaction, one commit, for up to [`ConsumerSpec::batch_size`] events.
//! A batch never waits to fill, so a lone event goes through at once. If
//! anything in a batch fails, the batch is rolled back and its events are
//! handled one transaction each, so a failure stays the failing event's own.

use std::{
    collections::HashSet,
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures::StreamExt;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;
use vigil_proto::events::Envelope;

use crate::{BusError, envelope, trace};

/// Where a consumer reads from and how patiently.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Durable name; also the key under which processed ids are remembered.
    pub durable: String,
    pub stream: &'static str,
    pub filter_subject: String,
    /// After this many failed deliveries the event is dead-lettered.
    pub max_deliver: i64,
    pub ack_wait: Duration,
    /// Events (or batches) handled side by side; ordering is not relied upon.
    pub concurrency: usize,
    /// Most events applied in one transaction: those already delivered when
    /// a batch starts, never waited for. 1 turns batching off.
    pub batch_size: usize,
    /// A batch takes on no further event once its transaction is this old,
    /// so a slow handler (one that calls out) holds neither locks nor the
    /// other events' acknowledgements for long: the rest go in a new one.
    pub batch_time: Duration,
}

impl ConsumerSpec {
    pub fn new(durable: &str, stream: &'static str, filter_subject: &str) -> Self {
        Self {
            durable: durable.to_owned(),
            stream,
            filter_subject: filter_subject.to_owned(),
            max_deliver: 20,
            ack_wait: Duration::from_secs(30),
            concurrency: 8,
            batch_size: 64,
            batch_time: Duration::from_millis(50),
        }
    }
}

/// One event as a handler sees it.
#[derive(Clone, Copy)]
pub struct Received<'a> {
    pub subject: &'a str,
    pub envelope: &'a Envelope,
    /// 1 on first delivery.
    pub delivered: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// A passing failure (database busy, ...): delivered again later.
    #[error("retry: {0}")]
    Retry(String),
    /// The event can never be handled: dead-lettered, not retried.
    #[error("rejected: {0}")]
    Reject(String),
}

impl From<sqlx::Error> for HandlerError {
    fn from(e: sqlx::Error) -> Self {
        Self::Retry(e.to_string())
    }
}

impl From<BusError> for HandlerError {
    fn from(e: BusError) -> Self {
        match e {
            BusError::Malformed(_) | BusError::WrongType { .. } => Self::Reject(e.to_string()),
            other => Self::Retry(other.to_string()),
        }
    }
}

pub trait Handler: Send + Sync + 'static {
    /// Applies the event inside `tx`; the caller commits and acknowledges.
    /// `tx` may carry other events of the same batch, committed after the
    /// last of them; if the batch fails it is rolled back and each event
    /// handled again on its own, so work done outside `tx` must bear a repeat.
    fn handle(
        &self,
        tx: &mut PgConnection,
        event: Received<'_>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Whether [`Handler::handle_batch`] writes a batch's events in fewer
    /// statements than one [`Handler::handle`] each: the consumer then hands
    /// it all the new events of a batch at once.
    const HANDLES_BATCHES: bool = false;

    /// Applies `events`, none handled before, in delivery order, inside `tx`;
    /// called only when [`Self::HANDLES_BATCHES`]. On failure the batch is
    /// rolled back and each event handled again alone by [`Handler::handle`].
    fn handle_batch(
        &self,
        tx: &mut PgConnection,
        events: &[Received<'_>],
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        async move {
            for event in events {
                self.handle(&mut *tx, *event).await?;
            }
            Ok(())
        }
    }

    /// Called after each commit of handled events: the place to wake an
    /// outbox relay for what the handlers wrote (inside `handle` it would
    /// wake before the rows are visible). Not called for a handler that
    /// commits itself: it knows when it wrote something.
    fn committed(&self) {}

    /// `true` for a handler that commits its own work, in as many
    /// transactions as it needs, and makes a repeat of an event harmless by
    /// itself (a sender whose tries must commit before and after each call
    /// out). The consumer then neither opens a transaction nor records the
    /// envelope id, never batches, and runs [`Handler::handle_alone`]:
    /// connections outside any transaction, instead of a second one held
    /// idle in a transaction, and one commit fewer.
    const COMMITS_ITSELF: bool = false;

    /// How a handler that commits itself is run: by default on one
    /// connection from `pool`, held for the whole event. A handler that
    /// waits on something else between its transactions (a carrier's HTTP
    /// API) takes connections from `pool` step by step instead, so a slow
    /// call out holds none and the pool stays small.
    fn handle_alone(
        &self,
        pool: &PgPool,
        event: Received<'_>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        async move {
            let mut connection = pool.acquire().await?;
            self.handle(&mut connection, event).await
        }
    }
}

/// Consumes until `shutdown`, reconnecting after bus failures.
pub async fn run<H: Handler>(
    js: jetstream::Context,
    pool: PgPool,
    spec: ConsumerSpec,
    handler: H,
    shutdown: CancellationToken,
) {
    let handler = Arc::new(handler);
    let pruner = tokio::spawn(crate::processed::keep_pruned(
        pool.clone(),
        spec.durable.clone(),
        spec.stream,
        shutdown.clone(),
    ));
    let mut backoff = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        match consume(&js, &pool, &spec, handler.clone(), &shutdown).await {
            Ok(()) => break,
            Err(error) => {
                tracing::warn!(consumer = %spec.durable, error = %error, "consumer interrupted; resuming");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    // Not cut off mid-statement: it stops between prunes, at `shutdown`.
    if let Err(error) = pruner.await {
        tracing::warn!(consumer = %spec.durable, %error, "processed-event pruner failed");
    }
}

async fn consume<H: Handler>(
    js: &jetstream::Context,
    pool: &PgPool,
    spec: &ConsumerSpec,
    handler: Arc<H>,
    shutdown: &CancellationToken,
) -> Result<(), BusError> {
    let stream = js
        .get_stream(spec.stream)
        .await
        .map_err(|e| BusError::JetStream(e.to_string()))?;
    let consumer = stream
        .get_or_create_consumer(
            &spec.durable,
            pull::Config {
                durable_name: Some(spec.durable.clone()),
                filter_subject: spec.filter_subject.clone(),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: spec.ack_wait,
                max_deliver: spec.max_deliver,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| BusError::JetStream(e.to_string()))?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(prefetch(spec, chunk_size::<H>(spec)))
        .heartbeat(PULL_HEARTBEAT)
        .messages()
        .await
        .map_err(|e| BusError::JetStream(e.to_string()))?;
    let stopped = messages
        .by_ref()
        .take_until(shutdown.cancelled())
        .map(|m| m.map_err(|e| BusError::JetStream(e.to_string())))
        .take_while(|m| std::future::ready(m.is_ok()))
        .filter_map(|m| std::future::ready(m.ok()))
        // The next message, plus whatever else is already buffered: while
        // every slot is busy, messages pile up and the next batch is bigger.
        .ready_chunks(chunk_size::<H>(spec))
        .for_each_concurrent(spec.concurrency, |messages| {
            let handler = handler.clone();
            async move { process(pool, spec, handler.as_ref(), messages).await }
        });
    tokio::select! {
        () = stopped => {}
        () = sample_lag(&consumer, &spec.durable) => {}
    }
    if shutdown.is_cancelled() {
        hand_back(js, &mut messages, spec).await;
        Ok(())
    } else {
        Err(BusError::JetStream("message stream ended".into()))
    }
}

/// The pull request's idle heartbeat (async-nats' default for `messages()`).
const PULL_HEARTBEAT: Duration = Duration::from_secs(15);

/// How many messages one pull asks JetStream for: enough to keep every slot
/// fed, no more, since each one sent but not handled when the process stops
/// must be handed back (or wait out `ack_wait`).
fn prefetch(spec: &ConsumerSpec, chunk: usize) -> usize {
    (spec.concurrency * chunk * 2).clamp(8, 200)
}

/// Events one slot takes at a time: a batch, or a single event for a handler
/// that commits itself. Its events are never batched, so a bigger chunk
/// would only run them one after another in one slot.
fn chunk_size<H: Handler>(spec: &ConsumerSpec) -> usize {
    if H::COMMITS_ITSELF { 1 } else { spec.batch_size.max(1) }
}

/// How long a stopping consumer waits for messages still on their way to it.
const HAND_BACK_IDLE: Duration = Duration::from_millis(50);
/// The most a stop is delayed by handing messages back.
const HAND_BACK_WINDOW: Duration = Duration::from_millis(500);
/// Handed-back messages are redelivered after this, not at once, so that
/// none comes straight back to this consumer's open pull request while it
/// is still handing back.
const HAND_BACK_DELAY: Duration = Duration::from_secs(1);

/// On shutdown: messages JetStream has already sent this consumer but no
/// handler has touched are nak'd, so that the next process (or another
/// replica) gets them in a second rather than after `ack_wait`. Without it
/// a restart delays every buffered event (an SMS, a usage count) by 30 s.
async fn hand_back(js: &jetstream::Context, messages: &mut pull::Stream, spec: &ConsumerSpec) {
    let window = tokio::time::Instant::now() + HAND_BACK_WINDOW;
    let mut handed_back = 0u64;
    loop {
        let idle = (tokio::time::Instant::now() + HAND_BACK_IDLE).min(window);
        let Ok(Some(Ok(message))) = tokio::time::timeout_at(idle, messages.next()).await else {
            break;
        };
        if let Err(error) = message.ack_with(AckKind::Nak(Some(HAND_BACK_DELAY))).await {
            tracing::warn!(consumer = %spec.durable, %error, "could not hand a message back; it waits out ack_wait");
        }
        handed_back += 1;
    }
    // Acks and naks are publishes: out of the client before the process
    // exits (an ack lost here would only bring a redelivery, recognised).
    if let Err(error) = js.client().flush().await {
        tracing::warn!(consumer = %spec.durable, %error, "acknowledgements not flushed");
    }
    if handed_back > 0 {
        tracing::info!(consumer = %spec.durable, handed_back, "stopping: unhandled messages handed back");
        metrics::counter!("vigil_consumer_handed_back_total", "consumer" => spec.durable.clone())
            .increment(handed_back);
    }
}

/// How often a consumer's lag is read from JetStream (about one scrape interval).
const LAG_SAMPLE_INTERVAL: Duration = Duration::from_secs(10);

/// Publishes the consumer's lag as gauges until dropped: messages not yet
/// delivered (`num_pending`) and delivered but not yet acknowledged.
async fn sample_lag(consumer: &jetstream::consumer::PullConsumer, durable: &str) {
    let pending = metrics::gauge!("vigil_consumer_pending_messages", "consumer" => durable.to_owned());
    let unacked = metrics::gauge!("vigil_consumer_ack_pending_messages", "consumer" => durable.to_owned());
    let mut tick = tokio::time::interval(LAG_SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match consumer.get_info().await {
            Ok(info) => {
                pending.set(info.num_pending as f64);
                unacked.set(info.num_ack_pending as f64);
            }
            // Lag is a gauge: the last value stands until the next sample.
            Err(error) => tracing::warn!(consumer = durable, %error, "consumer lag not sampled"),
        }
    }
}

/// Counts a settled event by what became of it: `acked` (handled now or
/// before: duplicates are counted apart too), `retried`, `dead_lettered`.
fn count_outcome(spec: &ConsumerSpec, outcome: &'static str) {
    metrics::counter!("vigil_consumer_events_total", "consumer" => spec.durable.clone(), "outcome" => outcome)
        .increment(1);
}

/// A delivered, decoded event and the span its handling runs in.
struct Event {
    message: jetstream::Message,
    envelope: Envelope,
    id: Uuid,
    delivered: i64,
    span: tracing::Span,
}

impl Event {
    fn received(&self) -> Received<'_> {
        Received {
            subject: self.message.subject.as_str(),
            envelope: &self.envelope,
            delivered: self.delivered,
        }
    }
}

/// Handles the messages that arrived together: as one batch if there are
/// several, falling back to one transaction per event if the batch fails.
async fn process<H: Handler>(pool: &PgPool, spec: &ConsumerSpec, handler: &H, messages: Vec<jetstream::Message>) {
    let mut events = Vec::with_capacity(messages.len());
    for message in messages {
        if let Some(event) = receive(pool, spec, message).await {
            events.push(event);
        }
    }
    while events.len() > 1 && !H::COMMITS_ITSELF {
        match apply_batch(pool, spec, handler, &events).await {
            Ok(first_times) => {
                let applied: Vec<Event> = events.drain(..first_times.len()).collect();
                futures::future::join_all(
                    applied
                        .iter()
                        .zip(first_times)
                        .map(|(event, first_time)| settle_applied(pool, spec, event, first_time)),
                )
                .await;
            }
            Err(error) => {
                tracing::info!(consumer = %spec.durable, events = events.len(), error = %error, "batch rolled back; handling its events one by one");
                metrics::counter!("vigil_consumer_batch_fallbacks_total", "consumer" => spec.durable.clone())
                    .increment(1);
                break;
            }
        }
    }
    for event in &events {
        async {
            let outcome = handle_once(pool, spec, handler, event).await;
            settle(pool, spec, &event.message, outcome, event.delivered).await;
        }
        .instrument(event.span.clone())
        .await;
    }
}

/// Opens the message's span (continuing the producer's trace) and decodes
/// it; a message that cannot be decoded is dead-lettered here.
async fn receive(pool: &PgPool, spec: &ConsumerSpec, message: jetstream::Message) -> Option<Event> {
    let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
    if delivered > 1 {
        metrics::counter!("vigil_consumer_redeliveries_total", "consumer" => spec.durable.clone()).increment(1);
    }
    let span = tracing::info_span!(
        "consume",
        messaging.system = "nats",
        messaging.destination.name = %message.subject,
        messaging.consumer.group.name = %spec.durable,
        messaging.message.id = tracing::field::Empty,
    );
    trace::continue_trace(&span, message.headers.as_ref());
    let decoded = envelope::decode_envelope(&message.payload)
        .and_then(|envelope| Ok((envelope::envelope_id(&envelope)?, envelope)));
    match decoded {
        Ok((id, envelope)) => {
            span.record("messaging.message.id", envelope.id.as_str());
            Some(Event {
                message,
                envelope,
                id,
                delivered,
                span,
            })
        }
        Err(error) => {
            settle(pool, spec, &message, Err(error.into()), delivered)
                .instrument(span)
                .await;
            None
        }
    }
}

/// Applies a prefix of `events` in one transaction and commits it: each
/// event's id is recorded and its handler run, in order, unless the id was
/// recorded before. Returns, for each event of the prefix, whether it was
/// applied now (false: a duplicate). Any failure rolls everything back.
async fn apply_batch<H: Handler>(
    pool: &PgPool,
    spec: &ConsumerSpec,
    handler: &H,
    events: &[Event],
) -> Result<Vec<bool>, HandlerError> {
    let started = Instant::now();
    let mut tx = pool.begin().await?;
    match apply_in(&mut tx, spec, handler, events, started).await {
        Ok(first_times) => {
            tx.commit().await?;
            count_commit(spec);
            handler.committed();
            Ok(first_times)
        }
        Err(error) => {
            // At once, not when the pool gets round to it: the per-event
            // retries wait on the ids this transaction holds.
            if let Err(rollback) = tx.rollback().await {
                tracing::debug!(error = %rollback, "batch rollback failed; the connection is discarded");
            }
            Err(error)
        }
    }
}

async fn apply_in<H: Handler>(
    tx: &mut PgConnection,
    spec: &ConsumerSpec,
    handler: &H,
    events: &[Event],
    started: Instant,
) -> Result<Vec<bool>, HandlerError> {
    // Sorted, so concurrent batches take the id locks in the same order.
    let mut ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    ids.sort_unstable();
    ids.dedup();
    // One statement for every id; those it returns are new. An id twice in
    // the batch comes back once, and only its first event is applied.
    let mut new: HashSet<Uuid> = sqlx::query_scalar(
        "INSERT INTO vigil_processed_events (consumer, event_id) SELECT $1, UNNEST($2::uuid[]) \
         ON CONFLICT DO NOTHING RETURNING event_id",
    )
    .bind(&spec.durable)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let mut first_times = Vec::with_capacity(events.len());
    if H::HANDLES_BATCHES {
        // One call for the lot: the handler's statements carry every event.
        let mut fresh = Vec::with_capacity(events.len());
        for event in events {
            let first_time = new.remove(&event.id);
            if first_time {
                fresh.push(event.received());
            }
            first_times.push(first_time);
        }
        handler.handle_batch(tx, &fresh).await?;
        return Ok(first_times);
    }
    for event in events {
        if !first_times.is_empty() && started.elapsed() >= spec.batch_time {
            break;
        }
        let first_time = new.remove(&event.id);
        if first_time {
            handler
                .handle(tx, event.received())
                .instrument(event.span.clone())
                .await?;
        }
        first_times.push(first_time);
    }
    if !new.is_empty() {
        // Events left for the next transaction: their ids must not commit
        // with this one, or they would count as processed unhandled.
        let unhandled: Vec<Uuid> = new.into_iter().collect();
        sqlx::query("DELETE FROM vigil_processed_events WHERE consumer = $1 AND event_id = ANY($2)")
            .bind(&spec.durable)
            .bind(&unhandled)
            .execute(&mut *tx)
            .await?;
    }
    Ok(first_times)
}

/// Acknowledges an event whose batch committed.
async fn settle_applied(pool: &PgPool, spec: &ConsumerSpec, event: &Event, first_time: bool) {
    async {
        if !first_time {
            count_duplicate(spec);
        }
        settle(pool, spec, &event.message, Ok(()), event.delivered).await;
    }
    .instrument(event.span.clone())
    .await;
}

fn count_duplicate(spec: &ConsumerSpec) {
    tracing::debug!("duplicate delivery; already processed");
    metrics::counter!("vigil_consumer_duplicates_total", "consumer" => spec.durable.clone()).increment(1);
}

/// Counts committed transactions: with `vigil_consumer_events_total`, how
/// many events a commit carries.
fn count_commit(spec: &ConsumerSpec) {
    metrics::counter!("vigil_consumer_commits_total", "consumer" => spec.durable.clone()).increment(1);
}

/// Runs the handler in a transaction of its own, unless this envelope id
/// was processed before (or on a bare connection, if it commits itself).
async fn handle_once<H: Handler>(
    pool: &PgPool,
    spec: &ConsumerSpec,
    handler: &H,
    event: &Event,
) -> Result<(), HandlerError> {
    if H::COMMITS_ITSELF {
        return handler.handle_alone(pool, event.received()).await;
    }
    let mut tx = pool.begin().await?;
    let first_time =
        sqlx::query("INSERT INTO vigil_processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(&spec.durable)
            .bind(event.id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
    if !first_time {
        count_duplicate(spec);
        return Ok(());
    }
    handler.handle(&mut tx, event.received()).await?;
    tx.commit().await?;
    count_commit(spec);
    handler.committed();
    Ok(())
}

/// Acknowledges, retries or dead-letters the message.
async fn settle(
    pool: &PgPool,
    spec: &ConsumerSpec,
    message: &jetstream::Message,
    outcome: Result<(), HandlerError>,
    delivered: i64,
) {
    let ack = match outcome {
        Ok(()) => {
            count_outcome(spec, "acked");
            // A plain ack, not a double one: waiting for JetStream to confirm
            // would cost a message and a wake-up per event, and buys nothing
            // here. The work is committed; if the ack is lost, the redelivery
            // is recognised as a duplicate (or, for a handler that commits
            // itself, finds its work done).
            message.ack().await
        }
        Err(HandlerError::Retry(error)) if delivered < spec.max_deliver => {
            count_outcome(spec, "retried");
            tracing::warn!(error = %error, delivered, "event handling failed; will retry");
            let delay = Duration::from_millis(200 * 2u64.saturating_pow(delivered.clamp(0, 6) as u32));
            message.ack_with(AckKind::Nak(Some(delay))).await
        }
        Err(error) => {
            count_outcome(spec, "dead_lettered");
            tracing::error!(error = %error, delivered, "event dead-lettered");
            if let Err(db) = dead_letter(pool, spec, message, &error.to_string()).await {
                // Without the dead letter row, let JetStream keep the message.
                tracing::error!(error = %db, "could not record dead letter; leaving message unacknowledged");
                return;
            }
            message.ack_with(AckKind::Term).await
        }
    };
    if let Err(error) = ack {
        // The commit stands; a redelivery will be recognised as a duplicate.
        tracing::warn!(error = %error, "acknowledgement failed");
    }
}

async fn dead_letter(
    pool: &PgPool,
    spec: &ConsumerSpec,
    message: &jetstream::Message,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO vigil_dead_letters (consumer, subject, message, error) VALUES ($1, $2, $3, $4)")
        .bind(&spec.durable)
        .bind(message.subject.as_str())
        .bind(message.payload.as_ref())
        .bind(error)
        .execute(pool)
        .await?;
    Ok(())
}
