//! Command line: where the running stack is, which scenarios, how hard and
//! for how long.

use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Authenticate and VerifyPasscode: both count against the rate limits.
pub const CALLS_PER_LOGIN: f64 = 2.0;
/// More agents than this would be a setup of its own.
const MAX_AGENTS: usize = 400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum ScenarioName {
    /// Authenticate(totp) + VerifyPasscode with a fresh code, many users
    /// (with --one-call, the code goes with Authenticate).
    Totp,
    /// Authenticate(sms) → the simulator's inbox → VerifyPasscode.
    Sms,
    /// Access-Request, password + TOTP code, over UDP.
    Radius,
    /// Authenticate(totp) + VerifyPasscode with a wrong code.
    Deny,
    /// Authenticate(push) → the simulated device approves → WatchAuth ends approved.
    Push,
}

impl ScenarioName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Totp => "totp",
            Self::Sms => "sms",
            Self::Radius => "radius",
            Self::Deny => "deny",
            Self::Push => "push",
        }
    }
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "vigil-bench",
    version,
    about = "Benchmark a running Vigil stack: throughput, latency, memory and CPU per scenario, \
             against the PostgreSQL commit and NATS request/reply ceilings of the same machine",
    long_about = None
)]
pub struct Args {
    /// Scenarios to run, in this order.
    #[arg(value_enum, default_values_t = [ScenarioName::Totp, ScenarioName::Sms, ScenarioName::Radius, ScenarioName::Deny, ScenarioName::Push])]
    pub scenarios: Vec<ScenarioName>,

    /// The auth gateway's gRPC address.
    #[arg(long, env = "VIGIL_GATEWAY_URL", default_value = "http://127.0.0.1:50051")]
    pub gateway: String,
    /// Operator admin token (creates the benchmark's provider, agent and users).
    #[arg(long, env = "VIGIL_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    /// The gateway's RADIUS (UDP) address.
    #[arg(long, env = "VIGIL_RADIUS_ADDR", default_value = "127.0.0.1:1812")]
    pub radius: String,
    /// Local address the RADIUS client sends from; it is registered as the
    /// RADIUS client's source, so it must be unique on the server. Default: a
    /// random 127.x.y.z when the gateway is on loopback.
    #[arg(long)]
    pub radius_bind: Option<std::net::IpAddr>,
    /// The directory (LDAP) that checks the password part of the radius
    /// scenario's password-and-code logins; required by that scenario. Any
    /// server that accepts the users' binds will do: `scripts/bench` starts
    /// a slapd whose null backend accepts every password.
    #[arg(long, env = "VIGIL_BENCH_LDAP_URL")]
    pub ldap_url: Option<String>,
    /// Where the users are in that directory.
    #[arg(long, default_value = "uid={username},dc=example,dc=org")]
    pub ldap_bind_dn_template: String,
    /// The carrier simulator's control API.
    #[arg(long, env = "VIGIL_SIM_URL", default_value = "http://127.0.0.1:4010")]
    pub sim: String,
    /// PostgreSQL for the durable-commit ceiling (a scratch table is created and dropped).
    #[arg(long, env = "VIGIL_BENCH_PG_URL")]
    pub pg_url: Option<String>,
    /// NATS for the request/reply ceiling.
    #[arg(long, env = "VIGIL_BENCH_NATS_URL")]
    pub nats_url: Option<String>,

    /// A service process to watch, NAME=PID (repeatable).
    #[arg(long = "pid", value_parser = parse_pid)]
    pub pids: Vec<(String, u32)>,
    /// A server to watch with its child processes, NAME=PID (repeatable):
    /// PostgreSQL's postmaster, whose backends do the database's work. CPU
    /// is the whole tree's, resident memory the parent's alone.
    #[arg(long = "tree", value_parser = parse_pid)]
    pub trees: Vec<(String, u32)>,
    /// A service process to watch, found by executable name; must match one process.
    #[arg(long = "process")]
    pub processes: Vec<String>,
    /// A service's Prometheus endpoint, NAME=URL (repeatable, or comma
    /// separated in the variable): its latency histograms, read before and
    /// after each scenario, show which hop the time went to.
    #[arg(long = "metrics", env = "VIGIL_BENCH_METRICS", value_delimiter = ',', value_parser = parse_metrics)]
    pub metrics: Vec<(String, String)>,

