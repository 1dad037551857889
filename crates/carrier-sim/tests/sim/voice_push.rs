//! The Calls API with scriptable phones, and the push endpoint with devices.

use axum::body::Bytes;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, VerifyingKey};
use vigil_carrier_sim::DEVICE_SIGNATURE_HEADER;
use vigil_carrier_sim::control::{CallEntry, DeviceCreated, PushEntry};
use vigil_twilio::CreateCall;
use vigil_twilio::twiml::{Gather, Response};

use super::*;

/// Plays Vigil's call flow: `/voice` greets and gathers into
/// `/voice/gather`, which says goodbye; `/voice/status` takes the end.
async fn start_voice_receiver() -> (String, mpsc::UnboundedReceiver<Hook>) {
    async fn receive(
        State((base, tx)): State<(String, mpsc::UnboundedSender<Hook>)>,
        uri: Uri,
        headers: HeaderMap,
        Form(params): Form<Vec<(String, String)>>,
    ) -> (StatusCode, String) {
        let signature = headers
            .get(signature::HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let _ = tx.send(Hook {
            url: format!("{base}{uri}"),
            params,
            signature,
        });
        let twiml = match uri.path() {
            "/voice" => Response::new()
                .say("Hello from Vigil")
                .gather(&Gather {
                    action: format!("{base}/voice/gather"),
                    num_digits: 8,
                    finish_on_key: "#".into(),
                    timeout: 5,
                    prompt: "Enter your PIN".into(),
                })
                .render(),
            "/voice/gather" => Response::new().say("Goodbye").hangup().render(),
            _ => return (StatusCode::NO_CONTENT, String::new()),
        };
        (StatusCode::OK, twiml)
    }

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new()
        .route("/voice", post(receive))
        .route("/voice/gather", post(receive))
        .route("/voice/status", post(receive))
        .with_state((base.clone(), tx));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, rx)
}

fn call(base: &str) -> CreateCall {
    CreateCall {
        to: PHONE.into(),
        from: VIGIL_NUMBER.into(),
        url: format!("{base}/voice"),
        status_callback: Some(format!("{base}/voice/status")),
        timeout: Some(20),
    }
}

