//! Idempotent durable consumers. Each event is handled in one database
//! transaction that also records its envelope id; the message is acknowledged
//! only after that commit. A redelivery (after a crash, a lost ack, a relay
//! retry) finds the id already recorded and is acknowledged without effect.

use std::{future::Future, sync::Arc, time::Duration};

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures::StreamExt;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
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
    /// Events handled side by side; ordering is not relied upon.
    pub concurrency: usize,
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
        }
    }
}

/// One event as a handler sees it.
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
    fn handle(
        &self,
        tx: &mut PgConnection,
        event: Received<'_>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
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
    let mut backoff = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        match consume(&js, &pool, &spec, handler.clone(), &shutdown).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(consumer = %spec.durable, error = %error, "consumer interrupted; resuming");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
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
    let messages = consumer
        .messages()
        .await
        .map_err(|e| BusError::JetStream(e.to_string()))?;
    let stopped = messages
        .take_until(shutdown.cancelled())
        .map(|m| m.map_err(|e| BusError::JetStream(e.to_string())))
        .take_while(|m| std::future::ready(m.is_ok()))
        .filter_map(|m| std::future::ready(m.ok()))
        .for_each_concurrent(spec.concurrency, |message| {
            let handler = handler.clone();
            async move { process(pool, spec, handler.as_ref(), message).await }
        });
    tokio::select! {
        () = stopped => {}
        () = sample_lag(&consumer, &spec.durable) => {}
    }
    if shutdown.is_cancelled() {
        Ok(())
    } else {
        Err(BusError::JetStream("message stream ended".into()))
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

async fn process<H: Handler>(pool: &PgPool, spec: &ConsumerSpec, handler: &H, message: jetstream::Message) {
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
    async {
        let outcome = match envelope::decode_envelope(&message.payload) {
            Ok(envelope) => {
                tracing::Span::current().record("messaging.message.id", envelope.id.as_str());
                handle_once(pool, spec, handler, &message, &envelope, delivered).await
            }
            Err(error) => Err(HandlerError::Reject(error.to_string())),
        };
        settle(pool, spec, &message, outcome, delivered).await;
    }
    .instrument(span)
    .await;
}

/// Runs the handler unless this envelope id was processed before.
async fn handle_once<H: Handler>(
    pool: &PgPool,
    spec: &ConsumerSpec,
    handler: &H,
    message: &jetstream::Message,
    envelope: &Envelope,
    delivered: i64,
) -> Result<(), HandlerError> {
    let id = envelope::envelope_id(envelope)?;
    let mut tx = pool.begin().await?;
    let first_time =
        sqlx::query("INSERT INTO vigil_processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(&spec.durable)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
    if !first_time {
        tracing::debug!("duplicate delivery; already processed");
        metrics::counter!("vigil_consumer_duplicates_total", "consumer" => spec.durable.clone()).increment(1);
        return Ok(());
    }
    handler
        .handle(
            &mut tx,
            Received {
                subject: message.subject.as_str(),
                envelope,
                delivered,
            },
        )
        .await?;
    tx.commit().await?;
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
            message.double_ack().await
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
