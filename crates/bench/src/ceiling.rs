//! The ceilings of the parts underneath Vigil, measured in the same run on
//! the same machine: PostgreSQL single-row durable commits per second and
//! core NATS request/reply round trips per second. Vigil's throughput is
//! reported as a fraction of each, which holds better than absolute numbers
//! on a shared machine.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use sqlx::Executor;
use sqlx::postgres::PgPoolOptions;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Committed single-row INSERTs per second, each its own transaction with
/// `synchronous_commit = on` (the commit returns once the WAL is flushed),
/// from `connections` connections in parallel — what one state change with
/// its outbox row costs at the least. Uses a scratch table it drops after.
pub async fn pg_commits(url: &str, connections: usize, run: Duration) -> anyhow::Result<f64> {
    let connections = connections.max(1);
    let pool = PgPoolOptions::new()
        .max_connections(u32::try_from(connections).unwrap_or(u32::MAX))
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("SET synchronous_commit = on").await?;
                Ok(())
            })
        })
        .connect(url)
        .await
        .context("connecting to PostgreSQL for the commit ceiling")?;
    let table = format!("vigil_bench_ceiling_{}", uuid::Uuid::now_v7().simple());
    pool.execute(
        format!(
            "CREATE TABLE {table} (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), body text NOT NULL)"
        )
        .as_str(),
    )
    .await
    .context("creating the ceiling's scratch table")?;
    let insert: Arc<str> = Arc::from(format!("INSERT INTO {table} (body) VALUES ($1)"));
    let commits = {
        let pool = pool.clone();
        per_second(connections, run, move || {
            let (pool, insert) = (pool.clone(), Arc::clone(&insert));
            async move {
                sqlx::query(&insert).bind("vigil-bench").execute(&pool).await?;
                anyhow::Ok(())
            }
        })
        .await
    };
    let dropped = pool.execute(format!("DROP TABLE {table}").as_str()).await;
    let commits = commits.context("committing to the scratch table")?;
    dropped.context("dropping the ceiling's scratch table")?;
    Ok(commits)
}

/// Request/reply round trips per second over core NATS with `in_flight`
/// requests outstanding and a responder in this process on its own
/// connection — the hop Vigil's gateway makes to the challenge service.
pub async fn nats_request_reply(url: &str, in_flight: usize, run: Duration) -> anyhow::Result<f64> {
    let responder = async_nats::connect(url)
        .await
        .context("connecting to NATS for the request/reply ceiling")?;
    let requester = async_nats::connect(url).await.context("connecting to NATS")?;
    let subject = format!("vigil.bench.ceiling.{}", uuid::Uuid::now_v7().simple());
    let mut requests = responder.subscribe(subject.clone()).await?;
    responder.flush().await?;
    let echo = tokio::spawn(async move {
        while let Some(message) = requests.next().await {
            if let Some(reply) = message.reply {
                let _ = responder.publish(reply, message.payload).await;
            }
        }
    });
    // About the size of a protobuf verify-passcode request.
    let payload = bytes_of(96);
    let replies = per_second(in_flight, run, move || {
        let (client, subject, payload) = (requester.clone(), subject.clone(), payload.clone());
        async move {
            client.request(subject, payload).await?;
            anyhow::Ok(())
        }
    })
    .await;
    echo.abort();
    replies.context("NATS request/reply")
}

/// Runs `step` in a loop on `workers` tasks for `run`: completed steps per
/// second. A failed step is not counted (a request NATS dropped under load
/// times out); only a run where every step failed is an error.
async fn per_second<F, Fut>(workers: usize, run: Duration, step: F) -> anyhow::Result<f64>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..workers.max(1) {
        let (step, done) = (step.clone(), Arc::clone(&done));
        tasks.spawn(async move {
            let mut last_error = None;
            while started.elapsed() < run {
                match step().await {
                    Ok(()) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            last_error
        });
    }
    let mut last_error = None;
    while let Some(finished) = tasks.join_next().await {
        if let Some(e) = finished.map_err(anyhow::Error::from).unwrap_or_else(Some) {
            last_error = Some(e);
        }
    }
    let done = done.load(Ordering::Relaxed);
    match last_error {
        Some(e) if done == 0 => Err(e),
        Some(e) => {
            eprintln!("ceiling: some steps failed and were not counted: {e:#}");
            Ok(done as f64 / started.elapsed().as_secs_f64())
        }
        None => Ok(done as f64 / started.elapsed().as_secs_f64()),
    }
}

fn bytes_of(n: usize) -> bytes::Bytes {
    bytes::Bytes::from(vec![0x5a; n])
}
