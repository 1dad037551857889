//! What the benchmark prints: per scenario, then a summary against the ceilings.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::driver::{Load, Run};
use crate::procs::{Point, Usage};

/// The ceilings measured in this run (per second), when they were.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ceilings {
    pub pg_commits: Option<f64>,
    pub nats_round_trips: Option<f64>,
}

pub struct ScenarioReport {
    pub name: String,
    pub load: Load,
    pub users: usize,
    pub user_waits: u64,
    pub run: Run,
    pub usage: Vec<Usage>,
    /// Process names, and their resident sets every --rss-every.
    pub timeline: (Vec<String>, Vec<Point>),
    /// The services' own latency histograms over the run (`--metrics`).
    pub hops: Vec<crate::hops::Hop>,
    /// Events not yet relayed or consumed when the run ended (`--metrics`).
    pub backlog: crate::hops::Backlog,
}

impl ScenarioReport {
    /// Successful requests per second.
    pub fn throughput(&self) -> f64 {
        self.run.tally.ok as f64 / self.run.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

fn ms(micros: u64) -> String {
    format!("{:.2} ms", micros as f64 / 1000.0)
}

fn percentiles(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "no successful requests".into();
    }
    format!(
        "p50 {}  p90 {}  p99 {}  max {}",
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.90)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max())
    )
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn ratio(throughput: f64, ceiling: Option<f64>) -> String {
    match ceiling {
        Some(c) if c > 0.0 => format!("{:.3}", throughput / c),
        _ => "-".into(),
    }
}

pub fn ceilings(c: &Ceilings) -> String {
    let show = |v: Option<f64>| v.map_or("not measured".to_owned(), |v| format!("{v:.0}/s"));
    format!(
        "ceilings: PostgreSQL durable single-row commits {}, NATS request/reply {}\n",
        show(c.pg_commits),
        show(c.nats_round_trips)
    )
}

/// The watched processes' memory and CPU; with `per` (the scenario's
/// successes), also each one's CPU per success, which holds from run to run
/// on a noisy machine better than throughput does.
pub fn processes(title: &str, usage: &[Usage], per: Option<u64>) -> String {
    let mut out = String::new();
    let per = per.filter(|n| *n > 0);
    let _ = writeln!(
        out,
        "  {title:<20} {:>7} {:>10} {:>9} {:>9} {:>9} {:>8}{}",
        "pid",
        "rss start",
        "rss peak",
        "rss end",
        "hwm",
        "cpu s",
        if per.is_some() { "  cpu ms/ok" } else { "" }
    );
    let mut total = 0.0;
    for u in usage {
        total += u.cpu_secs;
        let _ = writeln!(
            out,
            "  {:<20} {:>7} {:>10} {:>9} {:>9} {:>9} {:>8.2}{}{}",
            u.name,
            u.pid,
            mib(u.rss_start_kib),
            mib(u.rss_peak_kib),
            mib(u.rss_end_kib),
            mib(u.hwm_kib),
            u.cpu_secs,
            per.map_or(String::new(), |n| format!("  {:>9.3}", u.cpu_secs * 1000.0 / n as f64)),
            if u.alive { "" } else { "  (exited)" }
        );
    }
    if let Some(n) = per {
        let _ = writeln!(
            out,
            "  {:<20} {:>7} {:>10} {:>9} {:>9} {:>9} {total:>8.2}  {:>9.3}",
            "all watched",
            "",
            "",
            "",
            "",
            "",
            total * 1000.0 / n as f64
        );
    }
    out
}

/// Why requests had to wait for a user, if any did. Not a footnote: a run
/// that ran out of codes measured its own users, and looked like a slow
/// server (seen: a third of a 15 s run idle, every closed-loop figure of
/// several sessions capped by it). In an open loop that falls behind its
/// rate the cause is the other way round: requests waiting for answers hold
/// their users, and more users would only queue more requests.
fn users_warning(load: Load, throughput: f64, waits: u64) -> Option<String> {
    if waits == 0 {
        return None;
    }
    Some(match load {
        Load::Open { rate, .. } if throughput < rate * 0.95 => format!(
            "the server fell behind the rate ({throughput:.1}/s of {rate}/s): requests waiting for \
             answers held their users, and {waits} requests had to wait for one; this is an \
             overloaded server's latency, not a shortage of users"
        ),
        _ => format!(
            "the run ran out of users with a usable code ({waits} requests had to wait): its \
             throughput is bounded by the benchmark's users, not by the server; rerun with more \
             --users or a higher --expect-rate"
        ),
    })
}

/// The error kinds of a login the gateway denied `unavailable` (over gRPC,
/// over RADIUS): shed past its in-flight bound, or left without an answer
/// from the challenge service.
const UNAVAILABLE: [&str; 2] = ["deny:unavailable", "reject:unavailable"];

/// A warning when more than 1% of the requests were denied `unavailable`.
/// A closed loop with more requests in flight than the gateway admits
/// (`VIGIL_MAX_IN_FLIGHT`, 32 per CPU and at least 64 by default) has most
/// of them shed, each followed at once by the next request in its slot: the
/// shed requests' work counts in every process's CPU, so CPU per successful login looks two or three
/// times dearer than it is (seen: 128 in flight on a 2-core box).
fn shed_warning(load: Load, tally: &crate::stats::Tally) -> Option<String> {
    let denied: u64 = UNAVAILABLE.iter().filter_map(|kind| tally.errors.get(*kind)).sum();
    if denied * 100 <= tally.requests {
        return None;
    }
    let why = match load {
        Load::Closed { concurrency } => format!(
            "with {concurrency} in flight this closed loop may be past the gateway's in-flight bound \
             (VIGIL_MAX_IN_FLIGHT): rerun with --concurrency at or under it"
        ),
        Load::Open { .. } => "the gateway shed logins past its in-flight bound or got no answer in time".to_owned(),
    };
    Some(format!(
        "{denied} of {} requests were denied unavailable, and the CPU per successful login includes \
         their work; {why}",
        tally.requests
    ))
}

