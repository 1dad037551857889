//! Counting requests: latencies in HDR histograms (microseconds), errors by kind.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

/// Why a request did not end the way the scenario expects: a short, stable
/// kind such as `timeout`, `grpc:Unavailable` or `deny:wrong_code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl Failure {
    pub fn new(kind: impl Into<String>) -> Self {
        Self(kind.into())
    }

    pub fn grpc(status: &tonic::Status) -> Self {
        Self(format!("grpc:{:?}", status.code()))
    }
}

/// A request that went as expected, with the part of its time Vigil itself
/// spent when the scenario can tell (sms: without the inbox polling).
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    pub vigil: Option<Duration>,
}

/// 1 µs to 5 min at 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 300_000_000, 3).unwrap_or_else(|_| unreachable!("constant, valid bounds"))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

pub struct Tally {
    pub requests: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    /// Successful requests only.
    pub latency: Histogram<u64>,
    pub vigil: Histogram<u64>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            requests: 0,
            ok: 0,
            errors: BTreeMap::new(),
            latency: histogram(),
            vigil: histogram(),
        }
    }
}

impl Tally {
    pub fn record(&mut self, latency: Duration, outcome: Result<Outcome, Failure>) {
        self.requests += 1;
        match outcome {
            Ok(o) => {
                self.ok += 1;
                self.latency.saturating_record(micros(latency));
                if let Some(v) = o.vigil {
                    self.vigil.saturating_record(micros(v));
                }
            }
            Err(Failure(kind)) => *self.errors.entry(kind).or_default() += 1,
        }
    }
}

/// Shared by every request of a run; counters outside the lock feed the
/// progress line.
#[derive(Default)]
pub struct Recorder {
    tally: Mutex<Tally>,
    requests: AtomicU64,
    ok: AtomicU64,
    /// The slowest request since the progress line last read it, in µs: a
    /// stall shows in the second it happened, not only in the final p99.
    slowest: AtomicU64,
}

impl Recorder {
    pub fn record(&self, latency: Duration, outcome: Result<Outcome, Failure>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.slowest.fetch_max(micros(latency), Ordering::Relaxed);
        if outcome.is_ok() {
            self.ok.fetch_add(1, Ordering::Relaxed);
        }
        self.tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .record(latency, outcome);
    }

    /// (requests, successes) so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.requests.load(Ordering::Relaxed), self.ok.load(Ordering::Relaxed))
    }

    /// The slowest request since the last call, and resets it.
    pub fn take_slowest(&self) -> Duration {
        Duration::from_micros(self.slowest.swap(0, Ordering::Relaxed))
    }

    pub fn take(&self) -> Tally {
        std::mem::take(&mut *self.tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn successes_feed_the_histogram_failures_the_error_kinds() {
        let mut t = Tally::default();
        t.record(Duration::from_millis(2), Ok(Outcome::default()));
        t.record(
            Duration::from_millis(4),
            Ok(Outcome {
                vigil: Some(Duration::from_millis(1)),
            }),
        );
        t.record(Duration::from_secs(10), Err(Failure::new("timeout")));
        t.record(Duration::ZERO, Err(Failure::new("timeout")));
        assert_eq!((t.requests, t.ok), (4, 2));
        assert_eq!(t.errors.get("timeout"), Some(&2));
        assert_eq!(t.latency.len(), 2);
        assert!(t.latency.max() >= 4000 && t.latency.max() < 4100, "{}", t.latency.max());
        assert_eq!(t.vigil.len(), 1);
    }

    #[test]
    fn the_slowest_request_is_read_once_per_progress_line() {
        let r = Recorder::default();
        r.record(Duration::from_millis(3), Ok(Outcome::default()));
        r.record(Duration::from_millis(70), Err(Failure::new("timeout")));
        r.record(Duration::from_millis(5), Ok(Outcome::default()));
        assert_eq!(
            r.take_slowest(),
            Duration::from_millis(70),
            "failures count too: a stall is a stall"
        );
        assert_eq!(r.take_slowest(), Duration::ZERO, "each line reports its own second");
        r.record(Duration::from_millis(9), Ok(Outcome::default()));
        assert_eq!(r.take_slowest(), Duration::from_millis(9));
    }
}
