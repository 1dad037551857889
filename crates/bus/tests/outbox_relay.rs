//! The outbox relay against a real NATS and PostgreSQL: what JetStream has
//! not taken stays in the outbox, and goes out, in order and once, when it
//! can.

use async_nats::jetstream;
use sqlx::PgPool;
use uuid::Uuid;
use vigil_bus::{Outbox, OutboxRelay, subjects};
use vigil_proto::events::DeliveryStatus;
use vigil_testkit::{NatsServer, PgServer, init_test_logging};

const EVENTS: usize = 30;

async fn outbox_rows(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM vigil_outbox")
        .fetch_one(pool)
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stay_in_the_outbox_until_jetstream_takes_them() -> anyhow::Result<()> {
    let (_nats, _pg, pool, client) = stack().await?;
    let js = jetstream::new(client);

    let outbox = Outbox::new();
    let mut tx = pool.begin().await?;
    let mut written = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS {
        let report = DeliveryStatus {
            challenge_id: format!("chl_{i}"),
            ..Default::default()
        };
        written.push(outbox.enqueue(&mut tx, "prv_test", &report).await?);
    }
    tx.commit().await?;
    let relay = OutboxRelay::new(pool.clone(), js.clone(), outbox);

    // No stream takes the subject yet: publishing fails and nothing is lost.
    assert!(relay.drain().await.is_err(), "a publish nobody took counted as relayed");
    assert_eq!(outbox_rows(&pool).await?, EVENTS as i64);

    let stream = delivery_stream(&js).await?;
    relay.drain().await?;
    assert_eq!(outbox_rows(&pool).await?, 0, "relayed rows are deleted");
    relay.drain().await?;

    let mut published = Vec::with_capacity(EVENTS);
    for sequence in 1..=stream.get_info().await?.state.last_sequence {
        let message = stream.get_raw_message(sequence).await?;
        let id = message
            .headers
            .get("Nats-Msg-Id")
            .map(|v| Uuid::parse_str(v.as_str()))
            .transpose()?;
        published.push(id);
    }
    let expected: Vec<Option<Uuid>> = written.into_iter().map(Some).collect();
    assert_eq!(published, expected, "each event published once, in the order written");
    Ok(())
}

/// Writes `count` events in one transaction; returns their ids in order.
async fn enqueue_many(pool: &PgPool, outbox: &Outbox, count: usize) -> anyhow::Result<Vec<Uuid>> {
    let mut batch = outbox.batch("prv_test");
    let mut written = Vec::with_capacity(count);
    for i in 0..count {
        let report = DeliveryStatus {
            challenge_id: format!("chl_{i}"),
            ..Default::default()
        };
        written.push(batch.push(&report)?);
    }
    let mut tx = pool.begin().await?;
    batch.write(&mut tx).await?;
    tx.commit().await?;
    Ok(written)
}

async fn stack() -> anyhow::Result<(NatsServer, PgServer, PgPool, async_nats::Client)> {
    init_test_logging();
    let nats = NatsServer::start().await?;
    let pg = PgServer::start().await?;
    let pool = PgPool::connect(&pg.create_database("vigil_relay").await?).await?;
    vigil_bus::schema::install(&pool).await?;
    let client = async_nats::connect(nats.url()).await?;
    Ok((nats, pg, pool, client))
}

async fn delivery_stream(js: &jetstream::Context) -> anyhow::Result<jetstream::stream::Stream> {
    Ok(js
        .create_stream(jetstream::stream::Config {
            name: "TEST_RELAY".to_owned(),
            subjects: vec![subjects::DELIVERY_STATUS.to_owned()],
            ..Default::default()
        })
        .await?)
}

/// A JetStream context lends each publish not yet acknowledged one of 5,000
/// permits. A relay that published a whole batch before awaiting any ack
/// waited forever for permit 5,001, holding its transaction and the outbox
/// behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_larger_than_the_publish_permits_is_relayed() -> anyhow::Result<()> {
    const BACKLOG: usize = 6_000;
    let (_nats, _pg, pool, client) = stack().await?;
    let js = jetstream::new(client);
    let stream = delivery_stream(&js).await?;
    let outbox = Outbox::new();
    let written = enqueue_many(&pool, &outbox, BACKLOG).await?;

    let relay = OutboxRelay::new(pool.clone(), js, outbox).with_batch_size(10_000);
    tokio::time::timeout(std::time::Duration::from_secs(120), relay.drain())
        .await
        .map_err(|_| anyhow::anyhow!("the relay hung on a batch of {BACKLOG}"))??;
    assert_eq!(outbox_rows(&pool).await?, 0, "relayed rows are deleted");
    let info = stream.clone().get_info().await?;
    assert_eq!(info.state.messages, BACKLOG as u64, "each event published once");
    let first = stream.get_raw_message(1).await?;
    let last = stream.get_raw_message(BACKLOG as u64).await?;
    let id =
        |m: &async_nats::jetstream::message::StreamMessage| m.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned());
    assert_eq!(id(&first), Some(written[0].to_string()), "in the order written");
    assert_eq!(
        id(&last),
        Some(written[BACKLOG - 1].to_string()),
        "in the order written"
    );
    Ok(())
}

