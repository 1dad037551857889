//! One SMS login end to end, through the real binaries on real NATS and
//! PostgreSQL: the walking skeleton's proof.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use vigil_e2e::{AgentClient, Stack, StackOptions, Tenant};
use vigil_proto::events::ChallengeDelivered;
use vigil_proto::v1::{
    AuthStatus, AuthenticateRequest, ChallengeState, Decision, Factor, GetAuthStatusRequest, Reason,
    VerifyPasscodeRequest,
};
use vigil_testkit::wait_until;

fn sms(username: &str) -> AuthenticateRequest {
    AuthenticateRequest {
        username: username.into(),
        factor: Factor::Sms as i32,
        client_ip: "192.0.2.10".into(),
        ..Default::default()
    }
}

async fn code_from_sms(stack: &Stack, phone: &str, count: usize) -> anyhow::Result<String> {
    stack.sms_code(phone, count).await
}

async fn verify(
    agent: &mut AgentClient,
    challenge_id: &str,
    code: &str,
) -> anyhow::Result<vigil_proto::v1::VerifyPasscodeResponse> {
    Ok(agent
        .verify_passcode(VerifyPasscodeRequest {
            challenge_id: challenge_id.into(),
            passcode: code.into(),
        })
        .await?
        .into_inner())
}

async fn status_of(agent: &mut AgentClient, challenge_id: &str) -> anyhow::Result<AuthStatus> {
    Ok(agent
        .get_auth_status(GetAuthStatusRequest {
            challenge_id: challenge_id.to_owned(),
        })
        .await?
        .into_inner())
}