#[tokio::test]
async fn an_answering_phone_presses_its_keys_through_the_gather() {
    let sim = Sim::start(None).await;
    let (base, mut rx) = start_voice_receiver().await;
    let resp = sim
        .http
        .put(sim.url(&format!("/sim/phones/{PHONE}/voice")))
        .json(&json!({"action": "answer", "digits": "1234#", "duration_seconds": 21}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    let placed = sim.client().create_call(&call(&base)).await.unwrap();
    assert!(placed.sid.starts_with("CA"));
    assert_eq!(placed.status, "queued");

    let fetch = next_hook(&mut rx).await;
    assert!(fetch.url.ends_with("/voice") && fetch.verifies());
    assert_eq!(fetch.get("CallSid"), Some(placed.sid.as_str()));
    assert_eq!(fetch.get("CallStatus"), Some("in-progress"));
    let gather = next_hook(&mut rx).await;
    assert!(gather.url.ends_with("/voice/gather") && gather.verifies());
    assert_eq!(
        (gather.get("Digits"), gather.get("FinishedOnKey")),
        (Some("1234"), Some("#"))
    );
    let status = next_hook(&mut rx).await;
    assert!(status.url.ends_with("/voice/status") && status.verifies());
    assert_eq!(status.get("CallStatus"), Some("completed"));
    assert_eq!(status.get("CallDuration"), Some("21"));

    let calls: Vec<CallEntry> = sim
        .http
        .get(sim.url(&format!("/sim/calls/{PHONE}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].heard, ["Hello from Vigil", "Enter your PIN", "Goodbye"]);
    assert_eq!(calls[0].digits_sent.as_deref(), Some("1234"));
    assert_eq!(calls[0].status, "completed");
    assert_eq!(sim.stats().await.calls_placed, 1);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn busy_no_answer_and_hang_up_end_the_call() {
    let sim = Sim::start(None).await;
    for (action, status, fetched) in [
        ("busy", "busy", false),
        ("no_answer", "no-answer", false),
        ("fail", "failed", false),
        ("hang_up", "completed", true),
    ] {
        let (base, mut rx) = start_voice_receiver().await;
        sim.http
            .put(sim.url(&format!("/sim/phones/{PHONE}/voice")))
            .json(&json!({ "action": action }))
            .send()
            .await
            .unwrap();
        sim.client().create_call(&call(&base)).await.unwrap();
        if fetched {
            assert!(next_hook(&mut rx).await.url.ends_with("/voice"));
        }
        let end = next_hook(&mut rx).await;
        assert!(end.url.ends_with("/voice/status"), "{action}: {}", end.url);
        assert_eq!(end.get("CallStatus"), Some(status), "{action}");
        assert_eq!(end.get("CallDuration").is_some(), fetched, "{action}");
    }
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn calls_api_validates_and_takes_its_own_faults() {
    let sim = Sim::start(None).await;
    let client = sim.client();
    let mut bad = call("http://127.0.0.1:9");
    bad.url = String::new();
    let err = client.create_call(&bad).await.unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(400), Some(21205)));
    let mut bad = call("http://127.0.0.1:9");
    bad.to = "555".into();
    assert_eq!(client.create_call(&bad).await.unwrap_err().code(), Some(21217));

    let resp = sim
        .post_json("/sim/faults", json!({"fail_next": 1, "status": 503, "api": "calls"}))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    client.send_sms(&sms("unaffected", None)).await.unwrap();
    let err = client.create_call(&call("http://127.0.0.1:9")).await.unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert!(err.is_retryable());

    let resp = sim
        .http
        .put(sim.url(&format!("/sim/phones/{PHONE}/voice")))
        .json(&json!({"action": "answer", "digits": "12a#"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    sim.shutdown().await.unwrap();
}

/// Stand-in for Vigil's push answer endpoint: hands over body and signature.
async fn start_answer_receiver() -> (String, mpsc::UnboundedReceiver<(Bytes, Option<String>)>) {
    async fn receive(
        State(tx): State<mpsc::UnboundedSender<(Bytes, Option<String>)>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> StatusCode {
        let signature = headers
            .get(DEVICE_SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let _ = tx.send((body, signature));
        StatusCode::OK
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new().route("/answer", post(receive)).with_state(tx);
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, rx)
}

#[tokio::test]
async fn devices_sign_their_answers_to_pushes() {
    let sim = Sim::start(None).await;
    let (base, mut rx) = start_answer_receiver().await;
    let device: DeviceCreated = sim
        .post_json("/sim/devices", json!({"action": "approve", "pick": 47}))
        .await
        .json()
        .await
        .unwrap();
    let send = |token: &str, bearer: &str| {
        sim.http
            .post(sim.url("/v1/projects/vigil-test/messages:send"))
            .bearer_auth(bearer)
            .json(&json!({"message": {"token": token, "data": {
                "delivery_id": "dlv_1", "challenge_id": "chl_1", "text": "Approve?",
                "match_choices": "12,47,83", "callback_url": format!("{base}/answer"),
            }}}))
            .send()
    };
    let resp = send(&device.token, vigil_carrier_sim::DEFAULT_PUSH_TOKEN)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let name = resp.json::<Value>().await.unwrap()["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("projects/vigil-test/messages/"));

    let (body, signature) = tokio::time::timeout(WAIT, rx.recv()).await.unwrap().unwrap();
    let key = VerifyingKey::from_bytes(&STANDARD.decode(&device.public_key).unwrap().try_into().unwrap()).unwrap();
    let signature = Signature::from_slice(&STANDARD.decode(signature.unwrap()).unwrap()).unwrap();
    key.verify_strict(&body, &signature).unwrap();
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["answer"], "approve");
    assert_eq!(answer["matched_number"], 47);
    assert_eq!(answer["delivery_id"], "dlv_1");
    assert_eq!(answer["device_id"], device.device_id.as_str());

    let pushes: Vec<PushEntry> = sim
        .http
        .get(sim.url(&format!("/sim/devices/{}/pushes", device.device_id)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0].name, name);

    // Wrong bearer, unknown token, injected fault.
    let resp = send(&device.token, "wrong").await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = send("nobody", vigil_carrier_sim::DEFAULT_PUSH_TOKEN).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["details"][0]["errorCode"], "UNREGISTERED");
    sim.post_json("/sim/faults", json!({"fail_next": 1, "status": 503, "api": "push"}))
        .await;
    let resp = send(&device.token, vigil_carrier_sim::DEFAULT_PUSH_TOKEN)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);

    // A device told to ignore pushes stays silent.
    let resp = sim
        .http
        .put(sim.url(&format!("/sim/devices/{}/behaviour", device.device_id)))
        .json(&json!({"action": "ignore"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = send(&device.token, vigil_carrier_sim::DEFAULT_PUSH_TOKEN)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err()
    );
    let stats = sim.stats().await;
    assert_eq!(stats.pushes_accepted, 2);
    let resp = sim
        .http
        .put(sim.url("/sim/devices/dev_nope/behaviour"))
        .json(&json!({"action": "deny"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    sim.shutdown().await.unwrap();
}
