//! The signed fraud webhook end to end: a user reports fraud by SMS reply,
//! challenge publishes `vigil.fraud.reported`, the gateway posts a signed
//! notification to a receiver in this test that fails twice and then
//! accepts, and a redelivered event notifies nobody twice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{Arc, Mutex, atomic::Ordering::SeqCst},
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use vigil_e2e::{Stack, StackOptions, Tenant};
use vigil_proto::v1::{
    AuthenticateRequest, Decision, Factor, GetProviderRequest, ListWebhookDeliveriesRequest,
    RotateWebhookSecretRequest, UpdateProviderRequest,
};
use vigil_testkit::wait_until;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Seen {
    id: String,
    body: String,
    signature_valid: bool,
    answered: u16,
}

/// A webhook receiver that checks Standard Webhooks signatures on its own
/// and answers 500 to the first `fail_first` requests; the first
/// `hang_first` it never answers at all.
#[derive(Clone)]
struct Receiver {
    secret: Arc<Mutex<String>>,
    fail_first: usize,
    hang_first: Arc<std::sync::atomic::AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let hang = receiver
        .hang_first
        .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if hang {
        std::future::pending::<()>().await;
    }
    let id = header(&headers, "webhook-id").to_owned();
    let timestamp = header(&headers, "webhook-timestamp");
    let body = String::from_utf8_lossy(&body).into_owned();
    let secret = receiver.secret.lock().unwrap().clone();
    let key = STANDARD.decode(secret.trim_start_matches("whsec_")).unwrap_or_default();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    // The header may carry several space-separated signatures.
    let signature_valid = !key.is_empty() && header(&headers, "webhook-signature").split(' ').any(|s| s == expected);
    let mut seen = receiver.seen.lock().unwrap();
    let answered = if !signature_valid {
        StatusCode::UNAUTHORIZED
    } else if seen.len() < receiver.fail_first {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    };
    seen.push(Seen {
        id,
        body,
        signature_valid,
        answered: answered.as_u16(),
    });
    answered
}

async fn start_receiver(fail_first: usize, hang_first: usize) -> (Receiver, String) {
    let receiver = Receiver {
        secret: Arc::default(),
        fail_first,
        hang_first: Arc::new(hang_first.into()),
        seen: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/vigil", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/hooks/vigil", post(receive))
        .with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (receiver, url)
}

#[tokio::test(flavor = "multi_thread")]
async fn fraud_reports_reach_the_webhook_signed_retried_and_once() {
    let stack = Stack::start(StackOptions {
        env: vec![
            ("auth-gateway", "VIGIL_WEBHOOK_RETRY_BASE_MS", "100".into()),
            ("auth-gateway", "VIGIL_WEBHOOK_TIMEOUT_MS", "500".into()),
            ("auth-gateway", "VIGIL_WEBHOOK_MAX_ATTEMPTS", "20".into()),
        ],
        ..Default::default()
    })
    .await
    .expect("stack starts");
    if let Err(error) = fraud_webhook(&stack).await {
        panic!("{error:#}\n\n{}", stack.log_tails(40));
    }
    if let Err(error) = unsigned_never_and_timeouts_retried(&stack).await {
        panic!("{error:#}\n\n{}", stack.log_tails(40));
    }
}

/// The user of `tenant` with `phone` reports fraud by SMS; the challenge id.
async fn report_fraud(stack: &Stack, tenant: &mut Tenant, username: &str, phone: &str) -> anyhow::Result<String> {
    let started = tenant
        .agent
        .authenticate(AuthenticateRequest {
            username: username.into(),
            factor: Factor::Sms as i32,
            client_ip: "192.0.2.10".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    anyhow::ensure!(started.decision() == Decision::Challenge, "{started:?}");
    stack.sms_code(phone, 1).await?;
    reqwest::Client::new()
        .post(format!("{}/sim/phones/{phone}/reply", stack.sim_url))
        .json(&serde_json::json!({"body": "FRAUD"}))
        .send()
        .await?
        .error_for_status()?;
    Ok(started.challenge_id)
}

/// Without a secret nothing is sent (never unsigned); a receiver that does
/// not answer in time is tried again.
async fn unsigned_never_and_timeouts_retried(stack: &Stack) -> anyhow::Result<()> {
    let phone = "+15550400002";
    let (receiver, url) = start_receiver(0, 1).await;
    let mut beta = Tenant::create(stack, "Beta").await?;
    beta.add_user("bob", phone).await?;
    beta.admin
        .update_provider(UpdateProviderRequest {
            provider_id: beta.provider_id.clone(),
            fraud_webhook_url: Some(url),
            ..Default::default()
        })
        .await?;
    report_fraud(stack, &mut beta, "bob", phone).await?;
    let unsigned = wait_until(Duration::from_secs(15), "an attempt without a secret", || async {
        let recorded = deliveries(&beta.admin, &beta.provider_id).await?;
        anyhow::Ok(recorded.into_iter().next().filter(|d| d.attempts >= 1))
    })
    .await?;
    assert_eq!(unsigned.status, "pending", "{unsigned:?}");
    assert!(unsigned.last_error.contains("secret"), "{unsigned:?}");
    assert!(receiver.seen.lock().unwrap().is_empty(), "nothing is sent unsigned");

    // With a secret the next attempt goes out; the receiver does not answer
    // it in time, and the one after is taken.
    let secret = beta
        .admin
        .rotate_webhook_secret(RotateWebhookSecretRequest {
            provider_id: beta.provider_id.clone(),
        })
        .await?
        .into_inner()
        .secret;
    *receiver.secret.lock().unwrap() = secret;
    let delivered = wait_until(Duration::from_secs(20), "the webhook to take it", || async {
        let recorded = deliveries(&beta.admin, &beta.provider_id).await?;
        anyhow::Ok(recorded.into_iter().next().filter(|d| d.status == "delivered"))
    })
    .await?;
    assert_eq!(delivered.last_error, "timed out", "{delivered:?}");
    assert_eq!(receiver.hang_first.load(SeqCst), 0, "the hanging attempt was made");
    let seen = receiver.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].signature_valid && seen[0].answered == 204);
    Ok(())
}

