//! End-to-end tests: the simulator runs in-process on a loopback port and is
//! driven through the real `vigil_twilio` client, with a small axum app playing
//! Vigil's webhooks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use axum::{Form, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use vigil_carrier_sim::control::{ControlErrorBody, InboxEntry, ReplyResponse, Stats};
use vigil_carrier_sim::{SimConfig, serve};
use vigil_twilio::{MessagesClient, SecretString, SendSms, TwilioError, Url, signature};

const SID: &str = "ACtest0001";
const TOKEN: &str = "test-token-42";
const VIGIL_NUMBER: &str = "+15550000001";
const PHONE: &str = "+15551112222";
const WAIT: Duration = Duration::from_secs(5);

// One test binary (link time); calls and push live beside it.
#[path = "sim/voice_push.rs"]
mod voice_push;

struct Sim {
    base: String,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Sim {
    async fn start(inbound_sms_url: Option<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cfg = SimConfig {
            account_sid: SID.into(),
            auth_token: TOKEN.into(),
            inbound_sms_url,
            status_delay: Duration::from_millis(10),
            ..SimConfig::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, cfg, async {
            let _ = stopped.await;
        }));
        Self {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            stop: Some(stop),
            task,
        }
    }

    fn client_with(&self, sid: &str, token: &str) -> MessagesClient {
        MessagesClient::new(
            Url::parse(&self.base).unwrap(),
            sid.into(),
            SecretString::from(token),
            self.http.clone(),
        )
    }