    /// How long each scenario runs (e.g. 20s, 2m, 500ms).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Stop a scenario after this many requests, even before --duration.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Open loop: start this many requests per second, whatever the answers do.
    #[arg(long, conflicts_with = "concurrency")]
    pub rate: Option<f64>,
    /// Closed loop: this many requests in flight, each starting when one ends.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Closed loop: the rate (per second) users and agents are sized for; a
    /// run that goes faster than this waits for users (`no_user_ready`), and
    /// its throughput is then the users', not the server's. (A 2-core box
    /// answered TOTP logins at up to 3,700/s in 2026.)
    #[arg(long, default_value_t = 4000.0)]
    pub expect_rate: f64,
    /// Open loop: more requests in flight than this are counted as errors, not sent.
    #[arg(long, default_value_t = 4096)]
    pub max_in_flight: usize,
    /// A request that takes longer is an error (`timeout`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Users per scenario; default: enough for the run's requests.
    #[arg(long)]
    pub users: Option<usize>,
    /// gRPC connections the load is spread over.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Agents (and RADIUS clients) the load is spread over; default: enough
    /// to stay under --agent-limit at the run's rate.
    #[arg(long)]
    pub agents: Option<usize>,
    /// Login calls per minute the deployment allows one agent
    /// (VIGIL_RATE_LIMIT_AGENT_MAX, 12000 by default); 0: no limit.
    #[arg(long, default_value_t = 12_000)]
    pub agent_limit: u32,
    /// Login calls per minute the deployment allows one user
    /// (VIGIL_RATE_LIMIT_USER_MAX, 20 by default); 0: no limit.
    #[arg(long, default_value_t = 20)]
    pub user_limit: u32,
    /// Parallel admin calls while creating users.
    #[arg(long, default_value_t = 16)]
    pub setup_concurrency: usize,
    /// Wrong answers each user of `deny` gets (5 = the default lockout threshold,
    /// so the last one locks the user out).
    #[arg(long, default_value_t = 5)]
    pub deny_per_user: u32,
    /// `totp` and `deny` send the code with Authenticate, one call per
    /// login, instead of answering the challenge with VerifyPasscode.
    #[arg(long)]
    pub one_call: bool,
    /// The simulator's delay before a device answers a push
    /// (VIGIL_SIM_STATUS_DELAY_MS); `push` leaves it out of "vigil adds".
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    pub sim_delay: Duration,
    /// How often `sms` looks in the simulator's inbox; 0 (the default): the
    /// simulator holds each read until the SMS arrives, so the benchmark
    /// does not spend the machine's CPU on polling.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub sms_poll: Duration,

    /// How long each ceiling is measured.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub ceiling_duration: Duration,
    /// PostgreSQL connections committing in parallel for the ceiling.
    #[arg(long, default_value_t = 4)]
    pub ceiling_connections: usize,
    /// NATS requests in flight for the ceiling.
    #[arg(long, default_value_t = 32)]
    pub nats_concurrency: usize,
    /// How often service processes are sampled.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    pub sample_every: Duration,
    /// How often a scenario's report keeps the processes' resident sets, to
    /// show whether memory stays flat over a long run.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub rss_every: Duration,
}

impl Args {
    /// Requests per second a scenario is expected to reach: the open loop's
    /// rate, or for the closed loop --expect-rate.
    pub fn expected_rate(&self) -> f64 {
        self.rate.unwrap_or(self.expect_rate)
    }

    /// The number of requests a scenario is expected to make, for sizing users.
    pub fn expected_requests(&self) -> u64 {
        let by_time = (self.expected_rate() * self.duration.as_secs_f64()).ceil() as u64;
        self.requests.map_or(by_time, |n| n.min(by_time))
    }

    /// Agents needed so none goes over --agent-limit: each request makes
    /// [`CALLS_PER_LOGIN`] limited calls; a fifth of headroom.
    pub fn agents_needed(&self) -> usize {
        if let Some(n) = self.agents {
            return n.max(1);
        }
        if self.agent_limit == 0 {
            return self.connections.max(1);
        }
        let busiest_minute = (self.expected_requests() as f64).min(self.expected_rate() * 60.0);
        let calls_per_min = busiest_minute * CALLS_PER_LOGIN;
        let agents = (calls_per_min / (f64::from(self.agent_limit) * 0.8)).ceil() as usize;
        agents.clamp(self.connections.max(1), MAX_AGENTS)
    }

    /// Logins one user may make per two minutes under --user-limit: the
    /// limit's window slides over a minute and weighs the minute before, so
    /// keeping to it over two minutes never trips it.
    pub fn logins_per_user(&self) -> Option<u32> {
        (self.user_limit > 0).then(|| (self.user_limit.saturating_sub(2) / 2).max(1))
    }
}

fn parse_pid(s: &str) -> Result<(String, u32), String> {
    let (name, pid) = s.split_once('=').ok_or("expected NAME=PID")?;
    let pid = pid.trim().parse().map_err(|_| format!("{pid:?} is not a process id"))?;
    Ok((name.trim().to_owned(), pid))
}

fn parse_metrics(s: &str) -> Result<(String, String), String> {
    let (name, url) = s.split_once('=').ok_or("expected NAME=URL")?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("{url:?} is not an http(s) URL"));
    }
    Ok((name.trim().to_owned(), url.trim().to_owned()))
}

/// `250ms`, `20s`, `2m`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((s, "s"), |i| s.split_at(i));
    let value: f64 = number.parse().map_err(|_| format!("{s:?} is not a duration"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?} (ms, s or m)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("20s").unwrap(), Duration::from_secs(20));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn agents_stay_under_the_limit() {
        let args = Args::parse_from([
            "vigil-bench",
            "--admin-token",
            "t",
            "--rate",
            "1000",
            "--duration",
            "90s",
        ]);
        // 1000/s × 2 calls × 60 s = 120,000 calls/min over 9,600 per agent
        // (80% of the 12,000 default): 12.5, so 13.
        assert_eq!(args.agents_needed(), 13);
        assert_eq!(args.logins_per_user(), Some(9));
        let unlimited = Args::parse_from([
            "vigil-bench",
            "--admin-token",
            "t",
            "--agent-limit",
            "0",
            "--user-limit",
            "0",
        ]);
        assert_eq!(unlimited.agents_needed(), 4);
        let short = Args::parse_from(["vigil-bench", "--admin-token", "t", "--requests", "100"]);
        assert_eq!(short.agents_needed(), 4, "no more than --connections for a short run");
        assert_eq!(unlimited.logins_per_user(), None);
    }

    #[test]
    fn pids() {
        assert_eq!(parse_pid("challenge=42").unwrap(), ("challenge".into(), 42));
        assert!(parse_pid("challenge").is_err());
        assert!(parse_pid("challenge=x").is_err());
    }
}
