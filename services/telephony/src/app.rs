//! Wires the telephony service together and runs it until shutdown.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use vigil_bus::{ConsumerSpec, Outbox, OutboxRelay, consumer, streams, subjects};
use vigil_runtime::health::{HealthState, health_router};
use vigil_twilio::{MessagesClient, Url};

use crate::{
    Config,
    carrier::{self, RetryPolicy, SmsCarrier},
    config::STATUS_CALLBACK_PATH,
    deliver::DeliveryHandler,
    webhooks::{self, Webhooks},
};

/// Durable name of the delivery-request consumer.
pub const DELIVERY_CONSUMER: &str = "telephony-delivery";

/// Consumer handlers side by side, plus webhooks, plus the relay.
const MAX_DB_CONNECTIONS: u32 = 16;

/// Runs the service on `http_listener` (carrier webhooks and health) until
/// `shutdown` is cancelled, then drains in-flight work.
pub async fn run(config: Config, http_listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    config.validate()?;
    let pool =
        vigil_runtime::connect_postgres(&config.database_url, MAX_DB_CONNECTIONS, Duration::from_secs(30)).await?;
    sqlx::migrate!().run(&pool).await.context("running migrations")?;
    vigil_bus::schema::install(&pool).await?;
    let nats = vigil_runtime::connect_nats(&config.nats_url, "vigil-telephony").await?;
    let js = async_nats::jetstream::new(nats.clone());
    streams::ensure_streams(&js, config.stream_replicas).await?;

    let outbox = Outbox::new();
    let twilio = MessagesClient::new(
        Url::parse(&config.twilio.base_url).context("VIGIL_TWILIO__BASE_URL")?,
        config.twilio.account_sid.clone(),
        config.twilio.auth_token.clone(),
        SmsCarrier::http_client().context("building the carrier HTTP client")?,
    );
    let carrier = SmsCarrier::new(
        twilio,
        config.twilio.from_number.clone(),
        config.public_url(STATUS_CALLBACK_PATH),
        RetryPolicy::new(config.send_attempts),
    );

    // Handlers finish before the relay stops, so their events still go out.
    let work_stop = shutdown.child_token();
    let relay_stop = CancellationToken::new();
    let relay = tokio::spawn(OutboxRelay::new(pool.clone(), js.clone(), outbox.clone()).run(relay_stop.clone()));
    let consumer = tokio::spawn(consumer::run(
        js,
        pool.clone(),
        delivery_consumer_spec(carrier.retry_policy())?,
        DeliveryHandler {
            carrier,
            outbox: outbox.clone(),
        },
        work_stop.clone(),
    ));

    let router =
        webhooks::router(Arc::new(Webhooks::new(&config, pool.clone(), outbox))).merge(health_router(HealthState {
            pool,
            nats: nats.clone(),
        }));
    tracing::info!(
        addr = %http_listener.local_addr()?,
        public_base_url = %config.public_base_url,
        "telephony service ready"
    );
    let served = vigil_runtime::serve_health(http_listener, router, work_stop.clone()).await;
    // If the server failed on its own, take everything else down with it.
    work_stop.cancel();
    consumer.await.context("delivery consumer panicked")?;
    relay_stop.cancel();
    relay.await.context("outbox relay panicked")?;
    nats.flush().await.ok();
    served.context("HTTP server failed")
}

fn delivery_consumer_spec(retry: RetryPolicy) -> anyhow::Result<ConsumerSpec> {
    let stream = streams::stream_for(subjects::DELIVERY_REQUESTED)
        .with_context(|| format!("no stream captures {}", subjects::DELIVERY_REQUESTED))?;
    let mut spec = ConsumerSpec::new(DELIVERY_CONSUMER, stream, subjects::DELIVERY_REQUESTED);
    // JetStream must not hand the request to another replica while this one
    // is still retrying the carrier.
    spec.ack_wait = retry.worst_case(carrier::REQUEST_TIMEOUT) + Duration::from_secs(10);
    Ok(spec)
}
