//! Request/reply against a real nats-server: callers' deadlines reach the
//! server, which drops what its caller gave up on and caps its handlers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use prost::Message;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use vigil_bus::rpc::{self, CallError, DEADLINE_HEADER, ServeOptions};
use vigil_proto::rpc::{StatusReply, StatusRequest};
use vigil_testkit::{NatsServer, wait_until};

const SUBJECT: &str = "test.rpc.status";
/// A request the handler answers at once without counting it, to learn that
/// the server is subscribed.
const PROBE: &str = "probe";

/// A served subject whose handler counts the requests it starts and, once
/// started, waits for a permit of `gate`.
struct Served {
    _nats: NatsServer,
    client: async_nats::Client,
    started: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
    most_running: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

impl Served {
    /// `gate_open`: permits the gate starts with.
    async fn start(max_in_flight: usize, gate_open: usize) -> Served {
        vigil_testkit::init_test_logging();
        let nats = NatsServer::start().await.expect("nats-server starts");
        let client = async_nats::connect(nats.url()).await.expect("connects");
        let started = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        let most_running = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Semaphore::new(gate_open));
        let shutdown = CancellationToken::new();
        let handler = {
            let (started, running, most_running, gate) =
                (started.clone(), running.clone(), most_running.clone(), gate.clone());
            move |request: StatusRequest| {
                let (started, running, most_running, gate) =
                    (started.clone(), running.clone(), most_running.clone(), gate.clone());
                async move {
                    if request.challenge_id != PROBE {
                        started.fetch_add(1, Ordering::SeqCst);
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most_running.fetch_max(now, Ordering::SeqCst);
                        gate.acquire().await.expect("gate stays open").forget();
                        running.fetch_sub(1, Ordering::SeqCst);
                    }
                    StatusReply {
                        message: request.challenge_id,
                        ..Default::default()
                    }
                }
            }
        };
        let server = tokio::spawn(rpc::serve_with(
            client.clone(),
            SUBJECT,
            "test",
            ServeOptions { max_in_flight },
            handler,
            shutdown.clone(),
        ));
        let server = tokio::spawn(async move {
            server.await.expect("serve does not panic").expect("serve subscribes");
        });
        let probe = StatusRequest {
            challenge_id: PROBE.into(),
            ..Default::default()
        };
        wait_until(Duration::from_secs(10), "the server subscribes", || {
            let client = client.clone();
            let probe = probe.clone();
            async move {
                rpc::call::<_, StatusReply>(&client, SUBJECT, &probe, Duration::from_secs(1))
                    .await
                    .ok()
            }
        })
        .await
        .expect("server answers");
        Served {
            _nats: nats,
            client,
            started,
            running,
            most_running,
            gate,
            shutdown,
            server,
        }
    }

    fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }

    /// Calls with `timeout` in a task of its own.
    fn call(&self, id: &str, timeout: Duration) -> tokio::task::JoinHandle<Result<StatusReply, CallError>> {
        let client = self.client.clone();
        let request = StatusRequest {
            challenge_id: id.into(),
            ..Default::default()
        };
        tokio::spawn(async move { rpc::call(&client, SUBJECT, &request, timeout).await })
    }

    /// A request sent by hand, with `deadline` (unix ms) as its header if given.
    async fn raw(&self, id: &str, deadline: Option<u64>) -> Result<async_nats::Message, async_nats::RequestError> {
        let mut headers = async_nats::HeaderMap::new();
        if let Some(deadline) = deadline {
            headers.insert(DEADLINE_HEADER, deadline.to_string());
        }
        let request = StatusRequest {
            challenge_id: id.into(),
            ..Default::default()
        };
        let request = async_nats::Request::new()
            .payload(request.encode_to_vec().into())
            .headers(headers)
            .timeout(Some(Duration::from_millis(500)));
        self.client.send_request(SUBJECT, request).await
    }

    async fn wait_started(&self, n: usize) {
        wait_until(Duration::from_secs(10), &format!("{n} handlers started"), || async {
            (self.started() >= n).then_some(())
        })
        .await
        .expect("handlers start");
    }

    async fn stop(self) {
        self.gate.add_permits(1000);
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.server)
            .await
            .expect("serve returns on shutdown")
            .expect("serve task");
    }
}

