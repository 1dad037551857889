//! What operators see of a login: each service's Prometheus metrics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use vigil_e2e::{Stack, StackOptions, Tenant};
use vigil_proto::v1::{AuthenticateRequest, Decision, Factor, Reason, VerifyPasscodeRequest};
use vigil_testkit::wait_until;

type Labels<'a> = &'a [(&'a str, &'a str)];

/// The value of the sample `name{labels…}` in a Prometheus text exposition
/// (labels not given may take any value; the first matching line counts).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        let all_labels = labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        (metric == name && all_labels).then(|| value.parse().ok()).flatten()
    })
}

/// Waits until `service`'s `/metrics` has `name{labels}` equal to `want`.
async fn expect_metric(stack: &Stack, service: &str, name: &str, labels: &[(&str, &str)], want: f64) {
    let what = format!("{service}: {name}{labels:?} = {want}");
    let seen = wait_until(Duration::from_secs(15), &what, || async {
        let text = stack.metrics(service).await?;
        anyhow::Ok((sample(&text, name, labels) == Some(want)).then_some(()))
    })
    .await;
    if let Err(error) = seen {
        let text = stack.metrics(service).await.unwrap_or_default();
        panic!("{error:#}\n---- {service} /metrics\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sms_login_shows_in_every_services_metrics() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack starts");
    let phone = "+15550100031";
    let mut acme = Tenant::create(&stack, "Acme").await.unwrap();
    acme.add_user("alice", phone).await.unwrap();
    let started = acme
        .agent
        .authenticate(AuthenticateRequest {
            username: "alice".into(),
            factor: Factor::Sms as i32,
            client_ip: "192.0.2.10".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.decision(), Decision::Challenge, "{started:?}");
    let code = stack.sms_code(phone, 1).await.unwrap();
    let approved = acme
        .agent
        .verify_passcode(VerifyPasscodeRequest {
            challenge_id: started.challenge_id.clone(),
            passcode: code,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(approved.reason(), Reason::Approved, "{approved:?}");

    let sms_approved: Labels = &[("factor", "sms"), ("state", "approved")];
    let once: [(&str, &str, Labels); 8] = [
        // auth-gateway: one decision per answer, by reason.
        (
            "auth-gateway",
            "vigil_decisions_total",
            &[("api", "grpc"), ("decision", "challenge"), ("reason", "enrolled")],
        ),
        (
            "auth-gateway",
            "vigil_decisions_total",
            &[("api", "grpc"), ("decision", "allow"), ("reason", "approved")],
        ),
        // challenge: the outcome and its latency, by factor.
        ("challenge", "vigil_challenge_outcomes_total", sms_approved),
        ("challenge", "vigil_challenge_duration_seconds_count", sms_approved),
        // telephony: the carrier's answer to the try, then the delivery's states.
        (
            "telephony",
            "vigil_delivery_attempts_total",
            &[("channel", "sms"), ("result", "accepted")],
        ),
        (
            "telephony",
            "vigil_deliveries_total",
            &[("channel", "sms"), ("state", "sent")],
        ),
        (
            "telephony",
            "vigil_deliveries_total",
            &[("channel", "sms"), ("state", "delivered")],
        ),
        // billing: the authentication metered once.
        (
            "billing",
            "vigil_billing_ledger_events_total",
            &[("kind", "authentication"), ("result", "metered")],
        ),
    ];
    for (service, name, labels) in once {
        expect_metric(&stack, service, name, labels, 1.0).await;
    }
    let text = stack.metrics("challenge").await.unwrap();
    let within_a_minute = [("factor", "sms"), ("state", "approved"), ("le", "60")];
    assert_eq!(
        sample(&text, "vigil_challenge_duration_seconds_bucket", &within_a_minute),
        Some(1.0),
        "a histogram with buckets, not a summary:\n{text}"
    );

    // Every durable consumer reports its lag; every outbox its backlog.
    for (service, durable) in [
        ("challenge", "challenge-delivery-status"),
        ("telephony", "telephony-delivery"),
        ("billing", "billing-usage"),
    ] {
        let text = stack.metrics(service).await.unwrap();
        let consumer = [("consumer", durable)];
        assert!(
            sample(&text, "vigil_consumer_pending_messages", &consumer).is_some(),
            "{service}: no lag for {durable}:\n{text}"
        );
    }
    for service in ["auth-gateway", "challenge", "telephony"] {
        let text = stack.metrics(service).await.unwrap();
        assert!(
            sample(&text, "vigil_outbox_backlog", &[]).is_some(),
            "{service}: no outbox backlog:\n{text}"
        );
    }
}
