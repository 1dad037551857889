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
    Ok(read_with_times(pid)?.0)
}

/// [`read`], and the process's utime, stime, cutime and cstime from the same
/// read of /proc/PID/stat.
fn read_with_times(pid: u32) -> anyhow::Result<(Sample, [u64; 4])> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("process {pid}"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("process {pid}"))?;
    let times = times(&stat).with_context(|| format!("/proc/{pid}/stat"))?;
    let [utime, stime, _, _] = times;
    let sample = Sample {
        rss_kib: status_kib(&status, "VmRSS:").unwrap_or(0),
        hwm_kib: status_kib(&status, "VmHWM:").unwrap_or(0),
        cpu_ticks: utime + stime,
    };
    Ok((sample, times))
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// utime, stime, cutime, cstime: fields 14 to 17, counted after the `(comm)`
/// field, which may itself contain spaces and parentheses. The last two are
/// children that have exited and been waited for.
fn times(stat: &str) -> Option<[u64; 4]> {
    let after_comm = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = after_comm.split_whitespace().skip(11);
    let mut next = || fields.next()?.parse::<u64>().ok();
    Some([next()?, next()?, next()?, next()?])
}

/// `pid` and its children (a server's workers, PostgreSQL's backends): CPU
/// of them all, including children that exited in between (the parent has
/// waited for them, so their time moved into its cutime and cstime), and the
/// parent's resident set alone, since the children share its memory.
pub fn read_tree(pid: u32) -> anyhow::Result<Sample> {
    let (root, [utime, stime, cutime, cstime]) = read_with_times(pid)?;
    let children_ticks: u64 = children(pid)
        .into_iter()
        .filter_map(|child| read(child).ok())
        .map(|child| child.cpu_ticks)
        .sum();
    Ok(Sample {
        cpu_ticks: utime + stime + cutime + cstime + children_ticks,
        ..root
    })
}

/// `pid`'s children: from /proc/PID/task/PID/children where the kernel has
/// it (CONFIG_PROC_CHILDREN), else by the parent pid of every process.
fn children(pid: u32) -> Vec<u32> {
    if let Ok(listed) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        return listed
            .split_whitespace()
            .filter_map(|child| child.parse().ok())
            .collect();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|other| {
            std::fs::read_to_string(format!("/proc/{other}/stat"))
                .ok()
                .and_then(|stat| parent_pid(&stat))
                == Some(pid)
        })
        .collect()
}

/// Field 4 of /proc/PID/stat, the second after `(comm)`.
fn parent_pid(stat: &str) -> Option<u32> {
    stat.get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The PostgreSQL server behind `url`, when it runs on this machine: the
/// parent of the backend serving this connection.
pub async fn postmaster(url: &str) -> anyhow::Result<u32> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .context("connecting to PostgreSQL")?;
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await?;
    let stat = std::fs::read_to_string(format!("/proc/{backend}/stat"))
        .with_context(|| format!("PostgreSQL's backend {backend} is not a process here (another machine?)"))?;
    let _ = conn.close().await;
    parent_pid(&stat).with_context(|| format!("/proc/{backend}/stat has no parent pid"))
}

/// A process to watch: `tree` takes its children in (see [`read_tree`]).
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub pid: u32,
    pub tree: bool,
}

impl Target {
    /// One process.
    pub fn process(name: impl Into<String>, pid: u32) -> Self {
        Self {
            name: name.into(),
            pid,
            tree: false,
        }
    }

    /// A process with its children (see [`read_tree`]).
    pub fn tree(name: impl Into<String>, pid: u32) -> Self {
        Self {
            name: name.into(),
            pid,
            tree: true,
        }
    }

    fn read(&self) -> anyhow::Result<Sample> {
        if self.tree { read_tree(self.pid) } else { read(self.pid) }
    }
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
    target: Target,
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
    pub fn start(processes: Vec<Target>, every: Duration, timeline_every: Duration) -> Self {
        let watched = processes
            .into_iter()
            .map(|target| {
                let start = target.read().unwrap_or_default();
                Watched {
                    target,
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
                let rss = w.target.read().map(|s| s.rss_kib).unwrap_or(0);
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
            w.start = w.target.read().unwrap_or_default();
            w.peak_rss_kib = w.start.rss_kib;
        }
        *self.timeline.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Timeline {
            since: Some(Instant::now()),
            points: Vec::new(),
        };
    }

    /// The points kept since [`Monitor::mark`], with the watched processes' names.
    pub fn timeline(&self) -> (Vec<String>, Vec<Point>) {
        let names = self.lock().iter().map(|w| w.target.name.clone()).collect();
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
                let now = w.target.read();
                let end = now.as_ref().copied().unwrap_or_default();
                Usage {
                    name: w.target.name.clone(),
                    pid: w.target.pid,
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
        assert_eq!(times(stat), Some([250, 75, 0, 0]));
    }

    #[test]
    fn parent_pid_is_read_past_a_strange_comm() {
        let stat = "42 (vigil (x) y) S 17 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 4 0 1000 1000000 500";
        assert_eq!(parent_pid(stat), Some(17));
    }

    #[test]
    fn parses_status() {
        let status = "Name:\tvigil\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(10240));
        assert_eq!(status_kib(status, "VmHWM:"), Some(20480));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn a_tree_counts_its_childrens_cpu() {
        // A child that burns CPU and is waited for: its time must still be
        // counted once it has exited. Other tests' children only add to it.
        let me = std::process::id();
        let of_children = || {
            read_tree(me)
                .unwrap()
                .cpu_ticks
                .saturating_sub(read(me).unwrap().cpu_ticks)
        };
        let before = of_children();
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(status.success());
        let after = of_children();
        assert!(after >= before + 5, "children's CPU ticks {before} -> {after}");
    }

    #[test]
    fn reads_this_process() {
        let me = read(std::process::id()).unwrap();
        assert!(me.rss_kib > 0 && me.hwm_kib >= me.rss_kib, "{me:?}");
    }
}
