//! Push end to end through the four services and the carrier simulator
//! playing the push service and the phone: enrolment with a one-time code
//! (good, reused, wrong, expired), then logins approved, denied, answered
//! with the wrong number, lost by the push service, never answered and
//! reported as fraud, each watched with WatchAuth to its final state; and a
//! late or repeated answer never changes a final state; with the challenge
//! service gone, a watch ends as unavailable.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use vigil_e2e::{AgentClient, Stack, StackOptions, Tenant};
use vigil_proto::v1::{
    AuthStatus, AuthenticateRequest, AuthenticateResponse, ChallengeState, Decision, EnrollFactorResponse, Factor,
    GetAuthStatusRequest, GetUserRequest, Reason, UpdateUserRequest, UserStatus, WatchAuthRequest,
};

const PHONE: &str = "+15550007001";

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn push_code(tenant: &mut Tenant, user: &str) -> EnrollFactorResponse {
    tenant.enroll(user, Factor::Push).await.unwrap()
}

/// The simulated phone enrols from the QR payload; Vigil's answer.
async fn phone_enrols(stack: &Stack, body: Value) -> Value {
    http()
        .post(format!("{}/sim/devices/enroll", stack.sim_url))
        .json(&body)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Telephony's enrolment URL, as the QR payload carries it.
fn enroll_url(payload: &str) -> String {
    url::Url::parse(payload)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "url")
        .map(|(_, v)| v.into_owned())
        .expect("the payload carries the enrolment URL")
}