/// A publish that never settles (here: a context lending one permit, so the
/// second publish waits for an ack the relay has not awaited yet) fails the
/// batch within the relay's publish timeout; its rows stay and go out on a
/// later try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_publish_fails_the_batch_and_keeps_its_rows() -> anyhow::Result<()> {
    let (_nats, _pg, pool, client) = stack().await?;
    let js = jetstream::new(client.clone());
    let stream = delivery_stream(&js).await?;
    let outbox = Outbox::new();
    enqueue_many(&pool, &outbox, EVENTS).await?;

    let starved = jetstream::ContextBuilder::new().max_ack_inflight(1).build(client);
    let relay =
        OutboxRelay::new(pool.clone(), starved, outbox.clone()).with_publish_timeout(std::time::Duration::from_secs(2));
    let failed = tokio::time::timeout(std::time::Duration::from_secs(30), relay.drain())
        .await
        .map_err(|_| anyhow::anyhow!("the relay hung instead of failing the batch"))?;
    assert!(failed.is_err(), "a batch JetStream did not take counted as relayed");
    assert_eq!(outbox_rows(&pool).await?, EVENTS as i64, "the batch's rows stay");

    OutboxRelay::new(pool.clone(), js, outbox).drain().await?;
    assert_eq!(outbox_rows(&pool).await?, 0);
    let messages = stream.clone().get_info().await?.state.messages;
    assert!(
        messages >= EVENTS as u64,
        "every event went out on the next try ({messages} messages)"
    );
    Ok(())
}

/// Events nobody waits on are relayed after a short linger, and an urgent
/// notify during that linger relays at once; neither waits for the poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhurried_and_urgent_events_are_relayed_without_the_poll() -> anyhow::Result<()> {
    let (_nats, _pg, pool, client) = stack().await?;
    let js = jetstream::new(client);
    let stream = delivery_stream(&js).await?;
    let outbox = Outbox::new();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let relay =
        OutboxRelay::new(pool.clone(), js, outbox.clone()).with_poll_interval(std::time::Duration::from_secs(3600));
    let running = tokio::spawn(relay.run(shutdown.clone()));

    let published = |want: u64| {
        let stream = stream.clone();
        async move {
            vigil_testkit::wait_until(std::time::Duration::from_secs(20), "the events relayed", || {
                let mut stream = stream.clone();
                async move {
                    let messages = stream.info().await?.state.messages;
                    anyhow::Ok((messages >= want).then_some(()))
                }
            })
            .await
        }
    };
    // The relay's first pass (at start) has gone by once one event it found went out.
    enqueue_many(&pool, &outbox, 1).await?;
    outbox.notify();
    published(1).await?;

    enqueue_many(&pool, &outbox, 3).await?;
    outbox.notify_unhurried();
    published(4).await?;

    enqueue_many(&pool, &outbox, 2).await?;
    outbox.notify_unhurried();
    enqueue_many(&pool, &outbox, 2).await?;
    outbox.notify();
    published(8).await?;
    assert_eq!(outbox_rows(&pool).await?, 0);

    shutdown.cancel();
    running.await?;
    Ok(())
}
