//! Batched consumers against a real NATS and PostgreSQL: a burst is applied
//! in few transactions, each event exactly once; a failing event fails
//! alone; an event already recorded is acknowledged without effect.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, bail};
use async_nats::{HeaderMap, jetstream};
use prost::Message;
use sqlx::{PgConnection, PgPool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vigil_bus::{ConsumerSpec, Handler, HandlerError, Received, consumer};
use vigil_proto::events::Envelope;
use vigil_testkit::{NatsServer, PgServer, init_test_logging, wait_until};

const STREAM: &str = "TEST_BATCHES";
const SUBJECT: &str = "test.batches.event";
const PATIENCE: Duration = Duration::from_secs(60);

/// What the test handler does with an event, by its envelope type.
const OK: &str = "test.ok";
const REJECT: &str = "test.reject";
/// Fails with `Retry` on the first delivery, applies on the next.
const RETRY_ONCE: &str = "test.retry_once";

/// Records each event it applies with the id of the transaction that
/// applied it, writing before it fails so a rolled-back write would show.
struct Recorder {
    delay: Duration,
}

impl Handler for Recorder {
    async fn handle(&self, tx: &mut PgConnection, event: Received<'_>) -> Result<(), HandlerError> {
        let id = Uuid::parse_str(&event.envelope.id).map_err(|e| HandlerError::Reject(e.to_string()))?;
        sqlx::query("INSERT INTO applied (event_id, txid, delivered) VALUES ($1, txid_current(), $2)")
            .bind(id)
            .bind(event.delivered)
            .execute(&mut *tx)
            .await?;
        match event.envelope.r#type.as_str() {
            REJECT => return Err(HandlerError::Reject("the test rejects this one".into())),
            RETRY_ONCE if event.delivered == 1 => return Err(HandlerError::Retry("not yet".into())),
            _ => {}
        }
        tokio::time::sleep(self.delay).await;
        Ok(())
    }
}

/// [`Recorder`] as a handler of whole batches (as billing's ledger is): it
/// notes each call's size, then applies the events; a batch holding a
/// rejected event fails whole.
struct Batching(Recorder);

impl Handler for Batching {
    const HANDLES_BATCHES: bool = true;

    async fn handle(&self, tx: &mut PgConnection, event: Received<'_>) -> Result<(), HandlerError> {
        self.0.handle(tx, event).await
    }

    async fn handle_batch(&self, tx: &mut PgConnection, events: &[Received<'_>]) -> Result<(), HandlerError> {
        sqlx::query("INSERT INTO batch_calls (events) VALUES ($1)")
            .bind(events.len() as i64)
            .execute(&mut *tx)
            .await?;
        for event in events {
            self.0.handle(&mut *tx, *event).await?;
        }
        Ok(())
    }
}

/// [`Recorder`] for a handler that commits its own work: it writes each
/// event's row twice, so a test can tell whether both writes shared a
/// transaction, and notes the most events it handled at once.
struct CommitsItself {
    recorder: Recorder,
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
}

impl Handler for CommitsItself {
    const COMMITS_ITSELF: bool = true;

