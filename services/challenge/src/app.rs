//! Wires the challenge service together and runs it until shutdown.

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use vigil_bus::{
    ConsumerSpec, Outbox, OutboxRelay, consumer,
    rpc::{self, RpcReply},
    streams, subjects,
};
use vigil_core::SystemClock;
use vigil_runtime::health::{HealthState, health_router};

use crate::{
    Config,
    codes::CodeHasher,
    delivery_answers::DeliveryAnsweredHandler,
    delivery_status::DeliveryStatusHandler,
    policy::Lockout,
    service::{Service, ServiceError},
};

const QUEUE: &str = "challenge";

pub async fn run(config: Config, http: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
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
    let nats = vigil_runtime::connect_nats(&config.nats_url, "vigil-challenge").await?;
    let js = async_nats::jetstream::new(nats.clone());
    streams::ensure_streams(&js, config.stream_replicas).await?;

    // Two batchers on durable connections: the unlocked logins' reads and
    // writes. The rate-limit counters commit without waiting for the disk
    // (`ratelimit::counter` says why that is safe).
    let batch_pool = vigil_runtime::connect_batch_pool(&config.database_url, 2).await?;
    let counter_pool = vigil_runtime::connect_deferred_commit_batch_pool(&config.database_url, 1).await?;
    let outbox = Outbox::new();
    let service = Arc::new(Service {
        pool: pool.clone(),
        outbox: outbox.clone(),
        clock: Arc::new(SystemClock),
        codes: CodeHasher::new(config.code_key.clone()),
        lifetime: chrono::Duration::seconds(i64::from(config.challenge_lifetime_secs)),
        max_attempts: i32::try_from(config.max_verify_attempts).unwrap_or(i32::MAX),
        sms_template: config.sms_template.clone(),
        lockout: Lockout {
            threshold: i32::try_from(config.lockout_threshold).unwrap_or(i32::MAX),
            window: chrono::Duration::seconds(i64::from(config.lockout_window_secs)),
            duration: chrono::Duration::seconds(i64::from(config.lockout_duration_secs)),
        },
        pin_hasher: config.pin_hasher()?,
        keyring: config.keyring()?,
        otp_issuer: config.otp_issuer.clone(),
        limits: config.rate_limits(),
        counter: crate::ratelimit::counter(counter_pool),
        unlocked: crate::unlocked_logins::UnlockedLogins::spawn(batch_pool),
        push_enroll_url: config.push_enroll_url.clone(),
        push_enrollment_ttl: chrono::Duration::seconds(i64::from(config.push_enrollment_ttl_secs)),
    });

    let tasks = TaskTracker::new();
    tasks.spawn(OutboxRelay::new(pool.clone(), js.clone(), outbox).run(shutdown.clone()));
    tasks.spawn(crate::expiry::run(
        service.clone(),
        Duration::from_millis(500),
        shutdown.clone(),
    ));
    tasks.spawn(vigil_runtime::retention::run(
        pool.clone(),
        crate::retention::rules(&config),
        shutdown.clone(),
    ));
    tasks.spawn(consumer::run(
        js.clone(),
        pool.clone(),
        unbatched(ConsumerSpec::new(
            "challenge-delivery-status",
            "VIGIL_DELIVERY",
            subjects::DELIVERY_STATUS,
        )),
        DeliveryStatusHandler(service.clone()),
        shutdown.clone(),
    ));
    tasks.spawn(consumer::run(
        js.clone(),
        pool.clone(),
        unbatched(ConsumerSpec::new(
            "challenge-delivery-answered",
            "VIGIL_DELIVERY",
            subjects::DELIVERY_ANSWERED,
        )),
        DeliveryAnsweredHandler(service.clone()),
        shutdown.clone(),
    ));
    let options = rpc::ServeOptions {
        max_in_flight: config.rpc_max_in_flight,
    };
    macro_rules! serve_all {
        ($($subject:ident => $method:ident),* $(,)?) => {$(
            serve(&tasks, &nats, (subjects::$subject, options), &service, &shutdown, |s, r| async move { s.$method(r).await });
        )*};
    }
    serve_all!(
        RPC_CHALLENGE_PREAUTH => preauth,
        RPC_CHALLENGE_START => start,
        RPC_CHALLENGE_VERIFY => verify,
        RPC_CHALLENGE_STATUS => status,
        RPC_CHALLENGE_CREATE_USER => create_user,
        RPC_CHALLENGE_GET_USER => get_user,
        RPC_CHALLENGE_UPDATE_USER => update_user,
        RPC_CHALLENGE_DELETE_USER => delete_user,
        RPC_CHALLENGE_LIST_USERS => list_users,
        RPC_CHALLENGE_IMPORT_USERS => import_users,
        RPC_CHALLENGE_EXPLAIN => explain,
        RPC_CHALLENGE_ENROLL_FACTOR => enroll_factor,
        RPC_CHALLENGE_RESYNC_HOTP => resync_hotp,
        RPC_CHALLENGE_LIST_AUDIT => list_audit,
        RPC_CHALLENGE_ENROLL_DEVICE => enroll_device,
    );

    let health = health_router(HealthState {
        pool,
        nats: nats.clone(),
    });
    tracing::info!(addr = %http.local_addr()?, "challenge service ready");
    vigil_runtime::serve_health(http, health, shutdown.clone()).await?;
    tasks.close();
    tasks.wait().await;
    nats.flush().await.ok();
    Ok(())
}

/// Serves one request/reply subject, mapping handler errors to replies once, here.
fn serve<Req, Rep, F, Fut>(
    tasks: &TaskTracker,
    nats: &async_nats::Client,
    (subject, options): (&'static str, rpc::ServeOptions),
    service: &Arc<Service>,
    shutdown: &CancellationToken,
    handler: F,
) where
    Req: prost::Message + Default + 'static,
    Rep: RpcReply,
    F: Fn(Arc<Service>, Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Rep, ServiceError>> + Send,
{
    let service = service.clone();
    let serve = rpc::serve_with(
        nats.clone(),
        subject,
        QUEUE,
        options,
        move |request: Req| {
            let service = service.clone();
            let handler = handler.clone();
            async move {
                handler(service, request).await.unwrap_or_else(|error| {
                    if error.code() == "internal" {
                        tracing::error!(error = ?error, subject, "request failed");
                        Rep::from_error("internal", "internal error".into())
                    } else {
                        Rep::from_error(error.code(), error.to_string())
                    }
                })
            }
        },
        shutdown.clone(),
    );
    tasks.spawn(async move {
        if let Err(error) = serve.await {
            tracing::error!(%error, subject, "request handler stopped");
        }
    });
}

/// These consumers lock the challenge rows a login's VerifyPasscode waits
/// for (pg_stat_activity showed verifications waiting on them): one event per
/// transaction keeps each lock for one event's time, not a whole batch's.
/// Moving a batch of delivery reports in one UPDATE was tried and measured
/// (BENCHMARKS.md): VerifyPasscode's lock read waited 0.7-0.8 ms on average
/// instead of 0.14-0.21 ms, and no CPU was saved beyond the noise. (The
/// delivery-status handler now commits itself, which is never batched; the
/// setting stays so that it would not be if that changed.)
fn unbatched(mut spec: ConsumerSpec) -> ConsumerSpec {
    spec.batch_size = 1;
    spec
}
