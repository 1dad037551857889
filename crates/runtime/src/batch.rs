//! Many callers' one-row statements run as one statement.
//!
//! A signed request spends its nonce, a login bumps its rate-limit counters:
//! each was a statement of its own for one row, and on a box bound by CPU a
//! statement's fixed costs (the round trip and the wake-ups at both ends,
//! the executor's start, the commit) are most of what it costs. A batch
//! pays them once for every caller waiting at that moment. There is no
//! linger: a worker takes whatever is queued when it is free, so a lone
//! caller waits for nothing but its own statement, and batches grow only
//! when callers would have queued for connections anyway.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, PoisonError},
};

use sqlx::{Postgres, pool::PoolConnection};

use opentelemetry::trace::TraceContextExt;
use tokio::sync::{Mutex, mpsc, oneshot};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Batches in flight at once per batcher in the services: while one runs,
/// the next fills.
pub const WORKERS: usize = 2;

/// How a batch is run: the statement for a batch's items, returning one
/// output per item in the items' order.
pub type RunBatch<I, O, E> = dyn Fn(Vec<I>) -> Pin<Box<dyn Future<Output = Result<Vec<O>, E>> + Send>> + Send + Sync;

#[derive(Debug, thiserror::Error)]
pub enum BatchError<E: std::error::Error + 'static> {
    /// Every caller of a failed batch gets the same error.
    #[error("the batched statement failed")]
    Failed(#[source] Arc<E>),
    /// The statement returned a different number of outputs than items: a bug.
    #[error("the batched statement returned {returned} outputs for {items} items")]
    Mismatch { items: usize, returned: usize },
    /// The workers are gone (the service is stopping).
    #[error("the batch workers have stopped")]
    Stopped,
}

#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    /// Name in the `vigil_batch_size` histogram.
    pub name: &'static str,
    /// Batches in flight at once: while one runs, the next fills.
    pub workers: usize,
    /// Most items in one statement.
    pub max_items: usize,
}

struct Call<I, O, E: std::error::Error + 'static> {
    item: I,
    reply: oneshot::Sender<Result<O, BatchError<E>>>,
    /// The caller's span (none unless spans are exported): the batch's span
    /// links to it, so that a login's trace leads to the statement it
    /// waited on.
    caller: tracing::Span,
}

type Queue<I, O, E> = Arc<Mutex<mpsc::Receiver<Call<I, O, E>>>>;

/// A handle to the workers; they stop once every handle is dropped and the
/// queue is empty.
pub struct Batcher<I, O, E: std::error::Error + 'static> {
    queue: mpsc::Sender<Call<I, O, E>>,
}

impl<I, O, E: std::error::Error + 'static> Clone for Batcher<I, O, E> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<I, O, E> Batcher<I, O, E>
where
    I: Clone + Send + 'static,
    O: Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    /// Starts the workers. When a batch of several fails with an error that
    /// `alone` picks (a statement error, say, not a lost database), each of
    /// its items is run again on its own, so that one bad item fails only
    /// its own caller. A failed statement wrote nothing, so the retry does
    /// not count anything twice.
    pub fn spawn(options: BatchOptions, run: Arc<RunBatch<I, O, E>>, alone: fn(&E) -> bool) -> Self {
        let (queue, receiver) = mpsc::channel(options.max_items.max(1) * options.workers.max(1) * 8);
        let receiver: Queue<I, O, E> = Arc::new(Mutex::new(receiver));
        for _ in 0..options.workers.max(1) {
            tokio::spawn(work(options, receiver.clone(), run.clone(), alone));
        }
        Self { queue }
    }

    /// Runs `item` in the next batch and returns its output.
    pub async fn call(&self, item: I) -> Result<O, BatchError<E>> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Call {
                item,
                reply,
                caller: if spans_exported() {
                    tracing::Span::current()
                } else {
                    tracing::Span::none()
                },
            })
            .await
            .map_err(|_| BatchError::Stopped)?;
        answer.await.map_err(|_| BatchError::Stopped)?
    }
}

