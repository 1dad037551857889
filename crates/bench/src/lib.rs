//! `vigil-bench`: drives a running Vigil stack through its public interfaces
//! (the agent gRPC API, RADIUS, the carrier simulator's control API), starts
//! nothing itself, and reports per scenario the requests, successes, errors
//! by kind, throughput, latency percentiles (HDR histograms) and each service
//! process's memory and CPU — next to the PostgreSQL durable-commit and NATS
//! request/reply ceilings of the same machine, measured in the same run.

pub mod args;
pub mod ceiling;
pub mod driver;
pub mod hops;
pub mod procs;
pub mod report;
pub mod scenarios;
pub mod setup;
pub mod stats;
pub mod users;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::net::lookup_host;

use crate::args::{Args, ScenarioName};
use crate::driver::{Bounds, Load, Scenario};
use crate::procs::{Monitor, Target};
use crate::report::{Ceilings, ScenarioReport};
use crate::scenarios::{deny::Deny, push::Push, radius::Radius, sms::Sms, totp::Totp};
use crate::setup::Tenant;
use crate::users::{Pool, TotpUser, totp_users_needed};

/// The services `scripts/dev` runs, looked up by name when no --pid is given.
const SERVICES: [&str; 5] = [
    "vigil-auth-gateway",
    "vigil-challenge",
    "vigil-telephony",
    "vigil-billing",
    "vigil-carrier-sim",
];

/// Runs the whole benchmark and prints its report on stdout.
pub async fn run(args: Args) -> anyhow::Result<Vec<ScenarioReport>> {
    let mut watched = watched_processes(&args)?;
    if let Some(url) = args.pg_url.as_deref().filter(|_| args.trees.is_empty()) {
        match procs::postmaster(url).await {
            Ok(pid) => watched.push(Target::tree("postgresql", pid)),
            Err(e) => eprintln!("not watching PostgreSQL: {e:#}"),
        }
    }
    let monitor = Monitor::start(watched, args.sample_every, args.rss_every);
    let metrics = hops::Metrics::new(args.metrics.clone());
    let watch = Watch {
        monitor: &monitor,
        metrics: &metrics,
    };
    println!("{}", report::processes("idle (MiB)", &monitor.usage(), None));

    let ceilings = measure_ceilings(&args).await?;
    print!("{}", report::ceilings(&ceilings));

    let tenant = Arc::new(
        Tenant::create(
            &args.gateway,
            &args.admin_token,
            args.connections,
            args.agents_needed(),
            args.setup_concurrency,
        )
        .await?,
    );
    println!(
        "provider {} (run {}), {} agents over {} connections",
        tenant.provider_id,
        tenant.run_id,
        tenant.agents.len(),
        args.connections
    );
    let load = match args.rate {
        Some(rate) => Load::Open {
            rate,
            max_in_flight: args.max_in_flight,
        },
        None => Load::Closed {
            concurrency: args.concurrency,
        },
    };
    let mut reports = Vec::new();
    for name in args.scenarios.clone() {
        let report = run_scenario(&args, &tenant, &watch, name, load).await?;
        println!("{}", report::scenario(&report, &ceilings));
        reports.push(report);
    }
    println!("{}", report::summary(&reports, &ceilings));
    Ok(reports)
}

fn watched_processes(args: &Args) -> anyhow::Result<Vec<Target>> {
    let mut watched: Vec<Target> = args
        .pids
        .iter()
        .map(|(name, pid)| Target::process(name, *pid))
        .collect();
    for name in &args.processes {
        watched.push(Target::process(name, procs::find(name)?));
    }
    if watched.is_empty() {
        // Nothing named: watch the usual services where that is unambiguous.
        for name in SERVICES {
            match procs::find(name) {
                Ok(pid) => watched.push(Target::process(name, pid)),
                Err(e) => eprintln!("not watching {name}: {e:#}"),
            }
        }
    }
    watched.extend(args.trees.iter().map(|(name, pid)| Target::tree(name, *pid)));
    // The load generator's own share of the machine, which the services do not get.
    watched.push(Target::process("vigil-bench", std::process::id()));
    Ok(watched)
}

async fn measure_ceilings(args: &Args) -> anyhow::Result<Ceilings> {
    let mut c = Ceilings::default();
    if let Some(url) = &args.pg_url {
        c.pg_commits = Some(ceiling::pg_commits(url, args.ceiling_connections, args.ceiling_duration).await?);
    }
    if let Some(url) = &args.nats_url {
        c.nats_round_trips =
            Some(ceiling::nats_request_reply(url, args.nats_concurrency, args.ceiling_duration).await?);
    }
    Ok(c)
}

