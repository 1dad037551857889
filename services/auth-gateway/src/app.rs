//! Wires the gateway together and runs it until shutdown.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use secrecy::SecretString;
use sqlx::PgPool;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use vigil_bus::{ConsumerSpec, Outbox, OutboxRelay, consumer, streams, subjects};
use vigil_core::{Clock, SystemClock};
use vigil_proto::v1::{
    admin_server::AdminServer, agent_registration_server::AgentRegistrationServer,
    auth_gateway_server::AuthGatewayServer,
};
use vigil_runtime::health::{HealthState, health_router};

use crate::{
    Config,
    admin::AdminApi,
    agent_api::AgentApi,
    fraud_webhook, radius,
    registration::Registration,
    watch::{self, Watchers},
};

/// What every handler shares.
pub struct Gateway {
    pub pool: PgPool,
    pub nats: async_nats::Client,
    pub outbox: Outbox,
    pub clock: Arc<dyn Clock>,
    pub admin_token: SecretString,
    pub rpc_timeout: Duration,
    /// One permit per login in flight (`VIGIL_MAX_IN_FLIGHT`); see `agent_api::admit`.
    pub logins: tokio::sync::Semaphore,
    /// Encrypts agent keys at rest.
    pub keyring: vigil_secrets::Keyring,
    /// Keyed hash of admin tokens.
    pub tokens: vigil_secrets::TokenHasher,
    /// argon2id for activation passwords.
    pub passwords: vigil_secrets::PasswordHasher,
    pub activation_ttl: chrono::Duration,
    /// Wakes the RADIUS client list when the admin API changes a client or agent.
    pub radius_changed: tokio::sync::Notify,
    /// Agents and RADIUS logins waiting for a challenge to move.
    pub watchers: Arc<Watchers>,
    /// Spends signed requests' nonces, many in one statement under load.
    pub nonces: crate::store::NonceSpender,
    /// Agents lately read, for the signature check of their requests.
    pub agents: crate::known_agents::KnownAgents,
    /// The providers' directories (password checks), with open connections.
    pub directories: crate::directory::Directories,
    /// Ends every wait when the gateway stops (as `unavailable`).
    pub shutdown: CancellationToken,
}

pub async fn run(
    config: Config,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: CancellationToken,
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
    let nats = vigil_runtime::connect_nats(&config.nats_url, "vigil-auth-gateway").await?;
    let js = async_nats::jetstream::new(nats.clone());
    streams::ensure_streams(&js, config.stream_replicas).await?;

    let batch_pool = vigil_runtime::connect_batch_pool(&config.database_url, 1).await?;
    let outbox = Outbox::new();
    let gateway = Arc::new(Gateway {
        pool: pool.clone(),
        nats: nats.clone(),
        outbox: outbox.clone(),
        clock: Arc::new(SystemClock),
        admin_token: config.admin_token.clone(),
        rpc_timeout: Duration::from_millis(config.rpc_timeout_ms),
        logins: tokio::sync::Semaphore::new(config.in_flight_bound()),
        keyring: config.keyring()?,
        tokens: config.token_hasher()?,
        passwords: config.password_hasher()?,
        activation_ttl: chrono::Duration::seconds(i64::from(config.activation_ttl_secs)),
        radius_changed: tokio::sync::Notify::new(),
        watchers: Arc::new(Watchers::default()),
        nonces: crate::store::nonce_spender(batch_pool),
        agents: Default::default(),
        directories: Default::default(),
        shutdown: shutdown.clone(),
    });

    let tasks = TaskTracker::new();
    tasks.spawn(OutboxRelay::new(pool.clone(), js.clone(), outbox).run(shutdown.clone()));
    tasks.spawn(vigil_runtime::retention::run(
        pool.clone(),
        crate::retention::rules(&config),
        shutdown.clone(),
    ));
    tasks.spawn(watch::listen(gateway.watchers.clone(), nats.clone(), shutdown.clone()));
    // The gateway owns providers, so it posts their fraud notifications.
    let wake = Arc::new(tokio::sync::Notify::new());
    let fraud_stream = streams::stream_for(subjects::FRAUD_REPORTED).context("no stream captures fraud reports")?;
    tasks.spawn(consumer::run(
        js,
        pool.clone(),
        ConsumerSpec::new(fraud_webhook::CONSUMER, fraud_stream, subjects::FRAUD_REPORTED),
        fraud_webhook::FraudReportedHandler {
            gateway: gateway.clone(),
            wake: wake.clone(),
        },
        shutdown.clone(),
    ));
    tasks.spawn(fraud_webhook::run(
        gateway.clone(),
        config.webhook_settings(),
        wake,
        shutdown.clone(),
    ));
    let health = health_router(HealthState {
        pool,
        nats: nats.clone(),
    });
    tasks.spawn(vigil_runtime::serve_health(http, health, shutdown.clone()));
    if config.radius_addr.is_empty() {
        tracing::info!("RADIUS is off (VIGIL_RADIUS_ADDR is empty)");
    } else {
        let socket = UdpSocket::bind(&config.radius_addr)
            .await
            .with_context(|| format!("binding RADIUS to {}", config.radius_addr))?;
        tracing::info!(addr = %socket.local_addr()?, "RADIUS ready");
        tasks.spawn(radius::serve(gateway.clone(), socket, shutdown.clone()));
    }

    // grpc.health.v1 and server reflection, so grpcurl and load balancers work as expected.
    let (health_reporter, grpc_health) = tonic_health::server::health_reporter();
    tasks.spawn(report_grpc_health(health_reporter, gateway.clone(), shutdown.clone()));
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(vigil_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("gRPC reflection")?;

    tracing::info!(addr = %grpc.local_addr()?, max_in_flight = gateway.logins.available_permits(), "auth gateway ready");
    // TcpIncoming::from leaves Nagle's algorithm on (the server's own
    // tcp_nodelay setting only applies to sockets it binds itself): a
    // reply written in pieces (HEADERS, DATA, trailers) could wait for the
    // agent's delayed ACK, up to 40 ms on Linux.
    let incoming = tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true));
    let stop = shutdown.clone();
    tonic::transport::Server::builder()
        // One span per call, continuing the agent's trace (`traceparent` metadata).
        .trace_fn(vigil_runtime::telemetry::grpc_server_span)
        .add_service(grpc_health)
        .add_service(reflection)
        .add_service(AuthGatewayServer::new(AgentApi(gateway.clone())))
        .add_service(AdminServer::new(AdminApi(gateway.clone())))
        .add_service(AgentRegistrationServer::new(Registration(gateway)))
        .serve_with_incoming_shutdown(incoming, async move { stop.cancelled().await })
        .await
        .context("gRPC server")?;
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    nats.flush().await.ok();
    Ok(())
}

/// `grpc.health.v1`: the agent API serves only while NATS and PostgreSQL are
/// reachable, like `/readyz`.
async fn report_grpc_health(
    reporter: tonic_health::server::HealthReporter,
    gateway: Arc<Gateway>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                reporter.set_not_serving::<AuthGatewayServer<AgentApi>>().await;
                return;
            }
            _ = tick.tick() => {}
        }
        let nats_up = gateway.nats.connection_state() == async_nats::connection::State::Connected;
        let db_up = sqlx::query("SELECT 1").execute(&gateway.pool).await.is_ok();
        if nats_up && db_up {
            reporter.set_serving::<AuthGatewayServer<AgentApi>>().await;
        } else {
            reporter.set_not_serving::<AuthGatewayServer<AgentApi>>().await;
        }
    }
}
