//! Memory and CPU of the service processes, from /proc: resident set
//! (VmRSS, sampled for a per-scenario peak), the kernel's own high-water mark
//! (VmHWM) and CPU time (utime + stime).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// /proc reports CPU time in clock ticks of USER_HZ, which Linux fixes at 100
/// on every architecture it exposes to user space.
const TICKS_PER_SEC: f64 = 100.0;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub cpu_ticks: u64,
}

pub fn read(pid: u32) -> anyhow::Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("process {pid}"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("process {pid}"))?;
    Ok(Sample {
        rss_kib: status_kib(&status, "VmRSS:").unwrap_or(0),
        hwm_kib: status_kib(&status, "VmHWM:").unwrap_or(0),
        cpu_ticks: cpu_ticks(&stat).with_context(|| format!("/proc/{pid}/stat"))?,
    })
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// utime + stime: fields 14 and 15, counted after the `(comm)` field, which
/// may itself contain spaces and parentheses.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The one process whose executable is called `name` (argv[0]'s file name).
pub fn find(name: &str) -> anyhow::Result<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").context("reading /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        let argv0 = String::from_utf8_lossy(argv0);
        if Path::new(argv0.as_ref()).file_name().is_some_and(|f| f == name) {
            found.push(pid);
        }
    }
    match found.as_slice() {
        [pid] => Ok(*pid),
        [] => bail!("no process named {name}; pass --pid {name}=PID"),
        many => bail!(
            "{} processes named {name} ({many:?}); pass --pid {name}=PID",
            many.len()
        ),
    }
}

/// One watched process's figures over a scenario.
#[derive(Debug, Clone)]
pub struct Usage {
    pub name: String,
    pub pid: u32,
    pub rss_start_kib: u64,
    pub rss_peak_kib: u64,
    pub rss_end_kib: u64,
    /// The kernel's peak resident set since the process started.
    pub hwm_kib: u64,
    pub cpu_secs: f64,
    /// False when the process could not be read (it exited).
    pub alive: bool,
}

struct Watched {
    name: String,
    pid: u32,
    start: Sample,
    peak_rss_kib: u64,
}

/// Resident sets of every watched process at one moment of a scenario.
#[derive(Debug, Clone)]
pub struct Point {
    pub at: Duration,
    pub rss_kib: Vec<u64>,
}

#[derive(Default)]
struct Timeline {
    since: Option<Instant>,
    points: Vec<Point>,
}

/// Samples every watched process in the background; [`Monitor::mark`]
/// starts a scenario's window, [`Monitor::usage`] closes it. Every
/// `timeline_every` it also keeps a point, to show whether memory stays flat
/// over a long run.
#[derive(Clone)]
pub struct Monitor {
    watched: Arc<Mutex<Vec<Watched>>>,
    timeline: Arc<Mutex<Timeline>>,
    timeline_every: Duration,
}

impl Monitor {
    pub fn start(processes: Vec<(String, u32)>, every: Duration, timeline_every: Duration) -> Self {
        let watched = processes
            .into_iter()
            .map(|(name, pid)| {
                let start = read(pid).unwrap_or_default();
                Watched {
                    name,
                    pid,
                    start,
                    peak_rss_kib: start.rss_kib,
                }
            })
            .collect();
        let monitor = Self {
            watched: Arc::new(Mutex::new(watched)),
            timeline: Arc::default(),
            timeline_every,
        };
        let sampler = monitor.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                sampler.sample();
            }
        });
        monitor
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Watched>> {
        self.watched.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn sample(&self) {
        let rss: Vec<u64> = self
            .lock()
            .iter_mut()
            .map(|w| {
                let rss = read(w.pid).map(|s| s.rss_kib).unwrap_or(0);
                w.peak_rss_kib = w.peak_rss_kib.max(rss);
                rss
            })
            .collect();
        let mut timeline = self.timeline.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(since) = timeline.since {
            let due = self.timeline_every * u32::try_from(timeline.points.len()).unwrap_or(u32::MAX);
            if since.elapsed() >= due {
                timeline.points.push(Point {
                    at: since.elapsed(),
                    rss_kib: rss,
                });
            }
        }
    }

    pub fn mark(&self) {
        for w in self.lock().iter_mut() {
            w.start = read(w.pid).unwrap_or_default();
            w.peak_rss_kib = w.start.rss_kib;
        }
        *self.timeline.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Timeline {
            since: Some(Instant::now()),
            points: Vec::new(),
        };
    }

    /// The points kept since [`Monitor::mark`], with the watched processes' names.
    pub fn timeline(&self) -> (Vec<String>, Vec<Point>) {
        let names = self.lock().iter().map(|w| w.name.clone()).collect();
        let points = self
            .timeline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .points
            .clone();
        (names, points)
    }

    pub fn usage(&self) -> Vec<Usage> {
        self.sample();
        self.lock()
            .iter()
            .map(|w| {
                let now = read(w.pid);
                let end = now.as_ref().copied().unwrap_or_default();
                Usage {
                    name: w.name.clone(),
                    pid: w.pid,
                    rss_start_kib: w.start.rss_kib,
                    rss_peak_kib: w.peak_rss_kib,
                    rss_end_kib: end.rss_kib,
                    hwm_kib: end.hwm_kib,
                    cpu_secs: end.cpu_ticks.saturating_sub(w.start.cpu_ticks) as f64 / TICKS_PER_SEC,
                    alive: now.is_ok(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_strange_comm() {
        let stat = "42 (vigil (x) y) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 4 0 1000 1000000 500";
        assert_eq!(cpu_ticks(stat), Some(325));
    }

    #[test]
    fn parses_status() {
        let status = "Name:\tvigil\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(10240));
        assert_eq!(status_kib(status, "VmHWM:"), Some(20480));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = read(std::process::id()).unwrap();
        assert!(me.rss_kib > 0 && me.hwm_kib >= me.rss_kib, "{me:?}");
    }
}
