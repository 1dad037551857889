//! The server against FreeRADIUS's real `radclient` (Debian `freeradius-utils`).
//! radclient checks our Response Authenticator and Message-Authenticator the
//! way NPS, RD Gateway and VPN concentrators do. A missing radclient fails the
//! tests: a skipped interop test would prove nothing.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::{CHALLENGE_PROMPT, Options, SECRET, start};

struct Outcome {
    success: bool,
    stdout: String,
}

impl Outcome {
    fn received(&self) -> Option<&str> {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix("Received "))
            .and_then(|l| l.split_whitespace().next())
    }

    fn attribute(&self, name: &str) -> Option<String> {
        let prefix = format!("{name} = ");
        self.stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(&prefix).map(|v| v.trim_matches('"').to_owned()))
    }
}

/// Runs radclient with the attributes on stdin; `-t 1` seconds per try, `retries` tries.
async fn radclient(server: SocketAddr, secret: &str, attributes: &str, retries: u32) -> Outcome {
    let (stdout, status) = vigil_testkit::radclient::run(
        &server.to_string(),
        secret,
        attributes,
        ("1", retries),
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    Outcome {
        success: status.success(),
        stdout,
    }
}

const MA: &str = "Message-Authenticator = 0x00";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radclient_right_password_is_accepted() {
    let srv = start(Options::default()).await;
    let out = radclient(
        srv.addr,
        SECRET,
        &format!("User-Name = alice, User-Password = right, {MA}"),
        1,
    )
    .await;
    assert_eq!(out.received(), Some("Access-Accept"), "{}", out.stdout);
    assert!(out.success, "{}", out.stdout);
    assert_eq!(out.attribute("Reply-Message").as_deref(), Some("Welcome"));
    assert_eq!(out.attribute("Session-Timeout").as_deref(), Some("3600"));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radclient_wrong_password_is_rejected() {
    let srv = start(Options::default()).await;
    let out = radclient(
        srv.addr,
        SECRET,
        &format!("User-Name = alice, User-Password = wrong, {MA}"),
        1,
    )
    .await;
    assert_eq!(out.received(), Some("Access-Reject"), "{}", out.stdout);
    assert_eq!(
        out.attribute("Reply-Message").as_deref(),
        Some("Access denied: wrong password")
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radclient_challenge_state_round_trip() {
    let srv = start(Options::default()).await;
    let first = radclient(
        srv.addr,
        SECRET,
        &format!("User-Name = bob, User-Password = pw, {MA}"),
        1,
    )
    .await;
    assert_eq!(first.received(), Some("Access-Challenge"), "{}", first.stdout);
    assert_eq!(first.attribute("Reply-Message").as_deref(), Some(CHALLENGE_PROMPT));
    let state = first.attribute("State").expect("State in the challenge");
    assert_eq!(state, format!("0x{}", hex::encode("chal-bob")));

    let answer = format!("User-Name = bob, User-Password = 123456, State = {state}, {MA}");
    let second = radclient(srv.addr, SECRET, &answer, 1).await;
    assert_eq!(second.received(), Some("Access-Accept"), "{}", second.stdout);

    let wrong = format!("User-Name = bob, User-Password = 000000, State = {state}, {MA}");
    let third = radclient(srv.addr, SECRET, &wrong, 1).await;
    assert_eq!(third.received(), Some("Access-Reject"), "{}", third.stdout);
    assert_eq!(srv.calls(), 3);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radclient_wrong_shared_secret_gets_no_answer() {
    let srv = start(Options::default()).await;
    let out = radclient(
        srv.addr,
        "not-the-secret",
        &format!("User-Name = alice, User-Password = right, {MA}"),
        1,
    )
    .await;
    assert_eq!(out.received(), None, "{}", out.stdout);
    assert!(!out.success);
    assert!(out.stdout.contains("No reply"), "{}", out.stdout);
    assert_eq!(srv.counters.snapshot().bad_message_authenticator, 1);
    assert_eq!(srv.calls(), 0);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radclient_without_message_authenticator_gets_no_answer() {
    let srv = start(Options::default()).await;
    let out = radclient(srv.addr, SECRET, "User-Name = alice, User-Password = right", 1).await;
    assert_eq!(out.received(), None, "{}", out.stdout);
    assert!(!out.success);
    assert_eq!(srv.counters.snapshot().missing_message_authenticator, 1);
    assert_eq!(srv.calls(), 0);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radclient_retransmission_is_answered_once() {
    // The handler takes 1.5 s (a push approval); radclient retries after 1 s
    // with the same identifier and authenticator.
    let srv = start(Options {
        slow: Duration::from_millis(1500),
        ..Options::default()
    })
    .await;
    let out = radclient(
        srv.addr,
        SECRET,
        &format!("User-Name = slow, User-Password = x, {MA}"),
        3,
    )
    .await;
    assert_eq!(out.received(), Some("Access-Accept"), "{}", out.stdout);
    // At least one retransmission reached the server while the handler ran
    // (more if the machine is slow); none started a second handler.
    let sent = out.stdout.matches("Sent Access-Request").count() as u64;
    assert!(sent >= 2, "{}", out.stdout);
    assert_eq!(srv.calls(), 1);
    let c = srv.counters.snapshot();
    assert_eq!(c.duplicate_in_flight + c.duplicate_answered, sent - 1);
    assert!(c.duplicate_in_flight >= 1);
    srv.stop().await;
}
