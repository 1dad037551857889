//! Over capacity the gateway sheds logins at once, failing closed, rather
//! than queueing them until the RPC deadline; and the challenge service
//! drops requests whose caller has already given up. End to end through the
//! real binaries, with the challenge service frozen (SIGSTOP) so that logins
//! in flight stay in flight.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use vigil_e2e::{AgentClient, Stack, StackOptions, Tenant, agent_client};
use vigil_proto::v1::{CreateRadiusClientRequest, Decision, PreauthRequest, PreauthResponse, RadiusMode, Reason};
use vigil_testkit::wait_until;

/// Logins the gateway works on at once in this test.
const MAX_IN_FLIGHT: usize = 2;
/// Concurrent logins sent while the challenge service is frozen.
const LOGINS: usize = 6;
const RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// A shed login is answered well within this, whatever the machine's load.
const PROMPTLY: Duration = Duration::from_millis(1500);
const OVERLOADED: &str = "overloaded";
const SECRET: &str = "radius-shared-secret-0123";

/// Freezes a process (SIGSTOP) until dropped (SIGCONT), so a failing test
/// never leaves it frozen.
struct Frozen(u32);

impl Frozen {
    fn new(pid: u32) -> Frozen {
        signal("-STOP", pid);
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal("-CONT", self.0);
    }
}

fn signal(which: &str, pid: u32) {
    let status = std::process::Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {which} {pid}");
}

async fn preauth(mut agent: AgentClient, username: &str) -> (Duration, PreauthResponse) {
    let started = Instant::now();
    let reply = agent
        .preauth(PreauthRequest {
            username: username.into(),
            client_ip: "192.0.2.10".into(),
        })
        .await
        .expect("a preauth is answered, never refused at the transport")
        .into_inner();
    (started.elapsed(), reply)
}

/// One Access-Request in challenge mode (`timeout` seconds per try, `tries`
/// tries); what radclient printed.
async fn radius_login(stack: &Stack, username: &str, timeout: &str, tries: u32) -> String {
    let attributes = format!("User-Name = {username}, User-Password = \"pw\", Message-Authenticator = 0x00");
    vigil_testkit::radclient::run(
        &stack.radius_addr,
        SECRET,
        &attributes,
        (timeout, tries),
        Duration::from_secs(60),
    )
    .await
    .unwrap()
    .0
}

/// The value of the metric line that starts with `series` (name and labels).
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn over_capacity_logins_are_denied_at_once_and_abandoned_requests_dropped() {
    let stack = Stack::start(StackOptions {
        rpc_timeout_ms: u64::try_from(RPC_TIMEOUT.as_millis()).unwrap(),
        env: vec![("auth-gateway", "VIGIL_MAX_IN_FLIGHT", MAX_IN_FLIGHT.to_string())],
        ..Default::default()
    })
    .await
    .expect("stack starts");
    if let Err(error) = overload(&stack).await {
        panic!("{error:#}\n\n{}", stack.log_tails(40));
    }
}

