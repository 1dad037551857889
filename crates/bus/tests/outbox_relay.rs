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
    init_test_logging();
    let nats = NatsServer::start().await?;
    let pg = PgServer::start().await?;
    let pool = PgPool::connect(&pg.create_database("vigil_relay").await?).await?;
    vigil_bus::schema::install(&pool).await?;
    let js = jetstream::new(async_nats::connect(nats.url()).await?);

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

    let stream = js
        .create_stream(jetstream::stream::Config {
            name: "TEST_RELAY".to_owned(),
            subjects: vec![subjects::DELIVERY_STATUS.to_owned()],
            ..Default::default()
        })
        .await?;
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