/// The statement of a batch over items `I` on one connection.
pub type Statement<I, O> = for<'c> fn(
    &'c mut sqlx::PgConnection,
    &'c [I],
) -> Pin<Box<dyn Future<Output = Result<Vec<O>, sqlx::Error>> + Send + 'c>>;

impl<I, O> Batcher<I, O, sqlx::Error>
where
    I: Clone + Send + Sync + 'static,
    O: Send + 'static,
{
    /// Batches that each run `statement` on a connection of `pool`, which
    /// must be the batches' own (`crate::connect_batch_pool`). A statement
    /// error (a deadlock with another batch, a row gone under it) fails each
    /// item alone; a lost database fails the batch.
    ///
    /// The workers keep their connections between batches instead of giving
    /// them back to the pool: sqlx checks every connection given back with a
    /// round trip, and at a moderate rate, where a batch holds one or two
    /// items, that was a round trip for nearly every statement. A kept
    /// connection the server cut while it sat idle (a restart) fails its
    /// next statement; that batch is run once more on a new connection.
    /// Usually the statement had reached no database. If it had committed
    /// before the cut, the second run writes no nonce or login twice (their
    /// ids and TOTP steps are checked: the nonce's request is refused as a
    /// replay, the login gets the answer its first run wrote), and
    /// rate-limit counters count the batch twice, which errs towards
    /// limiting.
    pub fn statements(name: &'static str, max_items: usize, pool: sqlx::PgPool, statement: Statement<I, O>) -> Self {
        let options = BatchOptions {
            name,
            workers: WORKERS,
            max_items,
        };
        // At most one per worker: a worker takes one out for its batch and
        // puts it back after, unless its statement failed (then it goes back
        // to the pool, which checks it and closes it if it is broken).
        let kept: Arc<std::sync::Mutex<Vec<PoolConnection<Postgres>>>> = Arc::default();
        let run: Arc<RunBatch<I, O, sqlx::Error>> = Arc::new(move |items: Vec<I>| {
            let (pool, kept) = (pool.clone(), kept.clone());
            Box::pin(async move {
                let keep = |conn| kept.lock().unwrap_or_else(PoisonError::into_inner).push(conn);
                let held = kept.lock().unwrap_or_else(PoisonError::into_inner).pop();
                let was_kept = held.is_some();
                let mut conn = match held {
                    Some(conn) => conn,
                    None => crate::acquire(&pool).await?,
                };
                let mut ran = statement(&mut conn, &items).await;
                if let Err(error) = &ran
                    && was_kept
                    && connection_lost(error)
                {
                    tracing::info!(batch = name, %error, "a kept batch connection was cut; running the batch on a new one");
                    // Out of the pool at once (dropped, it would hold its
                    // place until the pool had checked it), so that a new
                    // one can be opened.
                    drop(conn.detach());
                    conn = crate::acquire(&pool).await?;
                    ran = statement(&mut conn, &items).await;
                }
                ran.inspect(|_| keep(conn))
            })
        });
        Self::spawn(options, run, |e| matches!(e, sqlx::Error::Database(_)))
    }
}

/// Whether `error` says the connection is gone rather than the statement
/// wrong: an I/O error, or the server ending the session (SQLSTATE class
/// 57P, as at a shutdown or restart, and class 08).
fn connection_lost(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(e) => e.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")),
        _ => false,
    }
}