    async fn handle(&self, connection: &mut PgConnection, event: Received<'_>) -> Result<(), HandlerError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        let recorded = self.recorder.handle(&mut *connection, event).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        recorded?;
        let id = Uuid::parse_str(&event.envelope.id).map_err(|e| HandlerError::Reject(e.to_string()))?;
        sqlx::query("INSERT INTO applied_again (event_id, txid) VALUES ($1, txid_current())")
            .bind(id)
            .execute(&mut *connection)
            .await?;
        Ok(())
    }
}

struct Stack {
    _nats: NatsServer,
    _pg: PgServer,
    js: jetstream::Context,
    pool: PgPool,
}

impl Stack {
    async fn start() -> anyhow::Result<Stack> {
        init_test_logging();
        let nats = NatsServer::start().await?;
        let pg = PgServer::start().await?;
        let pool = PgPool::connect(&pg.create_database("vigil_bus").await?).await?;
        vigil_bus::schema::install(&pool).await?;
        sqlx::query("CREATE TABLE applied (event_id UUID NOT NULL, txid BIGINT NOT NULL, delivered BIGINT NOT NULL)")
            .execute(&pool)
            .await?;
        sqlx::query("CREATE TABLE batch_calls (events BIGINT NOT NULL)")
            .execute(&pool)
            .await?;
        sqlx::query("CREATE TABLE applied_again (event_id UUID NOT NULL, txid BIGINT NOT NULL)")
            .execute(&pool)
            .await?;
        let js = jetstream::new(async_nats::connect(nats.url()).await?);
        js.create_stream(jetstream::stream::Config {
            name: STREAM.to_owned(),
            subjects: vec!["test.batches.>".to_owned()],
            ..Default::default()
        })
        .await?;
        Ok(Stack {
            _nats: nats,
            _pg: pg,
            js,
            pool,
        })
    }

    /// Publishes `envelope` under `msg_id` (JetStream drops a second
    /// publish with the same one); returns its stream sequence.
    async fn publish(&self, envelope: &Envelope, msg_id: &str) -> anyhow::Result<u64> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id);
        let ack = self
            .js
            .publish_with_headers(SUBJECT, headers, envelope.encode_to_vec().into())
            .await?
            .await?;
        if ack.duplicate {
            bail!("JetStream dropped {} as a duplicate", envelope.id);
        }
        Ok(ack.sequence)
    }

    /// Publishes a fresh event of each kind in `kinds`; returns them and
    /// the last sequence.
    async fn publish_all(&self, kinds: &[&str]) -> anyhow::Result<(Vec<Envelope>, u64)> {
        let mut events = Vec::with_capacity(kinds.len());
        let mut last = 0;
        for kind in kinds {
            let event = envelope(kind);
            last = self.publish(&event, &event.id).await?;
            events.push(event);
        }
        Ok((events, last))
    }

    fn consume(&self, spec: ConsumerSpec, handler: impl Handler) -> Running {
        let stop = CancellationToken::new();
        let task = tokio::spawn(consumer::run(
            self.js.clone(),
            self.pool.clone(),
            spec,
            handler,
            stop.clone(),
        ));
        Running { stop, task }
    }

    /// Waits until `durable` has settled everything up to `sequence`.
    async fn wait_settled(&self, durable: &str, sequence: u64) -> anyhow::Result<jetstream::consumer::Info> {
        self.wait_settled_within(PATIENCE, durable, sequence).await
    }

    async fn wait_settled_within(
        &self,
        patience: Duration,
        durable: &str,
        sequence: u64,
    ) -> anyhow::Result<jetstream::consumer::Info> {
        let stream = self.js.get_stream(STREAM).await?;
        wait_until(patience, &format!("{durable} to settle up to {sequence}"), || {
            let stream = stream.clone();
            async move {
                let info = stream.consumer_info(durable).await?;
                let settled =
                    info.ack_floor.stream_sequence >= sequence && info.num_ack_pending == 0 && info.num_pending == 0;
                anyhow::Ok(settled.then_some(info))
            }
        })
        .await
    }

    /// How many times each event was applied, and by how many transactions.
    async fn applied(&self, event: &Envelope) -> anyhow::Result<i64> {
        let id = Uuid::parse_str(&event.id)?;
        Ok(sqlx::query_scalar("SELECT count(*) FROM applied WHERE event_id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn transactions(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(DISTINCT txid) FROM applied")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn count(&self, sql: &str, durable: &str) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(sql).bind(durable).fetch_one(&self.pool).await?)
    }

    async fn processed(&self, durable: &str) -> anyhow::Result<i64> {
        self.count(
            "SELECT count(*) FROM vigil_processed_events WHERE consumer = $1",
            durable,
        )
        .await
    }
}