/// The challenge's state once it has left pending, or pending after 15 s.
async fn state_after_delivery(agent: &mut AgentClient, challenge_id: &str) -> anyhow::Result<ChallengeState> {
    let mut shown = ChallengeState::Pending;
    for _ in 0..150 {
        shown = status_of(agent, challenge_id).await?.state();
        if shown != ChallengeState::Pending {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(shown)
}

/// Publishes delivery reports for `challenge_id` as telephony would, and
/// waits until the challenge service has handled them.
async fn late_reports(stack: &Stack, provider_id: &str, challenge_id: &str) -> anyhow::Result<()> {
    use vigil_proto::events::DeliveryState;
    reports(
        stack,
        provider_id,
        challenge_id,
        &[DeliveryState::Sent, DeliveryState::Delivered, DeliveryState::Failed],
    )
    .await
}

/// Publishes one delivery report per entry of `states` for `challenge_id`,
/// each in an envelope of its own, and waits until the challenge service
/// has handled them all.
async fn reports(
    stack: &Stack,
    provider_id: &str,
    challenge_id: &str,
    states: &[vigil_proto::events::DeliveryState],
) -> anyhow::Result<()> {
    use prost::Message as _;
    use vigil_bus::subjects;
    use vigil_proto::events::DeliveryStatus;

    let js = async_nats::jetstream::new(async_nats::connect(stack.nats.url()).await?);
    for state in states {
        let report = DeliveryStatus {
            challenge_id: challenge_id.to_owned(),
            state: *state as i32,
            error: "late".to_owned(),
            ..Default::default()
        };
        let envelope = vigil_bus::envelope::wrap(provider_id, &report, std::time::SystemTime::now());
        js.publish(subjects::DELIVERY_STATUS, envelope.encode_to_vec().into())
            .await?
            .await?;
    }
    stack
        .wait_consumed("VIGIL_DELIVERY", subjects::DELIVERY_STATUS, "challenge-delivery-status")
        .await
}

/// Reports of one delivery handled side by side (the consumer runs several
/// at once) move its challenge once and announce it once.
#[tokio::test(flavor = "multi_thread")]
async fn repeated_reports_handled_at_once_announce_the_delivery_once() {
    let stack = Stack::start(StackOptions {
        // The carrier's own reports stay away: only the test's arrive.
        env: vec![("carrier-sim", "VIGIL_SIM_STATUS_DELAY_MS", "600000".into())],
        ..StackOptions::default()
    })
    .await
    .expect("stack starts");
    let mut acme = Tenant::create(&stack, "Acme").await.unwrap();
    acme.add_user("alice", "+15550100077").await.unwrap();
    let started = acme.agent.authenticate(sms("alice")).await.unwrap().into_inner();
    assert_eq!(started.decision(), Decision::Challenge, "{started:?}");
    let sent = [vigil_proto::events::DeliveryState::Sent; 16];
    reports(&stack, &acme.provider_id, &started.challenge_id, &sent)
        .await
        .unwrap();
    let status = status_of(&mut acme.agent, &started.challenge_id).await.unwrap();
    assert_eq!(status.state(), ChallengeState::Delivered);
    wait_until(Duration::from_secs(15), "the delivery announced", || async {
        let n = stack.count_events::<ChallengeDelivered>("VIGIL_CHALLENGE").await?;
        Ok((n >= 1).then_some(()))
    })
    .await
    .unwrap();
    // A moment for a second announcement, if any, to leave its outbox.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let announced = stack
        .count_events::<ChallengeDelivered>("VIGIL_CHALLENGE")
        .await
        .unwrap();
    assert_eq!(announced, 1, "one ChallengeDelivered for the challenge");
}

/// Many SMS at once: their delivery reports reach the challenge service
/// together (each applied in a transaction of its own, which a batched
/// version once changed); every challenge still moves on.
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_sms_logins_each_shows_delivered() {
    const LOGINS: usize = 30;
    let stack = Stack::start(StackOptions::default()).await.expect("stack starts");
    let mut acme = Tenant::create(&stack, "Acme").await.unwrap();
    for i in 0..LOGINS {
        acme.add_user(&format!("user{i}"), &format!("+1555020{i:04}"))
            .await
            .unwrap();
    }
    let started = futures::future::join_all((0..LOGINS).map(|i| {
        let mut agent = acme.agent.clone();
        async move {
            agent
                .authenticate(sms(&format!("user{i}")))
                .await
                .map(|r| r.into_inner())
        }
    }))
    .await;
    for (i, started) in started.into_iter().enumerate() {
        let started = started.unwrap();
        assert_eq!(started.decision(), Decision::Challenge, "user{i}: {started:?}");
        let shown = state_after_delivery(&mut acme.agent, &started.challenge_id)
            .await
            .unwrap();
        assert_eq!(shown, ChallengeState::Delivered, "user{i}\n{}", stack.log_tails(40));
    }
}

/// The code of one SMS typed into many windows at once: one answer
/// approves the challenge, and each of the others is told it was answered.
#[tokio::test(flavor = "multi_thread")]
async fn one_sms_code_sent_many_times_at_once_approves_once() {
    const ANSWERS: usize = 8;
    let stack = Stack::start(StackOptions::default()).await.expect("stack starts");
    let mut acme = Tenant::create(&stack, "Acme").await.unwrap();
    acme.add_user("alice", "+15550300001").await.unwrap();
    let started = acme.agent.authenticate(sms("alice")).await.unwrap().into_inner();
    let code = code_from_sms(&stack, "+15550300001", 1).await.unwrap();
    let answers = futures::future::join_all((0..ANSWERS).map(|_| {
        let mut agent = acme.agent.clone();
        let (challenge_id, code) = (started.challenge_id.clone(), code.clone());
        async move { verify(&mut agent, &challenge_id, &code).await.unwrap().reason() }
    }))
    .await;
    let approved = answers.iter().filter(|r| **r == Reason::Approved).count();
    assert_eq!(approved, 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|r| matches!(r, Reason::Approved | Reason::AlreadyUsed)),
        "{answers:?}"
    );
    let status = status_of(&mut acme.agent, &started.challenge_id).await.unwrap();
    assert_eq!(status.state(), ChallengeState::Approved);
}

#[tokio::test(flavor = "multi_thread")]
async fn sms_login_is_challenged_answered_and_billed_once() {
    let mut stack = Stack::start(StackOptions::default()).await.expect("stack starts");
    if let Err(error) = sms_login(&mut stack).await {
        panic!("{error:#}\n\n{}", stack.log_tails(40));
    }
}

async fn sms_login(stack: &mut Stack) -> anyhow::Result<()> {
    let phone = "+15550100001";
    let mut acme = Tenant::create(stack, "Acme").await?;
    let mut other = Tenant::create(stack, "Other").await?;
    acme.add_user("alice", phone).await?;

    // Authenticate: a challenge, pending.
    let started = acme.agent.authenticate(sms("Alice")).await?.into_inner();
    assert_eq!(started.decision(), Decision::Challenge, "{started:?}");
    assert_eq!(started.reason(), Reason::Enrolled);
    assert_eq!(started.state(), ChallengeState::Pending);
    assert!(started.challenge_id.starts_with("chl_"));
    assert!(
        !started.message.contains("0100001"),
        "the message masks the phone number: {}",
        started.message
    );

    // The phone receives the code, and the carrier's report of it moves the
    // challenge on, for agents watching it.
    let code = code_from_sms(stack, phone, 1).await?;
    assert_eq!(
        state_after_delivery(&mut acme.agent, &started.challenge_id).await?,
        ChallengeState::Delivered,
        "the delivery report moved the challenge"
    );

    // A wrong code is denied first.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let denied = verify(&mut acme.agent, &started.challenge_id, wrong).await?;
    assert_eq!(
        (denied.decision(), denied.reason()),
        (Decision::Deny, Reason::WrongCode),
        "{denied:?}"
    );
    assert_eq!(denied.attempts_remaining, 2);

    // Another provider's agent cannot see or answer this challenge.
    let foreign = verify(&mut other.agent, &started.challenge_id, &code).await?;
    assert_eq!(
        (foreign.decision(), foreign.reason()),
        (Decision::Deny, Reason::ChallengeNotFound)
    );

    // The right code approves; the status says so; the code cannot be replayed.
    let approved = verify(&mut acme.agent, &started.challenge_id, &code).await?;
    assert_eq!(
        (approved.decision(), approved.reason(), approved.state()),
        (Decision::Allow, Reason::Approved, ChallengeState::Approved)
    );
    let status = status_of(&mut acme.agent, &started.challenge_id).await?;
    assert_eq!(status.state(), ChallengeState::Approved);
    let replay = verify(&mut acme.agent, &started.challenge_id, &code).await?;
    assert_eq!(
        (replay.decision(), replay.reason()),
        (Decision::Deny, Reason::AlreadyUsed)
    );
    // Every answer is audited, the replay too; the other provider's try
    // found no challenge of its own to be recorded against.
    assert_eq!(
        acme.audited(&started.challenge_id).await?,
        [
            ("authenticate".to_owned(), Decision::Challenge, Reason::Enrolled),
            ("verify".to_owned(), Decision::Deny, Reason::WrongCode),
            ("verify".to_owned(), Decision::Allow, Reason::Approved),
            ("verify".to_owned(), Decision::Deny, Reason::AlreadyUsed),
        ]
    );

    // Late and repeated carrier reports (a second `sent`, a `failed` after
    // the login ended) change nothing: the challenge stays approved.
    late_reports(stack, &acme.provider_id, &started.challenge_id).await?;
    let status = status_of(&mut acme.agent, &started.challenge_id).await?;
    assert_eq!(
        (status.state(), status.reason()),
        (ChallengeState::Approved, Reason::Approved)
    );

    // An unknown user is denied, with the reason, and nothing is sent.
    let unknown = acme.agent.authenticate(sms("mallory")).await?.into_inner();
    assert_eq!(
        (unknown.decision(), unknown.reason()),
        (Decision::Deny, Reason::UnknownUser)
    );
    assert!(unknown.challenge_id.is_empty());

    // Billing counts exactly one authentication for Acme and none for Other.
    let usage = stack.authentications_counted(&acme.provider_id, 1).await?;
    assert_eq!(usage["usage_model"], "per_authentication");
    let (status, body) = stack.billing_usage(&other.provider_id).await?;
    assert_eq!(
        (status, &body["authentications"]),
        (200, &serde_json::json!(0)),
        "{body}"
    );

    // With NATS down, Authenticate answers promptly: deny, unavailable.
    stack.nats.stop();
    let asked = Instant::now();
    let down = acme.agent.authenticate(sms("alice")).await?.into_inner();
    assert_eq!(
        (down.decision(), down.reason()),
        (Decision::Deny, Reason::Unavailable),
        "{down:?}"
    );
    assert!(down.challenge_id.is_empty());
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "answered after {:?}",
        asked.elapsed()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unanswered_challenge_ends_as_expired() {
    let stack = Stack::start(StackOptions {
        challenge_lifetime_secs: 2,
        ..Default::default()
    })
    .await
    .expect("stack starts");
    if let Err(error) = expiry(&stack).await {
        panic!("{error:#}\n\n{}", stack.log_tails(40));
    }
}

async fn expiry(stack: &Stack) -> anyhow::Result<()> {
    let phone = "+15550100002";
    let mut acme = Tenant::create(stack, "Acme").await?;
    acme.add_user("bob", phone).await?;
    let started = acme.agent.authenticate(sms("bob")).await?.into_inner();
    assert_eq!(started.decision(), Decision::Challenge, "{started:?}");
    let code = code_from_sms(stack, phone, 1).await?;

    let mut agent = acme.agent.clone();
    let id = started.challenge_id.clone();
    let expired = wait_until(Duration::from_secs(15), "the challenge to expire", || {
        let mut agent = agent.clone();
        let id = id.clone();
        async move {
            let status = agent
                .get_auth_status(GetAuthStatusRequest { challenge_id: id })
                .await?
                .into_inner();
            anyhow::Ok((status.state() == ChallengeState::Expired).then_some(status))
        }
    })
    .await?;
    assert_eq!(expired.reason(), Reason::Expired);
    // The right code is refused once the challenge has expired.
    let late = verify(&mut agent, &started.challenge_id, &code).await?;
    assert_eq!((late.decision(), late.reason()), (Decision::Deny, Reason::Expired));
    Ok(())
}