/// Starts a push login and puts its number on the (simulated) sign-in screen.
async fn login(stack: &Stack, agent: &mut AgentClient) -> AuthenticateResponse {
    let started = agent
        .authenticate(AuthenticateRequest {
            username: "alice".into(),
            factor: Factor::Default as i32,
            client_ip: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.decision(), Decision::Challenge, "{started:?}");
    assert!((10..=99).contains(&started.match_number), "{started:?}");
    http()
        .put(format!("{}/sim/screens/{}", stack.sim_url, started.challenge_id))
        .json(&json!({"number": started.match_number}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    started
}

/// WatchAuth to the end: every state it sent, the last one final.
async fn watched(stack: &Stack, agent: &mut AgentClient, challenge_id: &str) -> Vec<AuthStatus> {
    let states = agent
        .watch_auth(WatchAuthRequest {
            challenge_id: challenge_id.into(),
        })
        .await
        .unwrap();
    let last = states
        .last()
        .unwrap_or_else(|| panic!("no state at all\n{}", stack.log_tails(40)));
    assert!(
        !matches!(last.state(), ChallengeState::Pending | ChallengeState::Delivered),
        "the stream ends with the final state: {states:?}"
    );
    for (i, s) in states.iter().enumerate() {
        assert_eq!(s.challenge_id, challenge_id);
        if i + 1 < states.len() {
            assert!(
                matches!(s.state(), ChallengeState::Pending | ChallengeState::Delivered),
                "only the last state is final: {states:?}"
            );
        }
        if i > 0 {
            assert_ne!(
                (s.state, s.reason),
                (states[i - 1].state, states[i - 1].reason),
                "each message is a change"
            );
        }
    }
    states
}

async fn final_state(stack: &Stack, agent: &mut AgentClient, challenge_id: &str) -> (ChallengeState, Reason) {
    let last = watched(stack, agent, challenge_id).await.pop().unwrap();
    (last.state(), last.reason())
}

async fn status(agent: &mut AgentClient, challenge_id: &str) -> (ChallengeState, Reason) {
    let s = agent
        .get_auth_status(GetAuthStatusRequest {
            challenge_id: challenge_id.into(),
        })
        .await
        .unwrap()
        .into_inner();
    (s.state(), s.reason())
}

/// The phone answers its newest push again, now; the status Vigil answered.
async fn answer_again(stack: &Stack, device_id: &str, action: &str, pick: u32) -> Option<u64> {
    let answered: Value = http()
        .post(format!("{}/sim/devices/{device_id}/answer", stack.sim_url))
        .json(&json!({"action": action, "pick": pick}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    answered["status"].as_u64()
}

/// Alice's default factor becomes push.
async fn push_by_default(tenant: &mut Tenant) {
    tenant
        .admin
        .update_user(UpdateUserRequest {
            provider_id: tenant.provider_id.clone(),
            user: "alice".into(),
            default_factor: Some(Factor::Push as i32),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// A push login that policy or enrolment refuses: its decision and reason.
async fn push_login_refused(agent: &mut AgentClient) -> (Decision, Reason) {
    let refused = agent
        .authenticate(AuthenticateRequest {
            username: "alice".into(),
            factor: Factor::Push as i32,
            client_ip: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    (refused.decision(), refused.reason())
}

async fn pushes(stack: &Stack, device_id: &str) -> Vec<Value> {
    http()
        .get(format!("{}/sim/devices/{device_id}/pushes", stack.sim_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A stack with provider Acme and its user alice.
async fn acme_with_alice(options: StackOptions) -> (Stack, Tenant) {
    let stack = Stack::start(options).await.expect("stack starts");
    let mut tenant = Tenant::create(&stack, "Acme").await.unwrap();
    tenant.add_user("alice", PHONE).await.unwrap();
    (stack, tenant)
}

#[tokio::test(flavor = "multi_thread")]
async fn push_enrolment_and_every_answer_end_to_end() {
    let (stack, mut tenant) = acme_with_alice(StackOptions {
        challenge_lifetime_secs: 20,
        ..Default::default()
    })
    .await;

    // The admin hands out a code; the phone enrols with the QR payload.
    let issued = push_code(&mut tenant, "alice").await;
    assert_eq!(issued.factor(), Factor::Push);
    assert_eq!(issued.enrollment_code.len(), 14, "{:?}", issued.enrollment_code);
    assert!(
        issued.enrollment_uri.starts_with("vigil-push://enroll?"),
        "{}",
        issued.enrollment_uri
    );
    assert!(issued.qr_png.starts_with(b"\x89PNG"), "the QR payload as a PNG");
    assert!(issued.enrollment_expires_at.is_some());
    let script = json!({"action": "approve", "script": [
        {"action": "approve"}, {"action": "deny"}, {"action": "wrong_number"},
        {"action": "push_error", "status": 503}, {"action": "ignore"}, {"action": "fraud"},
    ]});
    let enrolled = phone_enrols(
        &stack,
        json!({"payload": issued.enrollment_uri, "device_name": "Alice's phone", "behaviour": script}),
    )
    .await;
    assert_eq!(enrolled["enrolled"], true, "{enrolled}\n{}", stack.log_tails(30));
    assert_eq!(enrolled["status"], 201);
    let device_id = enrolled["device_id"].as_str().unwrap().to_owned();
    assert!(device_id.starts_with("dev_"), "{device_id}");

    // The same code again, a code never issued, a key that is no key.
    let reused = phone_enrols(&stack, json!({"payload": issued.enrollment_uri})).await;
    assert_eq!(
        (&reused["enrolled"], &reused["status"], &reused["error"]),
        (&json!(false), &json!(409), &json!("enrollment_code_used")),
        "{reused}"
    );
    let url = enroll_url(&issued.enrollment_uri);
    let wrong = phone_enrols(&stack, json!({"url": url, "code": "AAAA-BBBB-CCCC"})).await;
    assert_eq!(
        (&wrong["status"], &wrong["error"]),
        (&json!(404), &json!("enrollment_code_invalid")),
        "{wrong}"
    );
    let fresh = push_code(&mut tenant, "alice").await;
    let bad_key = http()
        .post(&url)
        .json(&json!({"code": fresh.enrollment_code, "public_key": "bm90IGEga2V5", "push_token": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_key.status().as_u16(), 400);
    assert_eq!(bad_key.json::<Value>().await.unwrap()["error"], "invalid_public_key");

    let user = tenant
        .admin
        .get_user(GetUserRequest {
            provider_id: tenant.provider_id.clone(),
            user: "alice".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(user.factors.iter().any(|f| f.factor() == Factor::Push), "{user:?}");
    push_by_default(&mut tenant).await;
    let agent = &mut tenant.agent;

    // Approved, with the number from the sign-in screen among three offered.
    let approved = login(&stack, agent).await;
    let states = watched(&stack, agent, &approved.challenge_id).await;
    let last = states.last().unwrap();
    assert_eq!(
        (last.state(), last.reason()),
        (ChallengeState::Approved, Reason::Approved),
        "{states:?}"
    );
    let received = pushes(&stack, &device_id).await;
    let offered = received[0]["data"]["match_choices"].as_str().unwrap().to_owned();
    let offered: Vec<u32> = offered.split(',').map(|n| n.parse().unwrap()).collect();
    assert_eq!(offered.len(), 3);
    assert!(offered.contains(&approved.match_number), "{offered:?}");
    assert_eq!(received[0]["data"]["challenge_id"], approved.challenge_id.as_str());

    // A final state never changes: the phone answers again, differently.
    assert_eq!(
        answer_again(&stack, &device_id, "deny", approved.match_number).await,
        Some(409)
    );
    assert_eq!(
        status(agent, &approved.challenge_id).await,
        (ChallengeState::Approved, Reason::Approved)
    );

    // Then the script's deny, wrong pick and push service failure (503 on every try).
    for expected in [
        (ChallengeState::Denied, Reason::Denied),
        (ChallengeState::Denied, Reason::WrongNumber),
        (ChallengeState::Failed, Reason::DeliveryFailed),
    ] {
        let started = login(&stack, agent).await;
        assert_eq!(final_state(&stack, agent, &started.challenge_id).await, expected);
    }

    // Nobody answers: expired, and an answer after that changes nothing.
    let ignored = login(&stack, agent).await;
    assert_eq!(
        final_state(&stack, agent, &ignored.challenge_id).await,
        (ChallengeState::Expired, Reason::Expired)
    );
    assert_eq!(
        answer_again(&stack, &device_id, "approve", ignored.match_number).await,
        Some(410),
        "a late approval is refused"
    );
    assert_eq!(
        status(agent, &ignored.challenge_id).await,
        (ChallengeState::Expired, Reason::Expired)
    );

    // "This was not me": fraud, and the provider's setting blocks the user.
    let fraud = login(&stack, agent).await;
    assert_eq!(
        final_state(&stack, agent, &fraud.challenge_id).await,
        (ChallengeState::Fraud, Reason::Fraud)
    );
    let user = tenant
        .admin
        .get_user(GetUserRequest {
            provider_id: tenant.provider_id.clone(),
            user: "alice".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(user.status(), UserStatus::BlockedForFraud);
    assert_eq!(
        push_login_refused(&mut tenant.agent).await,
        (Decision::Deny, Reason::BlockedForFraud)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_enrolment_code_is_refused_and_watches_end_on_unknown_challenges_and_fail_closed() {
    let (mut stack, mut tenant) = acme_with_alice(StackOptions {
        env: vec![("challenge", "VIGIL_PUSH_ENROLLMENT_TTL_SECS", "1".into())],
        ..Default::default()
    })
    .await;
    let issued = push_code(&mut tenant, "alice").await;
    // Past the code's one-second life.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let expired = phone_enrols(&stack, json!({"payload": issued.enrollment_uri})).await;
    assert_eq!(
        (&expired["enrolled"], &expired["status"], &expired["error"]),
        (&json!(false), &json!(410), &json!("enrollment_code_expired")),
        "{expired}"
    );

    // No device: a push login is refused as not enrolled.
    assert_eq!(
        push_login_refused(&mut tenant.agent).await,
        (Decision::Deny, Reason::NotEnrolled)
    );

    let unknown = tenant
        .agent
        .watch_auth(WatchAuthRequest {
            challenge_id: "chl_0190b0a0c0d0e0f00000000000000000".into(),
        })
        .await
        .unwrap();
    assert_eq!(unknown.len(), 1, "{unknown:?}");
    assert_eq!(unknown[0].reason(), Reason::ChallengeNotFound);
    let empty = tenant
        .agent
        .watch_auth(WatchAuthRequest {
            challenge_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(empty.code(), tonic::Code::InvalidArgument);

    // Fail closed: with the challenge service gone, a watch ends as unavailable, never approved.
    let started = tenant
        .agent
        .authenticate(AuthenticateRequest {
            username: "alice".into(),
            factor: Factor::Sms as i32,
            client_ip: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.decision(), Decision::Challenge, "{started:?}");
    stack.challenge.kill();
    stack
        .challenge
        .wait_exit(std::time::Duration::from_secs(10))
        .await
        .unwrap();
    let blind = tenant
        .agent
        .watch_auth(WatchAuthRequest {
            challenge_id: started.challenge_id,
        })
        .await
        .unwrap();
    assert_eq!(blind.len(), 1, "{blind:?}");
    assert_eq!(
        (blind[0].state(), blind[0].reason()),
        (ChallengeState::Unspecified, Reason::Unavailable)
    );
}

/// `vigil users test alice` as an operator runs it, the simulated user
/// picking the number it prints: its exit code and everything it said.
async fn cli_test_user(stack: &Stack, agent: &AgentClient) -> (Option<i32>, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(vigil_testkit::workspace_bin("vigil").unwrap())
        .args(["--gateway", &stack.grpc_url, "users", "test", "alice"])
        .env("VIGIL_AGENT_ID", &agent.credential.agent_id)
        .env("VIGIL_AGENT_KEY", &agent.credential.key)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut said, mut challenge_id) = (String::new(), String::new());
    while let Some(line) = lines.next_line().await.unwrap() {
        said.push_str(&line);
        said.push('\n');
        if let Some(id) = line.trim().strip_prefix("challenge id:") {
            challenge_id = id.trim().to_owned();
        }
        let shown = line
            .strip_prefix("the sign-in screen shows ")
            .and_then(|rest| rest.split(':').next())
            .and_then(|n| n.parse::<u32>().ok());
        if let Some(number) = shown {
            http()
                .put(format!("{}/sim/screens/{challenge_id}", stack.sim_url))
                .json(&json!({ "number": number }))
                .send()
                .await
                .unwrap()
                .error_for_status()
                .unwrap();
        }
    }
    (child.wait().await.unwrap().code(), said)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_enrols_push_and_tests_the_user() {
    let (stack, mut tenant) = acme_with_alice(StackOptions::default()).await;
    let issued = stack
        .vigil(&["users", "enroll", "alice", "push", "--provider", &tenant.provider_id])
        .unwrap();
    assert_eq!(issued["factor"], "PUSH");
    assert_eq!(issued["enrollment_code"].as_str().unwrap().len(), 14, "{issued}");
    let script = json!({"action": "deny", "script": [{"action": "approve"}]});
    let enrolled = phone_enrols(
        &stack,
        json!({"payload": issued["enrollment_uri"], "behaviour": script}),
    )
    .await;
    assert_eq!(enrolled["enrolled"], true, "{enrolled}");
    push_by_default(&mut tenant).await;

    let (code, said) = cli_test_user(&stack, &tenant.agent).await;
    assert_eq!(code, Some(0), "{said}\n{}", stack.log_tails(30));
    assert!(said.contains("APPROVED / APPROVED"), "{said}");
    assert!(said.ends_with("test passed: the user approved\n"), "{said}");
    let (code, said) = cli_test_user(&stack, &tenant.agent).await;
    assert_eq!(code, Some(3), "{said}");
    assert!(said.contains("DENIED / DENIED"), "{said}");
    assert!(said.ends_with("test failed: the user did not approve\n"), "{said}");
}
