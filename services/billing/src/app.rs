//! Start-up and the lifetime of the service's tasks.

use std::{collections::HashMap, future::Future, sync::Arc, time::Duration};

use async_nats::jetstream;
use sqlx::PgPool;
use tokio::{
    net::TcpListener,
    task::{self, JoinSet},
};
use tokio_util::sync::CancellationToken;
use vigil_bus::{ConsumerSpec, Handler, consumer, streams};
use vigil_core::{Clock, SystemClock};
use vigil_runtime::{
    HealthState, connect_nats, connect_postgres,
    health::{health_router, serve_health},
};

use crate::{
    Config,
    api::{self, ApiState, ApiToken},
    consumers::{self, ProviderEvents, UsageEvents, UserEvents},
    error::{RunError, chain},
    statements,
};

/// Three consumers at their default concurrency, the statement closer, and API requests.
const DB_POOL_SIZE: u32 = 20;
/// How long start-up waits for PostgreSQL and JetStream before giving up.
const STARTUP_PATIENCE: Duration = Duration::from_secs(30);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// Runs billing until `shutdown` is cancelled: migrates its database,
/// consumes provider and usage events, and serves the usage API and the
/// health endpoints on `http_listener` (`config.http_addr` is for `main` to
/// bind; tests pass their own listener).
///
/// Returns once every task has drained; an error if start-up failed or a
/// task died, which stops the others too.
pub async fn run(config: Config, http_listener: TcpListener, shutdown: CancellationToken) -> Result<(), RunError> {
    run_with_clock(config, http_listener, shutdown, Arc::new(SystemClock)).await
}

/// [`run`] with an injected clock, which decides "the current month".
pub async fn run_with_clock(
    config: Config,
    http_listener: TcpListener,
    shutdown: CancellationToken,
    clock: Arc<dyn Clock>,
) -> Result<(), RunError> {
    let result = start_and_run(config, http_listener, shutdown, clock).await;
    if let Err(error) = &result {
        tracing::error!(error = %chain(error), "billing stopped");
    }
    result
}

async fn start_and_run(
    config: Config,
    http_listener: TcpListener,
    shutdown: CancellationToken,
    clock: Arc<dyn Clock>,
) -> Result<(), RunError> {
    config.validate()?;
    let pool = connect_postgres(&config.database_url, DB_POOL_SIZE, STARTUP_PATIENCE).await?;
    let result = run_with_pool(&config, pool.clone(), http_listener, shutdown, clock).await;
    // Only after every task is done with it, so no transaction is cut short.
    pool.close().await;
    result
}

async fn run_with_pool(
    config: &Config,
    pool: PgPool,
    http_listener: TcpListener,
    shutdown: CancellationToken,
    clock: Arc<dyn Clock>,
) -> Result<(), RunError> {
    MIGRATOR.run(&pool).await?;
    // After our own migrations, as the bus crate asks.
    vigil_bus::schema::install(&pool).await?;
    if vigil_runtime::migrate_only() {
        tracing::info!("migrations applied; exiting (VIGIL_MIGRATE_ONLY)");
        return Ok(());
    }

    let nats = connect_nats(&config.nats_url, "vigil-billing").await?;
    let js = jetstream::new(nats.clone());
    if !declare_streams(&js, config.stream_replicas, &shutdown).await? {
        return Ok(());
    }

    // Cancelled by the caller, or by us when any task dies: the service
    // runs whole or not at all.
    let stop = shutdown.child_token();
    let mut tasks = Tasks::default();
    let providers = consumers::providers_spec()?;
    tasks.spawn(
        consumers::PROVIDERS_DURABLE,
        consume(js.clone(), pool.clone(), providers, ProviderEvents, stop.clone()),
    );
    let usage = consumers::usage_spec()?;
    tasks.spawn(
        consumers::USAGE_DURABLE,
        consume(js.clone(), pool.clone(), usage, UsageEvents, stop.clone()),
    );
    let users = consumers::users_spec()?;
    tasks.spawn(
        consumers::USERS_DURABLE,
        consume(js, pool.clone(), users, UserEvents, stop.clone()),
    );
    tasks.spawn(
        "statement closer",
        close_statements(
            pool.clone(),
            clock.clone(),
            Duration::from_secs(config.statement_close_delay_secs),
            Duration::from_millis(config.statement_check_interval_ms),
            stop.clone(),
        ),
    );

    let api_state = ApiState {
        pool: pool.clone(),
        token: Arc::new(ApiToken::new(&config.api_token)),
        clock,
    };
    let router = api::router(api_state).merge(health_router(HealthState { pool, nats }));
    if let Ok(addr) = http_listener.local_addr() {
        tracing::info!(%addr, "billing serving HTTP");
    }
    let served = serve_health(http_listener, router, stop.clone());
    tasks.spawn("HTTP server", async move { served.await.map_err(RunError::Serve) });

    tasks.supervise(stop).await
}

