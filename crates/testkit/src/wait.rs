//! Polling for eventual outcomes, and test logging.

use std::future::Future;
use std::sync::Once;
use std::time::{Duration, Instant};

use anyhow::anyhow;

use crate::process::test_log_enabled;

/// What a [`wait_until`] probe may return: `Option<T>`, or
/// `anyhow::Result<Option<T>>` when the probe itself can fail.
pub trait Attempt {
    type Output;
    fn into_attempt(self) -> anyhow::Result<Option<Self::Output>>;
}

impl<T> Attempt for Option<T> {
    type Output = T;
    fn into_attempt(self) -> anyhow::Result<Option<T>> {
        Ok(self)
    }
}

impl<T> Attempt for anyhow::Result<Option<T>> {
    type Output = T;
    fn into_attempt(self) -> anyhow::Result<Option<T>> {
        self
    }
}

/// Calls `f` every 50 ms until it yields `Some`, e.g. "the SMS arrives in
/// the inbox".
///
/// An `Err` from `f` counts as "not yet" (a service may still be starting)
/// and is reported if the timeout passes; the error names `what`.
pub async fn wait_until<F, Fut, T>(timeout: Duration, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future,
    Fut::Output: Attempt<Output = T>,
{
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match f().await.into_attempt() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() >= deadline {
            return Err(match last_err {
                Some(e) => e.context(format!("timed out after {timeout:?} waiting for {what}")),
                None => anyhow!("timed out after {timeout:?} waiting for {what}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `tracing` output to the test harness's captured output, only when
/// `TEST_LOG=1` (filter with `RUST_LOG`, default `info`). Safe to call from
/// every test.
pub fn init_test_logging() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if !test_log_enabled() {
            return;
        }
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        // Fails only if another subscriber is already set; keep that one.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}
