//! `vigil-bench` against a real stack, briefly: every scenario runs, the
//! ceilings are measured, the process exits 0 and each scenario reports
//! successes. No figure is asserted: the benchmark reports, tests check that
//! it works.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use vigil_e2e::{Stack, StackOptions};
use vigil_testkit::{SlapdOptions, SlapdServer, workspace_bin};

/// `successes N` of each `== scenario` block, in order.
fn successes(report: &str) -> Vec<(String, u64)> {
    let mut found = Vec::new();
    let mut current = None;
    for line in report.lines() {
        if let Some(rest) = line.strip_prefix("== ") {
            current = rest.split_whitespace().next().map(str::to_owned);
        } else if let Some(name) = &current
            && let Some(n) = line
                .split_once("successes ")
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        {
            found.push((name.clone(), n));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn every_scenario_runs_and_succeeds_against_a_stack() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack starts");
    // The radius scenario's passwords are checked by a directory that takes any.
    let slapd = SlapdServer::start_with(
        SlapdOptions {
            any_password: true,
            ..Default::default()
        },
        "",
    )
    .await
    .expect("slapd starts");
    let pg_url = stack.pg.create_database("vigil_bench").await.unwrap();
    let pids = [
        ("auth-gateway", stack.gateway.pid()),
        ("challenge", stack.challenge.pid()),
        ("telephony", stack.telephony.pid()),
        ("billing", stack.billing.pid()),
        ("carrier-sim", stack.sim.pid()),
    ];
    let mut command = Command::new(workspace_bin("vigil-bench").unwrap());
    command
        .args(["totp", "sms", "radius", "deny", "push"])
        .args([
            "--gateway",
            &stack.grpc_url,
            "--radius",
            &stack.radius_addr,
            "--ldap-url",
            &slapd.url(),
            "--sim",
            &stack.sim_url,
        ])
        .args(["--pg-url", &pg_url, "--nats-url", &stack.nats.url()])
        .args([
            "--duration",
            "2s",
            "--requests",
            "100",
            "--concurrency",
            "4",
            "--connections",
            "2",
        ])
        .args(["--ceiling-duration", "1s", "--timeout", "5s", "--sim-delay", "20ms"])
        .env("VIGIL_ADMIN_TOKEN", &stack.admin_token)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, pid) in pids {
        command.arg("--pid").arg(format!("{name}={pid}"));
    }
    for (name, base) in &stack.http_urls {
        command.arg("--metrics").arg(format!("{name}={base}/metrics"));
    }
    let output = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .expect("vigil-bench finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let context = format!(
        "stdout:\n{stdout}\nstderr:\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        stack.log_tails(30)
    );
    // Shown with --nocapture: what the report looks like.
    eprintln!("{stdout}");
    assert!(
        output.status.success(),
        "vigil-bench failed: {}\n{context}",
        output.status
    );

    let per_scenario = successes(&stdout);
    let names: Vec<&str> = per_scenario.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["totp", "sms", "radius", "deny", "push"], "{context}");
    for (name, ok) in &per_scenario {
        assert!(*ok > 0, "{name} had no successes\n{context}");
    }
    assert!(
        stdout.contains("ceilings: PostgreSQL durable single-row commits "),
        "{context}"
    );
    assert!(!stdout.contains("not measured"), "both ceilings measured\n{context}");
    for (name, _) in pids {
        assert!(stdout.contains(&format!("  {name} ")), "{name} watched\n{context}");
    }
    // PostgreSQL (found through --pg-url, its backends counted in) and the
    // load generator itself, with each one's CPU per successful login.
    for name in ["postgresql", "vigil-bench", "all watched"] {
        assert!(stdout.contains(&format!("  {name} ")), "{name} watched\n{context}");
    }
    assert!(stdout.contains("cpu ms/ok"), "CPU per success shown\n{context}");
    // Each scenario's hops, from the services' own histograms: the gateway's
    // answer and the challenge service's work on it.
    assert_eq!(
        stdout.matches("  hops (the services' histograms)").count(),
        5,
        "every scenario splits its time into hops\n{context}"
    );
    for hop in [
        "auth-gateway vigil_gateway_request_seconds{api=\"grpc\",method=\"Authenticate\"}",
        "auth-gateway vigil_gateway_request_seconds{api=\"radius\",method=\"Access-Request\"}",
        "challenge vigil_rpc_handler_seconds{subject=\"vigil.rpc.challenge.start\"}",
    ] {
        assert!(stdout.contains(hop), "{hop} shown\n{context}");
    }
}