async fn work<I, O, E>(options: BatchOptions, queue: Queue<I, O, E>, run: Arc<RunBatch<I, O, E>>, alone: fn(&E) -> bool)
where
    I: Clone + Send + 'static,
    O: Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    loop {
        let calls = {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            let mut calls = vec![first];
            while calls.len() < options.max_items.max(1)
                && let Ok(call) = queue.try_recv()
            {
                calls.push(call);
            }
            calls
        };
        // A caller that gave up (its deadline passed) needs no answer and
        // no work done for it.
        let calls: Vec<_> = calls.into_iter().filter(|c| !c.reply.is_closed()).collect();
        if calls.is_empty() {
            continue;
        }
        metrics::histogram!("vigil_batch_size", "batch" => options.name).record(calls.len() as f64);
        let span = batch_span(options.name, &calls);
        let items = calls.iter().map(|c| c.item.clone()).collect();
        match run(items)
            .instrument(span.clone())
            .await
            .map(|outputs| checked(options.name, calls.len(), outputs))
        {
            Ok(Ok(outputs)) => {
                for (call, output) in calls.into_iter().zip(outputs) {
                    let _ = call.reply.send(Ok(output));
                }
            }
            Ok(Err((items, returned))) => {
                for call in calls {
                    let _ = call.reply.send(Err(BatchError::Mismatch { items, returned }));
                }
            }
            Err(error) if calls.len() > 1 && alone(&error) => {
                tracing::warn!(batch = options.name, %error, items = calls.len(), "batch failed; running its items one by one");
                for call in calls {
                    let answer = match run(vec![call.item.clone()]).instrument(span.clone()).await {
                        Ok(outputs) => checked(options.name, 1, outputs)
                            .map(|mut one| one.remove(0))
                            .map_err(|(items, returned)| BatchError::Mismatch { items, returned }),
                        Err(error) => Err(BatchError::Failed(Arc::new(error))),
                    };
                    let _ = call.reply.send(answer);
                }
            }
            Err(error) => {
                let error = Arc::new(error);
                for call in calls {
                    let _ = call.reply.send(Err(BatchError::Failed(error.clone())));
                }
            }
        }
    }
}

/// The span of one batch: a trace of its own (it serves many), linked to
/// each caller's span, as OpenTelemetry models a batch. None when spans are
/// not exported: at 1,000 logins/s, about a batch per login, the spans and
/// their links cost the gateway and the challenge service some 4% more CPU
/// each (measured), for nothing.
fn batch_span<I, O, E: std::error::Error + 'static>(name: &'static str, calls: &[Call<I, O, E>]) -> tracing::Span {
    if !spans_exported() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(parent: None, "batch", batch = name, items = calls.len());
    for call in calls {
        let caller = call.caller.context().span().span_context().clone();
        if caller.is_valid() {
            span.add_link(caller);
        }
    }
    span
}

/// Whether spans leave the process: without, a caller's span is not kept
/// for its batch, and a batch has none.
fn spans_exported() -> bool {
    static EXPORTED: std::sync::LazyLock<bool> = std::sync::LazyLock::new(crate::otlp::configured);
    *EXPORTED
}