/// Closes due statements every `interval` until `stop`. A failed round is
/// logged and retried on the next one.
async fn close_statements(
    pool: PgPool,
    clock: Arc<dyn Clock>,
    delay: Duration,
    interval: Duration,
    stop: CancellationToken,
) -> Result<(), RunError> {
    loop {
        if let Err(error) = statements::close_due(&pool, clock.now(), delay).await {
            tracing::warn!(error = %error, "closing statements failed; retrying next round");
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = stop.cancelled() => return Ok(()),
        }
    }
}

async fn consume<H: Handler>(
    js: jetstream::Context,
    pool: PgPool,
    spec: ConsumerSpec,
    handler: H,
    stop: CancellationToken,
) -> Result<(), RunError> {
    consumer::run(js, pool, spec, handler, stop).await;
    Ok(())
}

/// Declares the streams, waiting for JetStream as long as start-up may;
/// `false` if shutdown came first.
async fn declare_streams(
    js: &jetstream::Context,
    replicas: usize,
    shutdown: &CancellationToken,
) -> Result<bool, RunError> {
    let deadline = tokio::time::Instant::now() + STARTUP_PATIENCE;
    loop {
        match streams::ensure_streams(js, replicas).await {
            Ok(()) => return Ok(true),
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::info!(error = %error, "waiting for JetStream");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    () = shutdown.cancelled() => return Ok(false),
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// The service's long-running tasks, by name.
#[derive(Default)]
struct Tasks {
    set: JoinSet<Result<(), RunError>>,
    names: HashMap<task::Id, &'static str>,
}

impl Tasks {
    fn spawn(&mut self, name: &'static str, task: impl Future<Output = Result<(), RunError>> + Send + 'static) {
        let id = self.set.spawn(task).id();
        self.names.insert(id, name);
    }

    /// Waits for every task. Only `stop` should end one; if any ends
    /// first, the rest are stopped and the first failure is returned.
    async fn supervise(mut self, stop: CancellationToken) -> Result<(), RunError> {
        let mut outcome = Ok(());
        while let Some(joined) = self.set.join_next_with_id().await {
            let result = match joined {
                Ok((_, Ok(()))) if stop.is_cancelled() => Ok(()),
                Ok((id, Ok(()))) => Err(RunError::Stopped(self.name(id))),
                Ok((_, Err(error))) => Err(error),
                Err(join) => Err(RunError::Panicked(self.name(join.id()), join)),
            };
            if let Err(error) = result {
                if !stop.is_cancelled() {
                    tracing::error!(error = %chain(&error), "a task failed; stopping billing");
                    stop.cancel();
                }
                if outcome.is_ok() {
                    outcome = Err(error);
                }
            }
        }
        outcome
    }

    fn name(&self, id: task::Id) -> &'static str {
        self.names.get(&id).copied().unwrap_or("a billing task")
    }
}