async fn fraud_webhook(stack: &Stack) -> anyhow::Result<()> {
    let phone = "+15550400001";
    let (receiver, url) = start_receiver(2, 0).await;
    let mut acme = Tenant::create(stack, "Acme").await?;
    acme.add_user("alice", phone).await?;
    acme.admin
        .update_provider(UpdateProviderRequest {
            provider_id: acme.provider_id.clone(),
            fraud_webhook_url: Some(url),
            ..Default::default()
        })
        .await?;
    let secret = acme
        .admin
        .rotate_webhook_secret(RotateWebhookSecretRequest {
            provider_id: acme.provider_id.clone(),
        })
        .await?
        .into_inner()
        .secret;
    assert!(secret.starts_with("whsec_"), "{secret}");
    *receiver.secret.lock().unwrap() = secret;
    let provider = acme
        .admin
        .get_provider(GetProviderRequest {
            provider_id: acme.provider_id.clone(),
        })
        .await?
        .into_inner();
    assert!(provider.has_webhook_secret);
    assert!(
        !format!("{provider:?}").contains("whsec_"),
        "the secret is never shown again"
    );

    // alice answers the SMS with FRAUD.
    let challenge_id = report_fraud(stack, &mut acme, "alice", phone).await?;

    // Two 500s, then accepted: three signed attempts of one notification.
    let seen = wait_until(Duration::from_secs(20), "the webhook to accept", || async {
        let seen = receiver.seen.lock().unwrap().clone();
        anyhow::Ok(seen.iter().any(|s| s.answered == 204).then_some(seen))
    })
    .await?;
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().all(|s| s.signature_valid), "{seen:?}");
    assert!(seen.iter().all(|s| s.id == seen[0].id && s.body == seen[0].body));
    assert_eq!(seen.iter().map(|s| s.answered).collect::<Vec<_>>(), vec![500, 500, 204]);
    let body: serde_json::Value = serde_json::from_str(&seen[0].body)?;
    assert_eq!(body["type"], "fraud.reported");
    assert_eq!(body["data"]["id"], seen[0].id);
    assert_eq!(body["data"]["challenge_id"], challenge_id);
    assert_eq!(body["data"]["provider_id"], acme.provider_id);
    assert_eq!(body["data"]["factor"], "sms");
    assert_eq!(body["data"]["user_blocked"], true);

    let recorded = deliveries(&acme.admin, &acme.provider_id).await?;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(
        (
            recorded[0].status.as_str(),
            recorded[0].attempts,
            recorded[0].last_error.as_str()
        ),
        ("delivered", 3, "HTTP 500")
    );
    assert_eq!(recorded[0].id, seen[0].id);

    // The same fraud event delivered again (as after a lost ack): the
    // consumer takes it and nobody is notified twice.
    let nats = async_nats::connect(stack.nats.url()).await?;
    let js = async_nats::jetstream::new(nats);
    let stream = js.get_stream("VIGIL_FRAUD").await?;
    let original = stream.get_last_raw_message_by_subject("vigil.fraud.reported").await?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "redelivered-by-the-test");
    let ack = js
        .publish_with_headers("vigil.fraud.reported", headers, original.payload.clone())
        .await?
        .await?;
    assert!(ack.sequence > original.sequence, "a second copy is in the stream");
    stack
        .wait_consumed("VIGIL_FRAUD", "vigil.fraud.reported", "gateway-fraud-webhook")
        .await?;
    assert_eq!(receiver.seen.lock().unwrap().len(), 3, "no further request");
    let recorded = deliveries(&acme.admin, &acme.provider_id).await?;
    assert_eq!((recorded.len(), recorded[0].attempts), (1, 3));

    // Operators see the same with the CLI.
    let listed = stack.vigil(&["providers", "webhook-deliveries", &acme.provider_id])?;
    assert_eq!(listed[0]["status"], "delivered", "{listed}");
    assert_eq!(listed[0]["attempts"], 3, "{listed}");
    Ok(())
}

async fn deliveries(
    admin: &vigil_e2e::Admin,
    provider_id: &str,
) -> anyhow::Result<Vec<vigil_proto::v1::WebhookDelivery>> {
    Ok(admin
        .clone()
        .list_webhook_deliveries(ListWebhookDeliveriesRequest {
            provider_id: provider_id.to_owned(),
            limit: 0,
        })
        .await?
        .into_inner()
        .deliveries)
}