struct Running {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .context("consumer did not stop")??;
        Ok(())
    }
}

fn envelope(kind: &str) -> Envelope {
    Envelope {
        id: Uuid::now_v7().to_string(),
        r#type: kind.to_owned(),
        provider_id: String::new(),
        time: None,
        payload: Vec::new(),
    }
}

fn spec(durable: &str) -> ConsumerSpec {
    ConsumerSpec::new(durable, STREAM, SUBJECT)
}

fn recorder() -> Recorder {
    Recorder { delay: Duration::ZERO }
}

async fn assert_applied_once(stack: &Stack, events: &[Envelope]) -> anyhow::Result<()> {
    for event in events {
        let times = stack.applied(event).await?;
        if times != 1 {
            bail!("{} ({}) applied {times} times", event.id, event.r#type);
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_applied_exactly_once_in_few_transactions() -> anyhow::Result<()> {
    const EVENTS: usize = 300;
    let stack = Stack::start().await?;
    let (events, last) = stack.publish_all(&[OK; EVENTS]).await?;

    let running = stack.consume(spec("burst"), recorder());
    let info = stack.wait_settled("burst", last).await?;
    running.stop().await?;

    assert_applied_once(&stack, &events).await?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM applied")
        .fetch_one(&stack.pool)
        .await?;
    assert_eq!(rows, EVENTS as i64, "nothing applied beyond the burst");
    assert_eq!(stack.processed("burst").await?, EVENTS as i64);
    assert_eq!(
        info.delivered.consumer_sequence, EVENTS as u64,
        "every event was acknowledged on its first delivery"
    );
    let transactions = stack.transactions().await?;
    tracing::info!(transactions, "burst applied");
    assert!(
        transactions * 2 < EVENTS as i64,
        "{EVENTS} events took {transactions} transactions; batches should carry several each"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_event_fails_alone_and_the_rest_apply_once() -> anyhow::Result<()> {
    const EVENTS: usize = 100;
    const REJECTED: usize = 37;
    const RETRIED: usize = 61;
    let stack = Stack::start().await?;
    let mut kinds = [OK; EVENTS];
    kinds[REJECTED] = REJECT;
    kinds[RETRIED] = RETRY_ONCE;
    let (events, last) = stack.publish_all(&kinds).await?;

    let running = stack.consume(spec("failures"), recorder());
    let info = stack.wait_settled("failures", last).await?;
    running.stop().await?;
    assert_eq!(
        info.delivered.consumer_sequence,
        EVENTS as u64 + 1,
        "one redelivery: the retried event's"
    );

    let (rejected, rest): (Vec<Envelope>, Vec<Envelope>) = events.into_iter().partition(|e| e.r#type == REJECT);
    assert_applied_once(&stack, &rest).await?;
    assert_eq!(
        stack.applied(&rejected[0]).await?,
        0,
        "the rejected event's write was rolled back"
    );
    let letters: Vec<Vec<u8>> = sqlx::query_scalar("SELECT message FROM vigil_dead_letters WHERE consumer = $1")
        .bind("failures")
        .fetch_all(&stack.pool)
        .await?;
    assert_eq!(letters.len(), 1, "only the rejected event is dead-lettered");
    assert_eq!(Envelope::decode(letters[0].as_slice())?.id, rejected[0].id);
    // The rejected event's id is not recorded: a replay from the dead letters would apply it.
    assert_eq!(stack.processed("failures").await?, EVENTS as i64 - 1);

    // Only the retried event came back; the others were acknowledged at once.
    let redelivered: Vec<(Uuid, i64)> = sqlx::query_as("SELECT event_id, delivered FROM applied WHERE delivered > 1")
        .fetch_all(&stack.pool)
        .await?;
    let retried = Uuid::parse_str(
        &rest
            .iter()
            .find(|e| e.r#type == RETRY_ONCE)
            .context("retried event")?
            .id,
    )?;
    assert_eq!(redelivered, vec![(retried, 2)]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeliveries_of_applied_events_are_no_ops() -> anyhow::Result<()> {
    const EVENTS: usize = 50;
    const RECORDED: usize = 10;
    let stack = Stack::start().await?;
    let (events, _) = stack.publish_all(&[OK; EVENTS]).await?;
    // As if an earlier run had committed these and died before acknowledging.
    let recorded: Vec<Uuid> = events[..RECORDED]
        .iter()
        .map(|e| Uuid::parse_str(&e.id))
        .collect::<Result<_, _>>()?;
    sqlx::query("INSERT INTO vigil_processed_events (consumer, event_id) SELECT $1, UNNEST($2::uuid[])")
        .bind("replays")
        .bind(&recorded)
        .execute(&stack.pool)
        .await?;
    // The relay republishing after JetStream's duplicate window: a second
    // message with the same envelope, in the same burst.
    let last = stack.publish(&events[20], "republished-20").await?;

    let running = stack.consume(spec("replays"), recorder());
    stack.wait_settled("replays", last).await?;
    for event in &events[..RECORDED] {
        assert_eq!(stack.applied(event).await?, 0, "{} was recorded before", event.id);
    }
    assert_applied_once(&stack, &events[RECORDED..]).await?;

    // And one on its own, once everything is applied.
    let last = stack.publish(&events[30], "republished-30").await?;
    stack.wait_settled("replays", last).await?;
    running.stop().await?;
    assert_applied_once(&stack, &events[RECORDED..]).await?;
    assert_eq!(stack.processed("replays").await?, EVENTS as i64);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_does_not_hold_a_batch_open() -> anyhow::Result<()> {
    const EVENTS: usize = 12;
    let stack = Stack::start().await?;
    let (events, last) = stack.publish_all(&[OK; EVENTS]).await?;

    // One slot, so the events pile up into batches; each takes longer than
    // a batch may stay open.
    let mut spec = spec("slow");
    spec.concurrency = 1;
    spec.batch_time = Duration::from_millis(5);
    let running = stack.consume(
        spec,
        Recorder {
            delay: Duration::from_millis(20),
        },
    );
    stack.wait_settled("slow", last).await?;
    running.stop().await?;

    assert_applied_once(&stack, &events).await?;
    assert_eq!(stack.processed("slow").await?, EVENTS as i64);
    assert_eq!(
        stack.transactions().await?,
        EVENTS as i64,
        "a batch past its time takes on no further event"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_consumer_hands_back_what_it_had_not_handled() -> anyhow::Result<()> {
    const EVENTS: usize = 40;
    let stack = Stack::start().await?;
    let (events, last) = stack.publish_all(&[OK; EVENTS]).await?;

    // One slow slot: JetStream has sent this consumer far more events than
    // it has handled when it is told to stop.
    let mut slow = spec("handback");
    slow.concurrency = 1;
    slow.batch_size = 1;
    let running = stack.consume(
        slow,
        Recorder {
            delay: Duration::from_millis(300),
        },
    );
    wait_until(PATIENCE, "the first event to be applied", || async {
        let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM applied")
            .fetch_one(&stack.pool)
            .await?;
        anyhow::Ok((applied > 0).then_some(()))
    })
    .await?;
    running.stop().await?;

    // A new process takes over at once, not after the 30 s acknowledgement
    // wait: the events the old one held were handed back when it stopped.
    let ack_wait = spec("handback").ack_wait;
    let running = stack.consume(spec("handback"), recorder());
    stack
        .wait_settled_within(ack_wait / 3, "handback", last)
        .await
        .context("the unhandled events were left to the acknowledgement wait")?;
    running.stop().await?;
    assert_applied_once(&stack, &events).await?;
    assert_eq!(stack.processed("handback").await?, EVENTS as i64);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_handler_gets_each_new_event_once_in_few_calls() -> anyhow::Result<()> {
    const EVENTS: usize = 200;
    const REJECTED: usize = 77;
    let stack = Stack::start().await?;
    let mut kinds = [OK; EVENTS];
    kinds[REJECTED] = REJECT;
    let (events, _) = stack.publish_all(&kinds).await?;
    // Republished in the same burst (the relay after JetStream's duplicate
    // window): the batch handler must not see the event twice.
    stack.publish(&events[10], "republished-10").await?;
    let last = stack.publish(&events[150], "republished-150").await?;

    let running = stack.consume(spec("batches"), Batching(recorder()));
    stack.wait_settled("batches", last).await?;
    running.stop().await?;

    let (rejected, rest): (Vec<Envelope>, Vec<Envelope>) = events.into_iter().partition(|e| e.r#type == REJECT);
    assert_applied_once(&stack, &rest).await?;
    assert_eq!(
        stack.applied(&rejected[0]).await?,
        0,
        "the rejected event's batch was rolled back"
    );
    assert_eq!(stack.processed("batches").await?, EVENTS as i64 - 1);
    let (calls, largest): (i64, Option<i64>) = sqlx::query_as("SELECT count(*), max(events) FROM batch_calls")
        .fetch_one(&stack.pool)
        .await?;
    tracing::info!(calls, ?largest, "batch calls");
    assert!(
        largest.unwrap_or(0) > 1 && calls * 2 < EVENTS as i64,
        "{EVENTS} events took {calls} batch calls (largest {largest:?}); they should carry several each"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_commits_itself_gets_a_bare_connection_and_every_repeat() -> anyhow::Result<()> {
    const EVENTS: usize = 40;
    let stack = Stack::start().await?;
    let mut kinds = [OK; EVENTS];
    kinds[5] = REJECT;
    kinds[6] = RETRY_ONCE;
    let (events, _) = stack.publish_all(&kinds).await?;
    // The relay republishing after JetStream's duplicate window.
    let last = stack.publish(&events[20], "republished-20").await?;

    // Slow enough that events handled side by side overlap.
    let most_in_flight = Arc::new(AtomicUsize::new(0));
    let handler = CommitsItself {
        recorder: Recorder {
            delay: Duration::from_millis(50),
        },
        in_flight: Arc::default(),
        most_in_flight: most_in_flight.clone(),
    };
    let running = stack.consume(spec("itself"), handler);
    stack.wait_settled("itself", last).await?;
    running.stop().await?;

    // The default spec batches 64; events that are never batched still go
    // to the slots (8) one each, not in line through one. Handed over in
    // chunks, at most 2 ran at once here; one each, all 8.
    let most = most_in_flight.load(Ordering::SeqCst);
    assert!(
        most >= 4,
        "events of a handler that commits itself were not spread over the slots ({most} at once at most)"
    );

    assert_eq!(
        stack.processed("itself").await?,
        0,
        "the consumer records no envelope ids"
    );
    assert_eq!(
        stack.applied(&events[20]).await?,
        2,
        "a repeat is the handler's to bear"
    );
    assert_eq!(stack.applied(&events[6]).await?, 2, "a retried event comes back");
    assert_eq!(
        stack
            .count("SELECT count(*) FROM vigil_dead_letters WHERE consumer = $1", "itself")
            .await?,
        1,
        "the rejected event is dead-lettered"
    );
    let once: Vec<Envelope> = events
        .iter()
        .enumerate()
        .filter(|(i, _)| ![6, 20].contains(i))
        .map(|(_, e)| e.clone())
        .collect();
    assert_applied_once(&stack, &once).await?;
    // Both writes of one handling, in one transaction, would share its id.
    let shared: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM applied a JOIN applied_again b ON a.event_id = b.event_id AND a.txid = b.txid",
    )
    .fetch_one(&stack.pool)
    .await?;
    assert_eq!(
        shared, 0,
        "each statement commits on its own: no transaction around the handler"
    );
    Ok(())
}