async fn overload(stack: &Stack) -> anyhow::Result<()> {
    let mut acme = Tenant::create(stack, "Acme").await?;
    acme.add_user("alice", "+15550300001").await?;
    acme.admin
        .create_radius_client(CreateRadiusClientRequest {
            provider_id: acme.provider_id.clone(),
            agent_id: String::new(),
            name: "vpn-01".into(),
            source_cidr: "127.0.0.1".into(),
            shared_secret: SECRET.into(),
            mode: RadiusMode::Challenge as i32,
            timeout_seconds: 0,
        })
        .await?;

    // Within the bound, logins are decided as usual.
    let (_, reply) = preauth(acme.agent.clone(), "alice").await;
    anyhow::ensure!(reply.reason() != Reason::Unavailable, "{reply:?}");
    // A few tries: the first packet may race the client list's reload.
    let out = radius_login(stack, "alice", "1", 3).await;
    anyhow::ensure!(out.contains("Received Access-Challenge"), "{out}");

    let frozen = Frozen::new(stack.challenge.pid());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..LOGINS {
        let (agent, tx) = (acme.agent.clone(), tx.clone());
        tokio::spawn(async move {
            let _ = tx.send(preauth(agent, "alice").await);
        });
    }
    // Beyond the bound, a deny with reason unavailable, at once.
    for _ in MAX_IN_FLIGHT..LOGINS {
        let (took, reply) = tokio::time::timeout(RPC_TIMEOUT - Duration::from_secs(1), rx.recv())
            .await
            .map_err(|_| anyhow::anyhow!("logins beyond the bound were not answered before the RPC deadline"))?
            .unwrap();
        anyhow::ensure!(
            reply.decision() == Decision::Deny && reply.reason() == Reason::Unavailable,
            "{reply:?}"
        );
        anyhow::ensure!(reply.message.contains(OVERLOADED), "{reply:?}");
        anyhow::ensure!(took < PROMPTLY, "shed after {took:?}");
    }
    // A request whose credentials are malformed takes no slot: refused as
    // unauthenticated, at once, and not counted as shed.
    let mut forged = agent_client(&stack.grpc_url, "agt_not-an-agent", "vak_forged").await?;
    let asked = Instant::now();
    let refused = forged
        .preauth(PreauthRequest {
            username: "alice".into(),
            client_ip: "192.0.2.10".into(),
        })
        .await
        .expect_err("a request with malformed credentials is refused");
    anyhow::ensure!(refused.code() == tonic::Code::Unauthenticated, "{refused:?}");
    anyhow::ensure!(asked.elapsed() < PROMPTLY, "refused after {:?}", asked.elapsed());

    // The bound is shared with RADIUS: rejected at once too.
    let asked = Instant::now();
    let out = radius_login(stack, "alice", "3", 1).await;
    let took = asked.elapsed();
    anyhow::ensure!(out.contains("Received Access-Reject"), "{out}");
    anyhow::ensure!(out.contains("DENY unavailable: ") && out.contains(OVERLOADED), "{out}");
    anyhow::ensure!(took < PROMPTLY, "RADIUS login shed after {took:?}");

    // The logins within the bound waited for the frozen service until the
    // deadline: denied, as before, never allowed.
    for _ in 0..MAX_IN_FLIGHT {
        let (took, reply) = tokio::time::timeout(RPC_TIMEOUT * 2, rx.recv())
            .await
            .map_err(|_| anyhow::anyhow!("a login in flight was never answered"))?
            .unwrap();
        anyhow::ensure!(
            reply.decision() == Decision::Deny && reply.reason() == Reason::Unavailable,
            "{reply:?}"
        );
        anyhow::ensure!(!reply.message.contains(OVERLOADED), "{reply:?}");
        anyhow::ensure!(
            took >= RPC_TIMEOUT - Duration::from_millis(100),
            "answered after {took:?}"
        );
    }
    drop(frozen);

    // Thawed, the challenge service finds those two requests past their
    // callers' deadline and drops them instead of working on them.
    wait_until(
        Duration::from_secs(20),
        "the challenge service drops the expired requests",
        || async {
            let text = stack.metrics("challenge").await.ok()?;
            let dropped = metric(
                &text,
                "vigil_rpc_expired_total{subject=\"vigil.rpc.challenge.preauth\"}",
            );
            (dropped >= MAX_IN_FLIGHT as f64).then_some(())
        },
    )
    .await?;
    let gateway = stack.metrics("auth-gateway").await?;
    anyhow::ensure!(
        metric(&gateway, "vigil_gateway_shed_total{api=\"grpc\"}") == (LOGINS - MAX_IN_FLIGHT) as f64
            && metric(&gateway, "vigil_gateway_shed_total{api=\"radius\"}") == 1.0,
        "{gateway}"
    );

    // Permits came back: logins are decided as usual again.
    let (_, reply) = preauth(acme.agent.clone(), "alice").await;
    anyhow::ensure!(reply.reason() != Reason::Unavailable, "{reply:?}");
    Ok(())
}