fn unix_millis_from_now(offset_ms: i64) -> u64 {
    let now = u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap();
    now.checked_add_signed(offset_ms).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_past_its_deadline_is_never_handled() {
    let served = Served::start(8, 1000).await;

    let expired = served.raw("late", Some(unix_millis_from_now(-1000))).await;
    let error = expired.expect_err("an expired request gets no reply");
    assert_eq!(error.kind(), async_nats::RequestErrorKind::TimedOut, "{error}");
    assert_eq!(
        served.started(),
        0,
        "the handler ran for a request its caller gave up on"
    );

    // Served after the expired one on the same subscription, so by now that
    // one was read, and dropped.
    let reply = served
        .call("on-time", Duration::from_secs(5))
        .await
        .unwrap()
        .expect("answered");
    assert_eq!(reply.message, "on-time");
    assert_eq!(served.started(), 1);
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_with_time_left_or_no_deadline_are_handled() {
    let served = Served::start(8, 1000).await;

    let reply = served
        .call("with-time", Duration::from_secs(5))
        .await
        .unwrap()
        .expect("answered");
    assert_eq!(reply.message, "with-time");
    let reply = served
        .raw("future", Some(unix_millis_from_now(5000)))
        .await
        .expect("answered");
    assert_eq!(StatusReply::decode(reply.payload).unwrap().message, "future");
    // From a caller that predates deadlines: served as before.
    let reply = served.raw("no-deadline", None).await.expect("answered");
    assert_eq!(StatusReply::decode(reply.payload).unwrap().message, "no-deadline");
    assert_eq!(served.started(), 3);
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn call_sends_its_deadline() {
    let nats = NatsServer::start().await.expect("nats-server starts");
    let client = async_nats::connect(nats.url()).await.expect("connects");
    let mut requests = client.subscribe("test.rpc.deadline").await.unwrap();
    client.flush().await.unwrap();
    let before = unix_millis_from_now(0);
    let caller = tokio::spawn({
        let client = client.clone();
        async move {
            rpc::call::<_, StatusReply>(
                &client,
                "test.rpc.deadline",
                &StatusRequest::default(),
                Duration::from_millis(3000),
            )
            .await
        }
    });
    let request = tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut requests))
        .await
        .expect("the request arrives")
        .unwrap();
    let after = unix_millis_from_now(0);
    let deadline: u64 = request
        .headers
        .as_ref()
        .and_then(|h| h.get(DEADLINE_HEADER))
        .expect("the request carries its deadline")
        .as_str()
        .parse()
        .expect("unix milliseconds");
    assert!(
        (before + 3000..=after + 3000).contains(&deadline),
        "deadline {deadline} not 3 s after the call ({before}..{after})"
    );
    client
        .publish(request.reply.unwrap(), StatusReply::default().encode_to_vec().into())
        .await
        .unwrap();
    caller.await.unwrap().expect("the reply arrives");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_in_flight_cap_holds() {
    let served = Served::start(2, 0).await;

    let calls: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|id| served.call(id, Duration::from_secs(20)))
        .collect();
    served.wait_started(2).await;
    // Time for a third handler to start, were the cap not holding.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(served.started(), 2, "a third handler started past the cap of 2");
    assert_eq!(served.running.load(Ordering::SeqCst), 2);

    // One finishes: the waiting request takes its place.
    served.gate.add_permits(1);
    served.wait_started(3).await;
    served.gate.add_permits(2);
    for call in calls {
        call.await.unwrap().expect("every request is answered in the end");
    }
    assert_eq!(served.most_running.load(Ordering::SeqCst), 2);
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_that_waits_for_a_handler_past_its_deadline_is_dropped() {
    let served = Served::start(1, 0).await;

    let first = served.call("first", Duration::from_secs(20));
    served.wait_started(1).await;
    let late = served.call("late", Duration::from_millis(300)).await.unwrap();
    assert!(matches!(late, Err(CallError::TimedOut(_))), "{late:?}");

    // The handler frees up after the caller of "late" has given up: "late"
    // must not run then.
    served.gate.add_permits(1);
    first.await.unwrap().expect("first is answered");
    let after = served.call("after", Duration::from_secs(5));
    served.gate.add_permits(1);
    assert_eq!(after.await.unwrap().expect("after is answered").message, "after");
    assert_eq!(
        served.started(),
        2,
        "the handler ran for a request whose caller had given up"
    );
    served.stop().await;
}
