//! The server driven by a raw NAS built from this crate's codec: the cases
//! radclient cannot produce (exact duplicates on demand, Proxy-State, garbage).

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use vigil_radius::{Attribute, Code, CountersSnapshot, Packet, ServerConfig, attr, sign_request};

use crate::support::{ManualClock, Nas, Options, Running, SECRET, start};

const WAIT: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_and_reject_are_signed_and_carry_attributes() {
    let srv = start(Options::default()).await;
    let nas = Nas::new(srv.addr).await;

    let (req, auth) = Nas::request(1, "alice", "right", SECRET);
    nas.send(&req).await;
    let p = Nas::check(&nas.recv(WAIT).await.unwrap(), &auth);
    assert_eq!(p.code, Code::AccessAccept);
    assert_eq!(p.identifier, 1);
    assert_eq!(p.reply_message().as_deref(), Some("Welcome"));
    assert_eq!(p.attribute(attr::CLASS), Some(&b"vigil-session"[..]));
    assert_eq!(p.session_timeout(), Some(3600));

    let (req, auth) = Nas::request(2, "alice", "wrong", SECRET);
    nas.send(&req).await;
    let p = Nas::check(&nas.recv(WAIT).await.unwrap(), &auth);
    assert_eq!(p.code, Code::AccessReject);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_duplicate_gets_the_cached_bytes_and_one_handler_call() {
    let srv = start(Options::default()).await;
    let nas = Nas::new(srv.addr).await;
    let (req, auth) = Nas::request(7, "alice", "right", SECRET);
    nas.send(&req).await;
    let first = nas.recv(WAIT).await.unwrap();
    nas.send(&req).await;
    let second = nas.recv(WAIT).await.unwrap();
    assert_eq!(first, second);
    Nas::check(&second, &auth);
    assert_eq!(srv.calls(), 1);
    assert_eq!(srv.counters.snapshot().duplicate_answered, 1);

    // Same identifier, new authenticator: a new request (RFC 5080 §2.2.2).
    let (req, _) = Nas::request(7, "alice", "right", SECRET);
    nas.send(&req).await;
    nas.recv(WAIT).await.unwrap();
    assert_eq!(srv.calls(), 2);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_while_in_flight_do_not_start_a_second_handler() {
    let srv = start(Options {
        slow: Duration::from_millis(800),
        ..Options::default()
    })
    .await;
    let nas = Nas::new(srv.addr).await;
    let (req, auth) = Nas::request(9, "slow", "x", SECRET);
    for _ in 0..5 {
        nas.send(&req).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let p = Nas::check(&nas.recv(WAIT).await.unwrap(), &auth);
    assert_eq!(p.code, Code::AccessAccept);
    assert!(
        nas.recv(Duration::from_millis(300)).await.is_none(),
        "one answer for one request"
    );
    assert_eq!(srv.calls(), 1);
    assert_eq!(srv.counters.snapshot().duplicate_in_flight, 4);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_handlers_run_concurrently() {
    let srv = start(Options {
        slow: Duration::from_millis(700),
        ..Options::default()
    })
    .await;
    let nas = Nas::new(srv.addr).await;
    let started = Instant::now();
    for id in 0..20u8 {
        nas.send(&Nas::request(id, "slow", "x", SECRET).0).await;
    }
    for _ in 0..20 {
        nas.recv(WAIT).await.unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(srv.calls(), 20);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_answer_expires_with_the_injected_clock() {
    let clock = Arc::new(ManualClock(Mutex::new(Instant::now())));
    let config = ServerConfig {
        dedup_window: Duration::from_secs(30),
        ..ServerConfig::default()
    };
    let srv = start(Options {
        config,
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await;
    let nas = Nas::new(srv.addr).await;
    let (req, _) = Nas::request(3, "alice", "right", SECRET);
    nas.send(&req).await;
    nas.recv(WAIT).await.unwrap();
    clock.advance(Duration::from_secs(29));
    nas.send(&req).await;
    nas.recv(WAIT).await.unwrap();
    assert_eq!(srv.calls(), 1);
    clock.advance(Duration::from_secs(2));
    nas.send(&req).await;
    nas.recv(WAIT).await.unwrap();
    assert_eq!(srv.calls(), 2, "past the window the request is handled again");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_state_is_copied_in_order_and_vsa_passes() {
    let srv = start(Options::default()).await;
    let nas = Nas::new(srv.addr).await;
    let auth: [u8; 16] = rand::random();
    let mut p = Packet::new(Code::AccessRequest, 4, auth);
    p.attributes.push(Attribute::new(attr::USER_NAME, "alice"));
    p.attributes.push(Attribute::new(attr::PROXY_STATE, "first"));
    let hidden = vigil_radius::hide_password(b"right", SECRET.as_bytes(), &auth).unwrap();
    p.attributes.push(Attribute::new(attr::USER_PASSWORD, hidden));
    p.attributes.push(Attribute::vendor_specific(311, &[1, 3, 7]));
    p.attributes.push(Attribute::new(attr::PROXY_STATE, "second"));
    nas.send(&sign_request(&p, SECRET.as_bytes()).unwrap()).await;
    let r = Nas::check(&nas.recv(WAIT).await.unwrap(), &auth);
    assert_eq!(r.code, Code::AccessAccept);
    let states: Vec<&[u8]> = r.attributes_of(attr::PROXY_STATE).collect();
    assert_eq!(states, vec![&b"first"[..], &b"second"[..]]);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_packets_are_dropped_counted_and_survived() {
    let srv = start(Options::default()).await;
    let nas = Nas::new(srv.addr).await;
    // Garbage, a truncated packet, a response code, a wrong secret, no Message-Authenticator.
    nas.send(b"\x01").await;
    let (good, _) = Nas::request(1, "alice", "right", SECRET);
    nas.send(&good[..good.len() - 3]).await;
    let mut accept = good.clone();
    accept[0] = 2;
    nas.send(&accept).await;
    nas.send(&Nas::request(2, "alice", "right", "not-the-secret").0).await;
    let mut p = Packet::new(Code::AccessRequest, 3, [1; 16]);
    p.attributes.push(Attribute::new(attr::USER_NAME, "alice"));
    nas.send(&p.encode().unwrap()).await;
    let mut tampered = good.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    nas.send(&tampered).await;
    assert!(nas.recv(Duration::from_millis(500)).await.is_none());

    // Still serving.
    let (req, auth) = Nas::request(5, "alice", "right", SECRET);
    nas.send(&req).await;
    Nas::check(&nas.recv(WAIT).await.unwrap(), &auth);
    let c = srv.counters.snapshot();
    assert_eq!(c.malformed, 3);
    assert_eq!(c.bad_message_authenticator, 2);
    assert_eq!(c.missing_message_authenticator, 1);
    assert_eq!(c.received, 7);
    assert_eq!(srv.counters.dropped(), 6);
    assert_eq!(srv.calls(), 1);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_source_is_dropped() {
    let clients = vigil_radius::StaticClients::new().with(
        "192.0.2.0/24".parse().unwrap(),
        vigil_radius::RadiusClient {
            id: "elsewhere".into(),
            secret: vigil_radius::SharedSecret::new(SECRET),
        },
    );
    let srv = start(Options {
        clients,
        ..Options::default()
    })
    .await;
    let nas = Nas::new(srv.addr).await;
    nas.send(&Nas::request(1, "alice", "right", SECRET).0).await;
    assert!(nas.recv(Duration::from_millis(500)).await.is_none());
    assert_eq!(srv.counters.snapshot().unknown_client, 1);
    assert_eq!(srv.calls(), 0);
    srv.stop().await;
}

/// Waits until `count` of the server's counters reaches `n`.
async fn until_counted(srv: &Running, what: &str, n: u64, count: fn(&CountersSnapshot) -> u64) {
    vigil_testkit::wait_until(WAIT, &format!("{what} counted"), || async move {
        (count(&srv.counters.snapshot()) >= n).then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_timeout_sends_nothing_and_frees_the_request() {
    let config = ServerConfig {
        handler_timeout: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let srv = start(Options {
        config,
        ..Options::default()
    })
    .await;
    let nas = Nas::new(srv.addr).await;
    let (req, _) = Nas::request(1, "stuck", "x", SECRET);
    // Each retransmission only once the try before it has timed out, which
    // a loaded box may take longer to notice than the timeout says.
    let timeouts = |n| until_counted(&srv, "the handler's timeout", n, |c| c.handler_timeouts);
    nas.send(&req).await;
    assert!(nas.recv(Duration::from_millis(600)).await.is_none());
    timeouts(1).await;
    nas.send(&req).await;
    assert!(nas.recv(Duration::from_millis(600)).await.is_none());
    timeouts(2).await;
    assert_eq!(srv.calls(), 2, "an abandoned request is handled afresh");
    assert_eq!(srv.counters.snapshot().handler_timeouts, 2);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_handler_is_counted_and_does_not_wedge_the_request() {
    let srv = start(Options::default()).await;
    let nas = Nas::new(srv.addr).await;
    let (req, _) = Nas::request(1, "panic", "x", SECRET);
    // Each retransmission only once the try before it has failed: sent
    // while that one is still in flight (a slow box), it is rightly dropped.
    let failures = |n| until_counted(&srv, "the handler's failure", n, |c| c.handler_failures);
    nas.send(&req).await;
    assert!(nas.recv(Duration::from_millis(300)).await.is_none());
    failures(1).await;
    nas.send(&req).await;
    assert!(nas.recv(Duration::from_millis(300)).await.is_none());
    failures(2).await;
    assert_eq!(
        srv.calls(),
        2,
        "the retransmission is handled again, not dropped as in flight"
    );
    assert_eq!(srv.counters.snapshot().handler_failures, 2);
    let (ok, auth) = Nas::request(2, "alice", "right", SECRET);
    nas.send(&ok).await;
    Nas::check(&nas.recv(WAIT).await.unwrap(), &auth);
    srv.stop().await;
}
