//! What operators see: each service's Prometheus metrics, one OpenTelemetry
//! trace across all four services, readiness that follows the dependencies,
//! and a SIGTERM with a login in flight that loses nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeSet,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use vigil_agent_auth::methods;
use vigil_e2e::{Stack, StackOptions, Tenant, collector::Collector};
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

/// Acme, with alice on `phone`.
async fn acme_with_alice(stack: &Stack, phone: &str) -> Tenant {
    let mut acme = Tenant::create(stack, "Acme").await.unwrap();
    acme.add_user("alice", phone).await.unwrap();
    acme
}

/// alice logs in by SMS.
fn sms_login() -> AuthenticateRequest {
    AuthenticateRequest {
        username: "alice".into(),
        factor: Factor::Sms as i32,
        client_ip: "192.0.2.10".into(),
        ..Default::default()
    }
}

/// Starts alice's SMS login; it must be challenged.
async fn start_sms_login(acme: &mut Tenant) -> String {
    let started = acme.agent.authenticate(sms_login()).await.unwrap().into_inner();
    assert_eq!(started.decision(), Decision::Challenge, "{started:?}");
    started.challenge_id
}

/// Types the code that reached `phone` into the challenge; it must approve.
async fn approve_with_the_sms_code(stack: &Stack, acme: &mut Tenant, phone: &str, challenge_id: String) {
    let code = stack.sms_code(phone, 1).await.unwrap();
    let approved = acme
        .agent
        .verify_passcode(VerifyPasscodeRequest {
            challenge_id,
            passcode: code,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(approved.reason(), Reason::Approved, "{approved:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sms_login_shows_in_every_services_metrics() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack starts");
    let phone = "+15550100031";
    let mut acme = acme_with_alice(&stack, phone).await;
    let challenge_id = start_sms_login(&mut acme).await;
    approve_with_the_sms_code(&stack, &mut acme, phone, challenge_id).await;

    let sms_approved: Labels = &[("factor", "sms"), ("state", "approved")];
    let start: Labels = &[("subject", "vigil.rpc.challenge.start")];
    let verify: Labels = &[("subject", "vigil.rpc.challenge.verify")];
    let once: [(&str, &str, Labels); 16] = [
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
        // Each hop of both calls timed: the gateway's answer, its request
        // to the challenge service, and that service's wait and work.
        (
            "auth-gateway",
            "vigil_gateway_request_seconds_count",
            &[("api", "grpc"), ("method", "Authenticate")],
        ),
        (
            "auth-gateway",
            "vigil_gateway_request_seconds_count",
            &[("api", "grpc"), ("method", "VerifyPasscode")],
        ),
        ("auth-gateway", "vigil_rpc_call_seconds_count", start),
        ("auth-gateway", "vigil_rpc_call_seconds_count", verify),
        ("challenge", "vigil_rpc_queued_seconds_count", start),
        ("challenge", "vigil_rpc_handler_seconds_count", start),
        ("challenge", "vigil_rpc_queued_seconds_count", verify),
        ("challenge", "vigil_rpc_handler_seconds_count", verify),
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
    // A hop takes milliseconds: its buckets must tell 1 ms from 5 ms.
    let start_within_5ms = [("subject", "vigil.rpc.challenge.start"), ("le", "0.005")];
    assert!(
        sample(&text, "vigil_rpc_handler_seconds_bucket", &start_within_5ms).is_some(),
        "hop histograms have millisecond buckets:\n{text}"
    );
    let text = stack.metrics("auth-gateway").await.unwrap();
    assert_eq!(
        sample(&text, "vigil_gateway_agent_check_seconds_count", &[]),
        Some(2.0),
        "both calls' agent checks timed:\n{text}"
    );
    // The wait for a pooled connection, in both services. (A statement
    // batch keeps its connection once it has one, so the gateway's two
    // signed calls may wait only once, for their first nonce batch.)
    for service in ["auth-gateway", "challenge"] {
        let text = stack.metrics(service).await.unwrap();
        let waits = sample(&text, "vigil_db_acquire_seconds_count", &[]).unwrap_or_default();
        assert!(waits >= 1.0, "{service}: {waits} connection waits timed:\n{text}");
    }

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

/// The agent's side of a trace: `traceparent` metadata on its gRPC calls.
fn traced<T>(mut request: tonic::Request<T>, trace_id: &str, span_id: &str) -> tonic::Request<T> {
    let traceparent = format!("00-{trace_id}-{span_id}-01");
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread")]
async fn one_sms_login_is_one_trace_across_all_four_services() {
    let collector = Collector::start().await.unwrap();
    let mut env = Vec::new();
    for service in ["auth-gateway", "challenge", "telephony", "billing"] {
        env.push((service, "OTEL_EXPORTER_OTLP_ENDPOINT", collector.url.clone()));
        // Export every 100 ms rather than every 5 s.
        env.push((service, "OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()));
    }
    let stack = Stack::start(StackOptions {
        env,
        ..Default::default()
    })
    .await
    .expect("stack starts");
    let phone = "+15550100032";
    let mut acme = acme_with_alice(&stack, phone).await;

    // The agent starts the trace; both of the login's calls carry it.
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let trace_id = format!("{nanos:032x}");
    let credential = acme.agent.credential.clone();
    let login = sms_login();
    let started = acme
        .agent
        .raw
        .authenticate(traced(
            credential.sign(methods::AUTHENTICATE, login),
            &trace_id,
            "00f067aa0ba902b7",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.decision(), Decision::Challenge, "{started:?}");
    let code = stack.sms_code(phone, 1).await.unwrap();
    let answer = VerifyPasscodeRequest {
        challenge_id: started.challenge_id,
        passcode: code,
    };
    let approved = acme
        .agent
        .raw
        .verify_passcode(traced(
            credential.sign(methods::VERIFY_PASSCODE, answer),
            &trace_id,
            "00f067aa0ba902b8",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(approved.reason(), Reason::Approved, "{approved:?}");

    // Every hop of the login, in that one trace: gRPC into the gateway, NATS
    // request/reply into challenge, the outbox relay to telephony (delivery
    // request) and on to billing (telephony usage, from telephony's outbox;
    // authentication usage, from challenge's).
    let hops = [
        ("auth-gateway", None),
        ("challenge", Some("vigil.rpc.challenge.start")),
        ("challenge", Some("vigil.rpc.challenge.verify")),
        ("telephony", Some("vigil.delivery.requested")),
        ("billing", Some("vigil.usage.telephony")),
        ("billing", Some("vigil.usage.authentication")),
    ];
    let seen = wait_until(Duration::from_secs(30), "every hop's span in the trace", || async {
        let spans: Vec<_> = collector
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect();
        let all = hops.iter().all(|(service, subject)| {
            spans.iter().any(|s| {
                s.service == *service && subject.is_none_or(|d| s.attribute("messaging.destination.name") == Some(d))
            })
        });
        all.then_some(spans)
    })
    .await;
    let spans = match seen {
        Ok(spans) => spans,
        Err(error) => {
            let got: BTreeSet<String> = collector
                .spans()
                .iter()
                .map(|s| {
                    format!(
                        "{} {} {} {:?}",
                        s.trace_id,
                        s.service,
                        s.name,
                        s.attribute("messaging.destination.name")
                    )
                })
                .collect();
            panic!(
                "{error:#}\nspans received:\n{}",
                got.into_iter().collect::<Vec<_>>().join("\n")
            );
        }
    };
    // Statements shared by the logins of a moment run in a batch's span of
    // its own, linked to each login it served: the request's nonce in the
    // gateway, the rate-limit count in challenge.
    for (service, batch) in [("auth-gateway", "agent_nonces"), ("challenge", "rate_limit_windows")] {
        let linked = wait_until(
            Duration::from_secs(30),
            "the batch span linked to the login",
            || async {
                collector
                    .spans()
                    .into_iter()
                    .find(|s| {
                        s.service == service
                            && s.name == "batch"
                            && s.attribute("batch") == Some(batch)
                            && s.linked_traces.contains(&trace_id)
                    })
                    .map(|_| ())
            },
        )
        .await;
        assert!(
            linked.is_ok(),
            "no {service} {batch} batch span links to the login's trace"
        );
    }
    // The gateway's span for the call is the gRPC server span, named by method.
    assert!(
        spans
            .iter()
            .any(|s| s.service == "auth-gateway"
                && s.attribute("rpc.method") == Some("/vigil.v1.AuthGateway/Authenticate")),
        "{spans:#?}"
    );
}

/// Every service's `/readyz`: (service, HTTP status, body).
async fn readiness(stack: &Stack) -> anyhow::Result<Vec<(&'static str, u16, String)>> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    let mut all = Vec::new();
    for (service, base) in &stack.http_urls {
        let response = http.get(format!("{base}/readyz")).send().await?;
        all.push((*service, response.status().as_u16(), response.text().await?));
    }
    Ok(all)
}

/// Waits until every service answers `/readyz` with 503 and a body naming `cause`.
async fn wait_unready(stack: &Stack, cause: &str) -> Vec<(&'static str, u16, String)> {
    let what = format!("every service unready because of {cause}");
    let seen = wait_until(Duration::from_secs(30), &what, || async {
        let all = readiness(stack).await?;
        let unready = all
            .iter()
            .all(|(_, status, body)| *status == 503 && body.contains(cause));
        anyhow::Ok(unready.then_some(all))
    })
    .await;
    match seen {
        Ok(all) => all,
        Err(error) => panic!("{error:#}\nlast answers: {:?}", readiness(stack).await),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_follows_postgres_and_nats() {
    let mut stack = Stack::start(StackOptions::default()).await.expect("stack starts");
    for (service, status, body) in readiness(&stack).await.unwrap() {
        assert_eq!(status, 200, "{service}: {body}");
    }
    // The database first (NATS still up), then NATS too.
    stack.pg.stop();
    wait_unready(&stack, "postgres").await;
    stack.nats.stop();
    wait_unready(&stack, "nats").await;
    // Liveness is not readiness: the processes are alive, and say so.
    for (service, base) in &stack.http_urls {
        let live = reqwest::get(format!("{base}/healthz")).await.unwrap().status();
        assert_eq!(live, 200, "{service}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_a_login_in_flight_loses_nothing() {
    let mut stack = Stack::start(StackOptions::default()).await.expect("stack starts");
    let phone = "+15550100033";
    let mut acme = acme_with_alice(&stack, phone).await;
    // A login in flight: the SMS is being delivered, usage on its way to billing.
    let challenge_id = start_sms_login(&mut acme).await;
    let urls = stack.http_urls.clone();
    let services = [
        &mut stack.gateway,
        &mut stack.challenge,
        &mut stack.telephony,
        &mut stack.billing,
    ];
    for service in services {
        service.terminate();
    }
    for service in [
        &mut stack.gateway,
        &mut stack.challenge,
        &mut stack.telephony,
        &mut stack.billing,
    ] {
        let status = service.wait_exit(Duration::from_secs(20)).await.unwrap();
        assert!(
            status.success(),
            "{}: {status}\n{}",
            service.log_path().display(),
            service.log_tail(20)
        );
    }

    // Started again, the same login finishes: one SMS reached the phone, its
    // code approves the challenge, and billing counts one authentication.
    let restarted = [
        &mut stack.gateway,
        &mut stack.challenge,
        &mut stack.telephony,
        &mut stack.billing,
    ];
    for (service, (name, base)) in restarted.into_iter().zip(&urls) {
        service.respawn().unwrap();
        service
            .wait_http_ready(&format!("{base}/readyz"), Duration::from_secs(60))
            .await
            .unwrap_or_else(|error| panic!("{name}: {error:#}"));
    }
    approve_with_the_sms_code(&stack, &mut acme, phone, challenge_id).await;
    // A duplicate delivery or usage event would show up by now.
    stack.authentications_counted(&acme.provider_id, 1).await.unwrap();
    assert_eq!(stack.sim_inbox(phone).await.unwrap().len(), 1, "one SMS, not two");
}
