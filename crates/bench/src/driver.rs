//! Runs one scenario open-loop (a fixed start rate, latency counted from each
//! request's scheduled start so a stalled server cannot hide its queue) or
//! closed-loop (a fixed number in flight), bounded by time and request count,
//! with a progress line on stderr.

use std::future::Future;
use std::io::IsTerminal as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::stats::{Failure, Outcome, Recorder, Tally};

/// One kind of login, split so the closed loop's clock starts only once the
/// benchmark has a user ready (a drained user pool is the benchmark's limit,
/// not the server's).
pub trait Scenario: Send + Sync + 'static {
    type Job: Send + 'static;
    /// Picks what the next request needs (a user whose next code is usable).
    fn prepare(&self) -> impl Future<Output = Result<Self::Job, Failure>> + Send;
    /// Makes the request and checks the answer.
    fn run(&self, job: Self::Job) -> impl Future<Output = Result<Outcome, Failure>> + Send;
}

#[derive(Debug, Clone, Copy)]
pub enum Load {
    Open { rate: f64, max_in_flight: usize },
    Closed { concurrency: usize },
}

impl std::fmt::Display for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Load::Open { rate, .. } => write!(f, "open loop at {rate}/s"),
            Load::Closed { concurrency } => write!(f, "closed loop, {concurrency} in flight"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub duration: Duration,
    pub requests: Option<u64>,
    pub timeout: Duration,
}

/// What a run measured, and over how long.
pub struct Run {
    pub tally: Tally,
    pub elapsed: Duration,
}

pub async fn run<S: Scenario>(name: &str, scenario: Arc<S>, load: Load, bounds: Bounds) -> Run {
    let recorder = Arc::new(Recorder::default());
    let started = Instant::now();
    let done = Arc::new(Notify::new());
    let progress = tokio::spawn(progress(
        name.to_owned(),
        Arc::clone(&recorder),
        started,
        Arc::clone(&done),
    ));
    match load {
        Load::Closed { concurrency } => closed(&scenario, &recorder, concurrency, started, bounds).await,
        Load::Open { rate, max_in_flight } => open(&scenario, &recorder, rate, max_in_flight, started, bounds).await,
    }
    let elapsed = started.elapsed();
    done.notify_one();
    let _ = progress.await;
    Run {
        tally: recorder.take(),
        elapsed,
    }
}

/// Prepares and makes one request: when the request itself started (after
/// its user was ready), and how it went.
async fn one<S: Scenario>(scenario: &S, timeout: Duration) -> (Instant, Result<Outcome, Failure>) {
    let job = match scenario.prepare().await {
        Ok(job) => job,
        Err(failure) => return (Instant::now(), Err(failure)),
    };
    let t0 = Instant::now();
    match tokio::time::timeout(timeout, scenario.run(job)).await {
        Ok(outcome) => (t0, outcome),
        Err(_) => (t0, Err(Failure::new("timeout"))),
    }
}

/// Claims one more request within the bounds, or says the run is over.
fn claim(issued: &AtomicU64, started: Instant, bounds: Bounds) -> bool {
    if started.elapsed() >= bounds.duration {
        return false;
    }
    let n = issued.fetch_add(1, Ordering::Relaxed);
    bounds.requests.is_none_or(|max| n < max)
}

async fn closed<S: Scenario>(
    scenario: &Arc<S>,
    recorder: &Arc<Recorder>,
    concurrency: usize,
    started: Instant,
    bounds: Bounds,
) {
    let issued = Arc::new(AtomicU64::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (scenario, recorder, issued) = (Arc::clone(scenario), Arc::clone(recorder), Arc::clone(&issued));
        workers.spawn(async move {
            while claim(&issued, started, bounds) {
                let (t0, outcome) = one(&*scenario, bounds.timeout).await;
                recorder.record(t0.elapsed(), outcome);
            }
        });
    }
    while workers.join_next().await.is_some() {}
}

async fn open<S: Scenario>(
    scenario: &Arc<S>,
    recorder: &Arc<Recorder>,
    rate: f64,
    max_in_flight: usize,
    started: Instant,
    bounds: Bounds,
) {
    let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let issued = AtomicU64::new(0);
    let in_flight = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    let mut next = started;
    while claim(&issued, started, bounds) {
        tokio::time::sleep_until(next).await;
        let scheduled = next;
        next += period;
        // Reap finished tasks so the set does not grow for the whole run.
        while tasks.try_join_next().is_some() {}
        if in_flight.load(Ordering::Relaxed) >= max_in_flight as u64 {
            recorder.record(Duration::ZERO, Err(Failure::new("in_flight_limit")));
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (scenario, recorder, in_flight) = (Arc::clone(scenario), Arc::clone(recorder), Arc::clone(&in_flight));
        tasks.spawn(async move {
            // The clock runs from the scheduled start: waiting for a user or
            // a connection is latency the caller would see too.
            let (_, outcome) = one(&*scenario, bounds.timeout).await;
            recorder.record(scheduled.elapsed(), outcome);
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Once a second: elapsed time, requests, the last second's rate, errors,
/// and the slowest request of that second.
async fn progress(name: String, recorder: Arc<Recorder>, started: Instant, done: Arc<Notify>) {
    let tty = std::io::stderr().is_terminal();
    let mut last = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let print = |line: String| {
        if tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    };
    loop {
        let finished = tokio::select! {
            _ = tick.tick() => false,
            () = done.notified() => true,
        };
        let (requests, ok) = recorder.counts();
        print(format!(
            "[{name}] {:5.1}s  {requests} requests ({}/s)  {ok} ok  {} errors  slowest {:.1} ms",
            started.elapsed().as_secs_f64(),
            requests - last,
            requests - ok,
            recorder.take_slowest().as_secs_f64() * 1e3,
        ));
        last = requests;
        if finished {
            break;
        }
    }
    if tty {
        eprintln!();
    }
}