    fn client(&self) -> MessagesClient {
        self.client_with(SID, TOKEN)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn inbox(&self, number: &str) -> Vec<InboxEntry> {
        let resp = self
            .http
            .get(self.url(&format!("/sim/inbox/{number}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.unwrap()
    }

    async fn stats(&self) -> Stats {
        self.http
            .get(self.url("/sim/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn post_json(&self, path: &str, body: Value) -> reqwest::Response {
        self.http.post(self.url(path)).json(&body).send().await.unwrap()
    }

    async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap()
    }
}

fn sms(body: &str, status_callback: Option<String>) -> SendSms {
    SendSms {
        to: PHONE.into(),
        from: VIGIL_NUMBER.into(),
        body: body.into(),
        status_callback,
    }
}

/// A webhook request as Vigil would receive it.
#[derive(Debug)]
struct Hook {
    url: String,
    params: Vec<(String, String)>,
    signature: Option<String>,
}

impl Hook {
    fn get(&self, key: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn verifies(&self) -> bool {
        self.signature
            .as_deref()
            .is_some_and(|sig| signature::verify(TOKEN, &self.url, &self.params, sig))
    }
}

/// Stand-in for Vigil's webhooks: `/status` answers 200, `/inbound` 202 (so
/// tests can tell the simulator relays the receiver's status).
async fn start_receiver() -> (String, mpsc::UnboundedReceiver<Hook>) {
    async fn receive(
        State((base, tx)): State<(String, mpsc::UnboundedSender<Hook>)>,
        uri: Uri,
        headers: HeaderMap,
        Form(params): Form<Vec<(String, String)>>,
    ) -> StatusCode {
        let signature = headers
            .get(signature::HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let _ = tx.send(Hook {
            url: format!("{base}{uri}"),
            params,
            signature,
        });
        if uri.path() == "/inbound" {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        }
    }

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new()
        .route("/status", post(receive))
        .route("/inbound", post(receive))
        .with_state((base.clone(), tx));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, rx)
}

async fn next_hook(rx: &mut mpsc::UnboundedReceiver<Hook>) -> Hook {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("webhook not received in time")
        .expect("receiver closed")
}

/// A waiting inbox read returns when a newer message lands, not before, and
/// returns what is there when its wait runs out.
#[tokio::test]
async fn an_inbox_read_can_wait_for_the_next_message() {
    let sim = Sim::start(None).await;
    let client = sim.client();
    let first = client.send_sms(&sms("Your Vigil code is 111111", None)).await.unwrap();

    let read = |after: Option<String>, wait_ms: u64| {
        let request = sim.http.get(sim.url(&format!("/sim/inbox/{PHONE}")));
        let mut query = vec![("wait_ms", wait_ms.to_string())];
        query.extend(after.map(|sid| ("after", sid)));
        async move {
            let resp = request.query(&query).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            resp.json::<Vec<InboxEntry>>().await.unwrap()
        }
    };
    // Already newer than nothing: at once.
    let now = tokio::time::timeout(Duration::from_secs(1), read(None, 10_000))
        .await
        .unwrap();
    assert_eq!(now.len(), 1);
    // Nothing newer than the first: the read waits, and ends with the second.
    let waiting = tokio::spawn(read(Some(first.sid.clone()), 10_000));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "returned before a newer message arrived");
    let second = client.send_sms(&sms("Your Vigil code is 222222", None)).await.unwrap();
    let inbox = tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap();
    assert_eq!(inbox.last().unwrap().sid, second.sid);
    // Nothing arrives: the inbox as it is, once the wait is over.
    let started = std::time::Instant::now();
    let unchanged = read(Some(second.sid.clone()), 300).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(unchanged.len(), 2);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn sent_sms_lands_in_the_inbox_and_gets_delivered() {
    let sim = Sim::start(None).await;
    let client = sim.client();

    let msg = client.send_sms(&sms("Your Vigil code is 123456", None)).await.unwrap();
    assert!(msg.sid.starts_with("SM") && msg.sid.len() == 34, "sid {}", msg.sid);
    assert_eq!(msg.account_sid, SID);
    assert_eq!((msg.to.as_str(), msg.from.as_str()), (PHONE, VIGIL_NUMBER));
    assert_eq!(msg.status, "queued");
    assert_eq!(msg.num_segments, "1");
    assert_eq!(msg.error_code, None);

    let inbox = sim.inbox(PHONE).await;
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].sid, msg.sid);
    assert_eq!(inbox[0].body, "Your Vigil code is 123456");
    assert_eq!(inbox[0].from, VIGIL_NUMBER);
    assert_eq!(inbox[0].num_segments, 1);

    // Status advances in the background even without a callback URL.
    let delivered = tokio::time::timeout(WAIT, async {
        loop {
            let fetched = client.fetch_message(&msg.sid).await.unwrap();
            if fetched.status == "delivered" {
                break fetched;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(delivered.sid, msg.sid);

    // A long non-GSM body is billed as several UCS-2 parts, oldest-first order.
    let long = client.send_sms(&sms(&"ж".repeat(100), None)).await.unwrap();
    assert_eq!(long.num_segments, "2");
    let inbox = sim.inbox(PHONE).await;
    assert_eq!(
        inbox.iter().map(|m| m.sid.as_str()).collect::<Vec<_>>(),
        [msg.sid.as_str(), long.sid.as_str()]
    );

    let resp = sim
        .http
        .delete(sim.url(&format!("/sim/inbox/{PHONE}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({ "cleared": 2 }));
    assert!(sim.inbox(PHONE).await.is_empty());

    let err = client
        .fetch_message("SM00000000000000000000000000000000")
        .await
        .unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(404), Some(20404)));

    assert_eq!(
        sim.stats().await,
        Stats {
            messages_accepted: 2,
            requests_failed: 1,
            ..Stats::default()
        }
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn wrong_credentials_and_account_are_rejected() {
    let sim = Sim::start(None).await;

    let err = sim
        .client_with(SID, "wrong-token")
        .send_sms(&sms("hi", None))
        .await
        .unwrap_err();
    match &err {
        TwilioError::Api { status, code, .. } => assert_eq!((*status, *code), (401, Some(20003))),
        other => panic!("expected 401, got {other:?}"),
    }
    assert!(!err.is_retryable());

    // Right credentials, someone else's account in the path.
    let resp = sim
        .http
        .post(sim.url("/2010-04-01/Accounts/ACsomeoneelse/Messages.json"))
        .basic_auth(SID, Some(TOKEN))
        .form(&[("To", PHONE), ("From", VIGIL_NUMBER), ("Body", "hi")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], 20404);
    assert_eq!(body["status"], 404);

    assert!(sim.inbox(PHONE).await.is_empty());
    assert_eq!(sim.stats().await.requests_failed, 2);
}

#[tokio::test]
async fn invalid_messages_get_twilio_error_codes() {
    let sim = Sim::start(None).await;
    let client = sim.client();

    let mut bad_to = sms("hi", None);
    bad_to.to = "5551112222".into();
    let err = client.send_sms(&bad_to).await.unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(400), Some(21211)));
    assert!(!err.is_retryable());

    let err = client.send_sms(&sms("", None)).await.unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(400), Some(21602)));

    let resp = sim
        .http
        .post(sim.url(&format!("/2010-04-01/Accounts/{SID}/Messages.json")))
        .basic_auth(SID, Some(TOKEN))
        .form(&[("From", VIGIL_NUMBER), ("Body", "hi")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], 21604);

    // Not a form at all.
    let resp = sim
        .http
        .post(sim.url(&format!("/2010-04-01/Accounts/{SID}/Messages.json")))
        .basic_auth(SID, Some(TOKEN))
        .json(&json!({ "To": PHONE }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(resp.json::<Value>().await.unwrap()["message"].is_string());

    assert_eq!(sim.stats().await.messages_accepted, 0);
}

#[tokio::test]
async fn status_callbacks_are_signed_and_ordered() {
    let sim = Sim::start(None).await;
    let (receiver, mut hooks) = start_receiver().await;
    // A query string is part of what Twilio signs.
    let callback = format!("{receiver}/status?tenant=acme&attempt=1");

    let msg = sim
        .client()
        .send_sms(&sms("code 654321", Some(callback.clone())))
        .await
        .unwrap();

    for expected in ["sent", "delivered"] {
        let hook = next_hook(&mut hooks).await;
        assert_eq!(hook.url, callback);
        assert!(hook.verifies(), "bad signature on {expected} callback: {hook:?}");
        assert_eq!(hook.get("MessageStatus"), Some(expected));
        assert_eq!(hook.get("MessageSid"), Some(msg.sid.as_str()));
        assert_eq!(hook.get("AccountSid"), Some(SID));
        assert_eq!(hook.get("To"), Some(PHONE));
        assert_eq!(hook.get("From"), Some(VIGIL_NUMBER));
        assert_eq!(hook.get("ErrorCode"), None);

        // Any change to what was posted breaks the signature.
        let mut tampered = hook.params.clone();
        for (k, v) in &mut tampered {
            if k == "MessageStatus" {
                *v = "failed".into();
            }
        }
        let sig = hook.signature.as_deref().unwrap();
        assert!(!signature::verify(TOKEN, &hook.url, &tampered, sig));
        assert!(!signature::verify("other-token", &hook.url, &hook.params, sig));
    }
}

#[tokio::test]
async fn phone_reply_posts_signed_inbound_sms() {
    let (receiver, mut hooks) = start_receiver().await;
    let inbound_url = format!("{receiver}/inbound");
    let sim = Sim::start(Some(inbound_url.clone())).await;

    // Nothing received yet, so nobody to reply to.
    let resp = sim
        .post_json(&format!("/sim/phones/{PHONE}/reply"), json!({ "body": "YES" }))
        .await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let err: ControlErrorBody = resp.json().await.unwrap();
    assert!(err.error.contains("nothing to reply to"), "{}", err.error);

    sim.client()
        .send_sms(&sms("Approve sign-in? Reply YES", None))
        .await
        .unwrap();
    let resp = sim
        .post_json(&format!("/sim/phones/{PHONE}/reply"), json!({ "body": "YES" }))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let reply: ReplyResponse = resp.json().await.unwrap();
    assert_eq!(reply.webhook_status, 202);
    assert!(reply.message_sid.starts_with("SM"));

    let hook = next_hook(&mut hooks).await;
    assert_eq!(hook.url, inbound_url);
    assert!(hook.verifies(), "bad signature on inbound SMS: {hook:?}");
    assert_eq!(hook.get("MessageSid"), Some(reply.message_sid.as_str()));
    assert_eq!(hook.get("AccountSid"), Some(SID));
    assert_eq!(hook.get("From"), Some(PHONE));
    assert_eq!(hook.get("To"), Some(VIGIL_NUMBER));
    assert_eq!(hook.get("Body"), Some("YES"));
    assert_eq!(hook.get("NumSegments"), Some("1"));

    // An explicit recipient overrides the inbox's latest sender.
    let resp = sim
        .post_json(
            "/sim/phones/+15553334444/reply",
            json!({ "body": "STOP", "to": "+15559990000" }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let hook = next_hook(&mut hooks).await;
    assert_eq!(
        (hook.get("From"), hook.get("To")),
        (Some("+15553334444"), Some("+15559990000"))
    );
    assert!(hook.verifies());
}

#[tokio::test]
async fn reply_without_inbound_url_is_a_conflict() {
    let sim = Sim::start(None).await;
    let resp = sim
        .post_json(
            &format!("/sim/phones/{PHONE}/reply"),
            json!({ "body": "YES", "to": VIGIL_NUMBER }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let err: ControlErrorBody = resp.json().await.unwrap();
    assert!(err.error.contains("VIGIL_SIM_INBOUND_SMS_URL"), "{}", err.error);
}

#[tokio::test]
async fn faults_fail_the_next_calls_with_a_retryable_error() {
    let sim = Sim::start(None).await;
    let client = sim.client();

    let resp = sim
        .post_json("/sim/faults", json!({ "fail_next": 2, "status": 500 }))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);

    for _ in 0..2 {
        let err = client.send_sms(&sms("hi", None)).await.unwrap_err();
        assert_eq!(err.status(), Some(500));
        assert!(err.is_retryable(), "{err}");
    }
    client.send_sms(&sms("hi", None)).await.unwrap();

    let resp = sim
        .post_json("/sim/faults", json!({ "fail_next": 1, "status": 429 }))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let err = client.send_sms(&sms("hi", None)).await.unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(429), Some(20429)));
    assert!(err.is_retryable());

    let resp = sim
        .post_json("/sim/faults", json!({ "fail_next": 1, "status": 200 }))
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    assert_eq!(
        sim.stats().await,
        Stats {
            messages_accepted: 1,
            requests_failed: 3,
            ..Stats::default()
        }
    );
}

#[tokio::test]
async fn unreachable_api_is_a_retryable_transport_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    drop(listener);
    let client = MessagesClient::new(
        Url::parse(&format!("http://{addr}")).unwrap(),
        SID.into(),
        SecretString::from(TOKEN),
        reqwest::Client::new(),
    );
    let err = client.send_sms(&sms("hi", None)).await.unwrap_err();
    assert!(matches!(err, TwilioError::Transport(_)), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let sim = Sim::start(None).await;

    for path in ["/healthz", "/readyz"] {
        let resp = sim.http.get(sim.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.text().await.unwrap(), "ok");
    }

    // Malformed JSON.
    let resp = sim
        .http
        .post(sim.url("/sim/faults"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let err: ControlErrorBody = resp.json().await.unwrap();
    assert_eq!(err.status, 400);
    assert!(!err.error.is_empty());

    // Unknown field (typo guard).
    let resp = sim.post_json("/sim/faults", json!({ "fail_nxt": 1 })).await;
    assert!(resp.status().is_client_error());
    assert!(resp.json::<ControlErrorBody>().await.is_ok());

    // Unknown routes, in the error shape of the API aimed at.
    let resp = sim.http.get(sim.url("/nope")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(resp.json::<ControlErrorBody>().await.unwrap().error.contains("/nope"));
    let resp = sim
        .http
        .get(sim.url("/2010-04-01/Accounts/x/Recordings.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], 20404);

    // Wrong method.
    let resp = sim.http.put(sim.url("/sim/stats")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.json::<ControlErrorBody>().await.unwrap().status, 405);

    sim.shutdown().await.unwrap();
}