async fn totp_users(tenant: &Tenant, prefix: &str, count: usize) -> anyhow::Result<Vec<TotpUser>> {
    Ok(tenant
        .create_users(prefix, count, true)
        .await?
        .into_iter()
        .filter_map(|u| Some(TotpUser::new(u.username, u.seed?)))
        .collect())
}

/// What is read besides the requests: the processes, and the services' metrics.
struct Watch<'a> {
    monitor: &'a Monitor,
    metrics: &'a hops::Metrics,
}

async fn run_scenario(
    args: &Args,
    tenant: &Arc<Tenant>,
    watch: &Watch<'_>,
    name: ScenarioName,
    load: Load,
) -> anyhow::Result<ScenarioReport> {
    let expected = args.expected_requests();
    let in_flight = match load {
        Load::Open { rate, .. } => rate.ceil() as usize,
        Load::Closed { concurrency } => concurrency,
    };
    let users = args.users.unwrap_or_else(|| match name {
        ScenarioName::Totp | ScenarioName::Radius => totp_users_needed(expected, args.duration),
        ScenarioName::Deny => usize::try_from(expected.div_ceil(u64::from(args.deny_per_user.max(1)))).unwrap_or(1),
        ScenarioName::Sms | ScenarioName::Push => {
            users::paced_users_needed(expected, args.expected_rate(), args.logins_per_user(), in_flight)
        }
    });
    eprintln!("[{}] creating {users} users", name.as_str());
    let setup = Instant::now();
    let bounds = Bounds {
        duration: args.duration,
        requests: args.requests,
        timeout: args.timeout,
    };
    let label = name.as_str();
    let report = match name {
        ScenarioName::Totp => {
            let s = Totp::new(
                Arc::clone(tenant),
                totp_users(tenant, "totp", users).await?,
                args.one_call,
            );
            measure(label, s, |s| &s.pool, watch, load, bounds, setup).await
        }
        ScenarioName::Deny => {
            let s = Deny::new(
                Arc::clone(tenant),
                totp_users(tenant, "deny", users).await?,
                args.deny_per_user,
                args.one_call,
            );
            measure(label, s, |s| &s.pool, watch, load, bounds, setup).await
        }
        ScenarioName::Radius => {
            let server = resolve(&args.radius).await?;
            let sources = scenarios::radius::bind_addresses(args.radius_bind, server, args.agents_needed());
            let directory = args.ldap_url.as_deref().context(
                "the radius scenario needs --ldap-url: password-and-code logins check the password in a directory",
            )?;
            scenarios::radius::use_directory(tenant, directory, &args.ldap_bind_dn_template).await?;
            let s = Radius::register(tenant, totp_users(tenant, "radius", users).await?, server, sources).await?;
            measure(label, s, |s| &s.pool, watch, load, bounds, setup).await
        }
        ScenarioName::Sms => {
            let created = tenant.create_users("sms", users, false).await?;
            let s = Sms::new(
                Arc::clone(tenant),
                scenarios::sms::read_inboxes(&args.sim, created).await?,
                &args.sim,
                args.sms_poll,
                args.logins_per_user(),
            );
            measure(label, s, |s| &s.pool, watch, load, bounds, setup).await
        }
        ScenarioName::Push => {
            let created = tenant.create_users("push", users, false).await?;
            let s = Push::new(
                Arc::clone(tenant),
                scenarios::push::enrol_devices(tenant, &args.sim, created).await?,
                &args.sim,
                args.sim_delay,
                args.logins_per_user(),
            );
            measure(label, s, |s| &s.pool, watch, load, bounds, setup).await
        }
    };
    Ok(report)
}

async fn measure<S: Scenario, U>(
    name: &str,
    scenario: S,
    pool: impl Fn(&S) -> &Pool<U>,
    watch: &Watch<'_>,
    load: Load,
    bounds: Bounds,
    setup: Instant,
) -> ScenarioReport {
    let users = pool(&scenario).len();
    eprintln!("[{name}] set up in {}", report::duration(setup.elapsed()));
    let scenario = Arc::new(scenario);
    let Watch { monitor, metrics } = watch;
    let before = metrics.snapshot().await;
    monitor.mark();
    let run = driver::run(name, Arc::clone(&scenario), load, bounds).await;
    let usage = monitor.usage();
    let (after, backlog) = metrics.snapshot_and_backlog().await;
    let hops = hops::between(&before, &after);
    ScenarioReport {
        name: name.to_owned(),
        load,
        users,
        user_waits: pool(&scenario).waits.load(std::sync::atomic::Ordering::Relaxed),
        run,
        usage,
        timeline: monitor.timeline(),
        hops,
        backlog,
    }
}

async fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    lookup_host(addr)
        .await
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to no address"))
}
