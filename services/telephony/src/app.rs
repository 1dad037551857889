//! Wires the telephony service together and runs it until shutdown.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use vigil_bus::{ConsumerSpec, Outbox, OutboxRelay, consumer, streams, subjects};
use vigil_core::{Clock, SystemClock};
use vigil_runtime::health::{HealthState, health_router};
use vigil_twilio::Url;

use crate::{
    Config,
    carrier::{self, Carrier, RetryPolicy},
    deliver::DeliveryHandler,
    push::FcmClient,
    send::Sender,
    webhooks::{self, Webhooks},
};

/// Durable name of the delivery-request consumer.
pub const DELIVERY_CONSUMER: &str = "telephony-delivery";

/// Runs the service on `http_listener` (carrier webhooks, push answers and
/// health) until `shutdown` is cancelled, then drains in-flight work.
pub async fn run(config: Config, http_listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    run_with_clock(config, http_listener, shutdown, Arc::new(SystemClock)).await
}

/// [`run`] with the clock expiry and answer freshness are judged by.
pub async fn run_with_clock(
    config: Config,
    http_listener: TcpListener,
    shutdown: CancellationToken,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    config.validate()?;
    let pool = vigil_runtime::connect_postgres(
        &config.database_url,
        config.database_max_connections,
        Duration::from_secs(30),
    )
    .await?;
    sqlx::migrate!().run(&pool).await.context("running migrations")?;
    vigil_bus::schema::install(&pool).await?;
    if vigil_runtime::migrate_only() {
        tracing::info!("migrations applied; exiting (VIGIL_MIGRATE_ONLY)");
        return Ok(());
    }
    let nats = vigil_runtime::connect_nats(&config.nats_url, "vigil-telephony").await?;
    let js = async_nats::jetstream::new(nats.clone());
    streams::ensure_streams(&js, config.stream_replicas).await?;

    let outbox = Outbox::new();
    let http = carrier::http_client().context("building the carrier HTTP client")?;
    let carriers = config
        .carrier_list()
        .iter()
        .map(|c| Carrier::new(c, http.clone()).with_context(|| format!("base URL of carrier {}", c.name)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let push = FcmClient::new(
        Url::parse(&config.push.base_url).context("VIGIL_PUSH__BASE_URL")?,
        config.push.project_id.clone(),
        config.push.access_token.clone(),
        http,
    );
    let sender = Arc::new(Sender {
        pool: pool.clone(),
        outbox: outbox.clone(),
        carriers,
        push,
        retry: RetryPolicy::new(config.send_attempts),
        clock: clock.clone(),
        public_base: config.public_base_url.trim_end_matches('/').to_owned(),
        call_ring_seconds: config.call_ring_seconds,
    });

    // Handlers finish before the relay stops, so their events still go out.
    let work_stop = shutdown.child_token();
    let relay_stop = CancellationToken::new();
    let relay = tokio::spawn(OutboxRelay::new(pool.clone(), js.clone(), outbox.clone()).run(relay_stop.clone()));
    let providers = tokio::spawn(consumer::run(
        js.clone(),
        pool.clone(),
        ConsumerSpec::new(
            crate::templates::CONSUMER,
            streams::stream_for(subjects::PROVIDER_CREATED).context("no stream captures provider events")?,
            "vigil.provider.>",
        ),
        crate::templates::ProviderEvents,
        work_stop.clone(),
    ));
    let retention = tokio::spawn(vigil_runtime::retention::run(
        pool.clone(),
        crate::retention::rules(&config),
        work_stop.clone(),
    ));
    let consumer = tokio::spawn(consumer::run(
        js,
        pool.clone(),
        delivery_consumer_spec(&sender, config.delivery_concurrency)?,
        DeliveryHandler {
            sender,
            default_expiry: chrono::Duration::seconds(i64::from(config.default_expiry_seconds)),
        },
        work_stop.clone(),
    ));

    let router = webhooks::router(Arc::new(Webhooks::new(
        &config,
        pool.clone(),
        outbox,
        clock,
        nats.clone(),
    )))
    .merge(health_router(HealthState {
        pool,
        nats: nats.clone(),
    }));
    tracing::info!(
        addr = %http_listener.local_addr()?,
        public_base_url = %config.public_base_url,
        carriers = ?config.carrier_list().iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
        "telephony service ready"
    );
    let served = vigil_runtime::serve_health(http_listener, router, work_stop.clone()).await;
    // If the server failed on its own, take everything else down with it.
    work_stop.cancel();
    consumer.await.context("delivery consumer panicked")?;
    providers.await.context("provider events consumer panicked")?;
    retention.await.context("retention panicked")?;
    relay_stop.cancel();
    relay.await.context("outbox relay panicked")?;
    nats.flush().await.ok();
    served.context("HTTP server failed")
}

fn delivery_consumer_spec(sender: &Sender, concurrency: usize) -> anyhow::Result<ConsumerSpec> {
    let stream = streams::stream_for(subjects::DELIVERY_REQUESTED)
        .with_context(|| format!("no stream captures {}", subjects::DELIVERY_REQUESTED))?;
    let mut spec = ConsumerSpec::new(DELIVERY_CONSUMER, stream, subjects::DELIVERY_REQUESTED);
    // JetStream must not hand the request to another replica while this one
    // is still retrying or failing over.
    spec.ack_wait = sender.worst_case() + Duration::from_secs(10);
    // Each delivery calls a carrier; its handler commits itself, so the
    // consumer gives each slot one request and sends run side by side.
    spec.concurrency = concurrency;
    Ok(spec)
}