pub fn scenario(r: &ScenarioReport, ceilings: &Ceilings) -> String {
    let t = &r.run.tally;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== {} ({}, {:.1} s, {} users)",
        r.name,
        r.load,
        r.run.elapsed.as_secs_f64(),
        r.users
    );
    let errors: Vec<String> = t.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(
        out,
        "  requests {}  successes {}  errors {}{}",
        t.requests,
        t.ok,
        t.requests - t.ok,
        if errors.is_empty() {
            String::new()
        } else {
            format!(" ({})", errors.join(", "))
        }
    );
    let _ = writeln!(
        out,
        "  throughput {:.1}/s  = {} of PostgreSQL commits/s, {} of NATS request/reply/s",
        r.throughput(),
        ratio(r.throughput(), ceilings.pg_commits),
        ratio(r.throughput(), ceilings.nats_round_trips)
    );
    let _ = writeln!(out, "  latency   {}", percentiles(&t.latency));
    if !t.vigil.is_empty() {
        let _ = writeln!(out, "  vigil adds {}", percentiles(&t.vigil));
    }
    for warning in [
        users_warning(r.load, r.throughput(), r.user_waits),
        shed_warning(r.load, t),
    ]
    .into_iter()
    .flatten()
    {
        let _ = writeln!(out, "  WARNING: {warning}");
    }
    out.push_str(&processes("process (MiB)", &r.usage, Some(t.ok)));
    out.push_str(&crate::hops::report(&r.hops));
    out.push_str(&crate::hops::report_backlog(&r.backlog));
    out.push_str(&timeline(&r.timeline.0, &r.timeline.1));
    out
}

/// Resident sets over the run, one row per point; only for runs long enough
/// to have more than the starting point.
fn timeline(names: &[String], points: &[Point]) -> String {
    let mut out = String::new();
    if points.len() < 2 {
        return out;
    }
    let _ = write!(out, "  {:<8}", "rss MiB");
    for name in names {
        let _ = write!(out, " {:>13}", name.get(..13).unwrap_or(name));
    }
    out.push('\n');
    for p in points {
        let _ = write!(out, "  {:<8}", format!("{:.0}s", p.at.as_secs_f64()));
        for kib in &p.rss_kib {
            let _ = write!(out, " {:>13}", mib(*kib));
        }
        out.push('\n');
    }
    out
}

pub fn summary(reports: &[ScenarioReport], ceilings: &Ceilings) -> String {
    let mut out = String::from("== summary\n");
    let _ = writeln!(
        out,
        "  {:<8} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8}",
        "scenario", "ok/s", "p50", "p99", "max", "/pg", "/nats"
    );
    for r in reports {
        let h = &r.run.tally.latency;
        let q = |q: f64| {
            if h.is_empty() {
                "-".into()
            } else {
                ms(h.value_at_quantile(q))
            }
        };
        let _ = writeln!(
            out,
            "  {:<8} {:>10.1} {:>10} {:>10} {:>10} {:>8} {:>8}",
            r.name,
            r.throughput(),
            q(0.5),
            q(0.99),
            if h.is_empty() { "-".into() } else { ms(h.max()) },
            ratio(r.throughput(), ceilings.pg_commits),
            ratio(r.throughput(), ceilings.nats_round_trips)
        );
    }
    out
}

pub fn duration(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_for_users_is_blamed_on_the_users_unless_an_open_loop_fell_behind() {
        let closed = Load::Closed { concurrency: 64 };
        let open = Load::Open {
            rate: 1000.0,
            max_in_flight: 10_000,
        };
        assert_eq!(users_warning(closed, 3000.0, 0), None);
        assert_eq!(users_warning(open, 360.0, 0), None);
        let short = users_warning(closed, 3000.0, 128).unwrap_or_default();
        assert!(short.starts_with("the run ran out of users"), "{short}");
        let kept_up = users_warning(open, 990.0, 5).unwrap_or_default();
        assert!(kept_up.starts_with("the run ran out of users"), "{kept_up}");
        let behind = users_warning(open, 360.0, 3441).unwrap_or_default();
        assert!(
            behind.starts_with("the server fell behind the rate (360.0/s of 1000/s)"),
            "{behind}"
        );
    }

    #[test]
    fn logins_denied_unavailable_beyond_one_percent_are_called_out() {
        let closed = Load::Closed { concurrency: 128 };
        let mut tally = crate::stats::Tally {
            requests: 43_906,
            ok: 12_596,
            ..Default::default()
        };
        assert_eq!(shed_warning(closed, &tally), None, "nothing denied");
        tally.errors.insert("deny:wrong_code".into(), 31_310);
        assert_eq!(shed_warning(closed, &tally), None, "other denials are not shedding");
        tally.errors.insert("deny:unavailable".into(), 400);
        assert_eq!(shed_warning(closed, &tally), None, "under 1%");
        tally.errors.insert("reject:unavailable".into(), 200);
        let shed = shed_warning(closed, &tally).unwrap_or_default();
        assert!(
            shed.starts_with("600 of 43906 requests were denied unavailable"),
            "{shed}"
        );
        assert!(shed.contains("with 128 in flight"), "{shed}");
    }
}