/// `outputs` if the statement returned one per item; otherwise the
/// [`BatchError::Mismatch`] (a bug in the statement, logged here) that each
/// of its callers gets.
fn checked<O>(name: &'static str, items: usize, outputs: Vec<O>) -> Result<Vec<O>, (usize, usize)> {
    if outputs.len() == items {
        return Ok(outputs);
    }
    let returned = outputs.len();
    tracing::error!(
        batch = name,
        items,
        returned,
        "batched statement returned the wrong count"
    );
    Err((items, returned))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum TestError {
        #[error("bad item")]
        BadItem,
        #[error("database gone")]
        Gone,
    }

    fn options(workers: usize, max_items: usize) -> BatchOptions {
        BatchOptions {
            name: "test",
            workers,
            max_items,
        }
    }

    /// Doubles each item after a pause, recording each batch's size; item 13
    /// fails its whole batch with `BadItem`, item 99 with `Gone`.
    fn doubler(sizes: Arc<std::sync::Mutex<Vec<usize>>>) -> Arc<RunBatch<u32, u32, TestError>> {
        Arc::new(move |items: Vec<u32>| {
            let sizes = sizes.clone();
            Box::pin(async move {
                sizes.lock().unwrap().push(items.len());
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                if items.contains(&99) {
                    return Err(TestError::Gone);
                }
                if items.contains(&13) {
                    return Err(TestError::BadItem);
                }
                Ok(items.into_iter().map(|i| i * 2).collect())
            })
        })
    }

    /// Item 1 in a batch of its own, running (a worker busy with it) when
    /// this returns: the next callers queue.
    async fn hold(
        batcher: &Batcher<u32, u32, TestError>,
    ) -> tokio::task::JoinHandle<Result<u32, BatchError<TestError>>> {
        let batcher = batcher.clone();
        let busy = tokio::spawn(async move { batcher.call(1).await });
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        busy
    }

    #[tokio::test]
    async fn callers_waiting_together_share_a_batch_and_get_their_own_answers() {
        let sizes = Arc::new(std::sync::Mutex::new(vec![]));
        let batcher = Batcher::spawn(options(1, 64), doubler(sizes.clone()), |_| true);
        assert_eq!(batcher.call(1).await.unwrap(), 2, "a lone caller runs alone");
        let answers = futures::future::join_all((0..40).map(|i| batcher.call(i + 100))).await;
        for (i, answer) in answers.into_iter().enumerate() {
            assert_eq!(answer.unwrap(), (i as u32 + 100) * 2);
        }
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes[0], 1);
        assert_eq!(sizes[1..].iter().sum::<usize>(), 40);
        assert!(
            sizes.len() <= 3,
            "40 callers at once took {} batches: {sizes:?}",
            sizes.len() - 1
        );
    }

    #[tokio::test]
    async fn a_batch_is_never_larger_than_its_limit() {
        let sizes = Arc::new(std::sync::Mutex::new(vec![]));
        let batcher = Batcher::spawn(options(2, 8), doubler(sizes.clone()), |_| true);
        let answers = futures::future::join_all((0..50).map(|i| batcher.call(i + 100))).await;
        assert!(answers.iter().all(Result::is_ok));
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 50);
        assert!(sizes.iter().all(|&s| s <= 8), "{sizes:?}");
    }

    /// One worker; a batch that failed with `BadItem` (not `Gone`) is run
    /// again item by item.
    fn retrying_bad_items(sizes: &Arc<std::sync::Mutex<Vec<usize>>>) -> Batcher<u32, u32, TestError> {
        Batcher::spawn(options(1, 64), doubler(sizes.clone()), |e| {
            matches!(e, TestError::BadItem)
        })
    }

    #[tokio::test]
    async fn one_bad_item_fails_only_its_own_caller() {
        let sizes = Arc::new(std::sync::Mutex::new(vec![]));
        let batcher = retrying_bad_items(&sizes);
        let busy = hold(&batcher).await;
        let answers = futures::future::join_all([12, 13, 14].map(|i| batcher.call(i))).await;
        assert_eq!(busy.await.unwrap().unwrap(), 2);
        assert_eq!(answers[0].as_ref().unwrap(), &24);
        assert!(matches!(answers[1], Err(BatchError::Failed(_))));
        assert_eq!(answers[2].as_ref().unwrap(), &28);
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes, vec![1, 3, 1, 1, 1], "the batch of three, then each alone");
    }

    #[tokio::test]
    async fn an_error_not_picked_for_retries_fails_the_whole_batch_once() {
        let sizes = Arc::new(std::sync::Mutex::new(vec![]));
        let batcher = retrying_bad_items(&sizes);
        let busy = hold(&batcher).await;
        let answers = futures::future::join_all([98, 99, 100].map(|i| batcher.call(i))).await;
        assert_eq!(busy.await.unwrap().unwrap(), 2);
        assert!(answers.iter().all(|a| matches!(a, Err(BatchError::Failed(_)))));
        assert_eq!(
            sizes.lock().unwrap().clone(),
            vec![1, 3],
            "no retries against a lost database"
        );
    }

    #[tokio::test]
    async fn a_caller_that_gave_up_is_left_out_of_the_batch() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let run: Arc<RunBatch<u32, u32, TestError>> = Arc::new(move |items: Vec<u32>| {
            let counted = counted.clone();
            Box::pin(async move {
                counted.fetch_add(items.len(), Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                Ok(items)
            })
        });
        let batcher = Batcher::spawn(options(1, 64), run, |_| true);
        let busy = hold(&batcher).await;
        let gave_up = tokio::time::timeout(std::time::Duration::from_millis(10), batcher.call(2)).await;
        assert!(gave_up.is_err());
        assert_eq!(busy.await.unwrap().unwrap(), 1);
        assert_eq!(batcher.call(3).await.unwrap(), 3);
        assert_eq!(runs.load(Ordering::SeqCst), 2, "item 2 was never run");
    }
}
