//! Logs never hold a secret. A full run (admin token, agent activation, an
//! SMS code login, a voice PIN login, TOTP enrolment and login, push enrolment
//! and an approved push, a webhook secret) with every
//! service logging JSON at debug level; then every line of every service's
//! log is searched for each secret that flowed, and for full phone numbers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use vigil_e2e::{AgentClient, Stack, StackOptions, Tenant, admin_client, agent_client, registration_client};
use vigil_otp::{OtpSecret, Totp};
use vigil_proto::v1::{
    AgentKind, AuthenticateRequest, ChallengeState, CreateActivationRequest, CreateAdminTokenRequest, Factor,
    GetProviderRequest, Reason, RegisterAgentRequest, RotateWebhookSecretRequest, UpdateUserRequest,
    VerifyPasscodeRequest,
};

const SMS_PHONE: &str = "+15550107741";
const VOICE_PHONE: &str = "+15550107742";
const PIN: &str = "73916428";
/// Debug for Vigil's own crates: secrets must stay out at every level.
const LOG_FILTER: &str = "info,vigil_auth_gateway=debug,vigil_challenge=debug,vigil_telephony=debug,\
                          vigil_billing=debug,vigil_bus=debug,vigil_runtime=debug";

fn options() -> StackOptions {
    let mut env = Vec::new();
    for service in ["auth-gateway", "challenge", "telephony", "billing"] {
        env.push((service, "VIGIL_LOG_FORMAT", "json".to_owned()));
        env.push((service, "RUST_LOG", LOG_FILTER.to_owned()));
    }
    StackOptions {
        env,
        ..Default::default()
    }
}

async fn start(agent: &mut AgentClient, user: &str, factor: Factor) -> String {
    let started = agent
        .authenticate(AuthenticateRequest {
            username: user.into(),
            factor: factor as i32,
            client_ip: "192.0.2.10".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!started.challenge_id.is_empty(), "{started:?}");
    started.challenge_id
}

async fn verify(agent: &mut AgentClient, challenge_id: &str, passcode: &str) -> Reason {
    agent
        .verify_passcode(VerifyPasscodeRequest {
            challenge_id: challenge_id.into(),
            passcode: passcode.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .reason()
}

/// The secrets of one full run, each with what it is.
async fn full_run(stack: &Stack) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut secrets: Vec<(&'static str, String)> = stack
        .configured_secrets()
        .into_iter()
        .map(|s| ("configured secret", s.to_owned()))
        .collect();
    let mut acme = Tenant::create(stack, "Acme").await?;
    secrets.push(("agent key", acme.agent.credential.key.clone()));

    // A provider admin token, used.
    let token = acme
        .admin
        .create_admin_token(CreateAdminTokenRequest {
            provider_id: acme.provider_id.clone(),
            description: "helpdesk".into(),
        })
        .await?
        .into_inner()
        .token;
    secrets.push(("provider admin token", token.clone()));
    let mut helpdesk = admin_client(&stack.grpc_url, &token).await?;
    helpdesk
        .get_provider(GetProviderRequest {
            provider_id: acme.provider_id.clone(),
        })
        .await?;

    // Agent activation: one-time password in, long-lived key out, used.
    let activation = helpdesk
        .create_activation(CreateActivationRequest {
            provider_id: acme.provider_id.clone(),
        })
        .await?
        .into_inner();
    secrets.push(("activation password", activation.password.clone()));
    let registered = registration_client(&stack.grpc_url)
        .await?
        .register(RegisterAgentRequest {
            login: activation.login,
            password: activation.password,
            name: "rdp-02".into(),
            kind: AgentKind::Rdp as i32,
        })
        .await?
        .into_inner();
    secrets.push(("registered agent key", registered.agent_key.clone()));
    let mut agent = agent_client(&stack.grpc_url, &registered.agent_id, &registered.agent_key).await?;

    // SMS: a wrong code, then the right one.
    acme.add_user("alice", SMS_PHONE).await?;
    let challenge = start(&mut agent, "alice", Factor::Sms).await;
    let code = stack.sms_code(SMS_PHONE, 1).await?;
    let wrong = if code == "918273" { "918274" } else { "918273" };
    assert_eq!(verify(&mut agent, &challenge, wrong).await, Reason::WrongCode);
    assert_eq!(verify(&mut agent, &challenge, &code).await, Reason::Approved);
    secrets.push(("SMS code", code));
    secrets.push(("wrong SMS code", wrong.to_owned()));

    // Voice: the PIN set by the admin, typed on the phone.
    acme.add_user("bob", VOICE_PHONE).await?;
    acme.admin
        .update_user(UpdateUserRequest {
            provider_id: acme.provider_id.clone(),
            user: "bob".into(),
            pin: Some(PIN.into()),
            ..Default::default()
        })
        .await?;
    reqwest::Client::new()
        .put(format!("{}/sim/phones/{VOICE_PHONE}/voice", stack.sim_url))
        .json(&json!({"action": "answer", "digits": format!("{PIN}#")}))
        .send()
        .await?
        .error_for_status()?;
    let call = start(&mut agent, "bob", Factor::Voice).await;
    let (state, _) = agent.final_state(&call).await?;
    assert_eq!(state, ChallengeState::Approved);
    secrets.push(("PIN", PIN.to_owned()));

    // TOTP: the seed and URI shown once, then a code.
    let totp = acme.enroll("alice", Factor::Totp).await?;
    let seed = OtpSecret::from_base32(&totp.secret_base32)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let code = Totp::default().generate(&seed, now).as_str().to_owned();
    let challenge = start(&mut agent, "alice", Factor::Totp).await;
    assert_eq!(verify(&mut agent, &challenge, &code).await, Reason::Approved);
    secrets.push(("TOTP seed", totp.secret_base32));
    secrets.push(("TOTP URI", totp.otpauth_uri));
    secrets.push(("TOTP code", code));
    // And a code typed with the login (Authenticate carries it): one out of
    // the window, so it is refused, and it must not show either.
    let typed = Totp::default().generate(&seed, now + 300).as_str().to_owned();
    let one_call = agent
        .authenticate(AuthenticateRequest {
            username: "alice".into(),
            factor: Factor::Totp as i32,
            client_ip: "192.0.2.10".into(),
            passcode: typed.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(one_call.reason(), Reason::WrongCode, "{one_call:?}");
    secrets.push(("TOTP code sent with Authenticate", typed));

    // Push: the one-time enrolment code and its QR payload, then an approved
    // push login with number matching.
    let push = acme.enroll("alice", Factor::Push).await?;
    let sim = reqwest::Client::new();
    let enrolled: serde_json::Value = sim
        .post(format!("{}/sim/devices/enroll", stack.sim_url))
        .json(&json!({"payload": push.enrollment_uri, "behaviour": {"action": "approve"}}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(enrolled["enrolled"], true, "{enrolled}");
    let pushed = agent
        .authenticate(AuthenticateRequest {
            username: "alice".into(),
            factor: Factor::Push as i32,
            client_ip: "192.0.2.10".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    sim.put(format!("{}/sim/screens/{}", stack.sim_url, pushed.challenge_id))
        .json(&json!({"number": pushed.match_number}))
        .send()
        .await?
        .error_for_status()?;
    let (state, _) = agent.final_state(&pushed.challenge_id).await?;
    assert_eq!(state, ChallengeState::Approved);
    secrets.push(("push enrolment code", push.enrollment_code));
    secrets.push(("push enrolment payload", push.enrollment_uri));

    // The fraud webhook's signing secret, shown once.
    let webhook = acme
        .admin
        .rotate_webhook_secret(RotateWebhookSecretRequest {
            provider_id: acme.provider_id.clone(),
        })
        .await?
        .into_inner();
    secrets.push(("webhook secret", webhook.secret));

    // Billing's API, with its token.
    let (status, _) = stack.billing_usage(&acme.provider_id).await?;
    assert_eq!(status, 200);

    // Full numbers, in any spelling (E.164, without the plus, URL-encoded):
    // the national part is in each.
    for phone in [SMS_PHONE, VOICE_PHONE] {
        secrets.push(("phone number", phone[2..].to_owned()));
    }
    Ok(secrets)
}

/// Whether `secret` occurs in `text`. Short ones (codes, PINs) only as a
/// whole token: a few digits could otherwise turn up inside a longer number
/// by chance.
fn shows(text: &str, secret: &str) -> bool {
    if secret.len() > 8 {
        return text.contains(secret);
    }
    text.match_indices(secret).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + secret.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric()) && !after.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_run_leaves_no_secret_in_any_service_log() {
    assert!(
        std::env::var("TEST_LOG").as_deref() != Ok("1"),
        "this test reads the services' log files: run it without TEST_LOG=1"
    );
    let stack = Stack::start(options()).await.expect("stack starts");
    let secrets = match full_run(&stack).await {
        Ok(secrets) => secrets,
        Err(error) => panic!("{error:#}\n\n{}", stack.log_tails(40)),
    };

    let mut leaks = Vec::new();
    for service in stack.services() {
        let path = service.log_path();
        let log = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!log.trim().is_empty(), "{} is empty", path.display());
        for line in log.lines().filter(|l| !l.trim().is_empty()) {
            // JSON, as VIGIL_LOG_FORMAT=json asks; the timestamp (whose
            // fraction is six digits) is left out of the search.
            let mut entry: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: not a JSON log line ({e}): {line}", path.display()));
            entry.remove("timestamp");
            let text = serde_json::Value::Object(entry).to_string();
            for (what, secret) in &secrets {
                if shows(&text, secret) {
                    leaks.push(format!("{what} in {}: {line}", path.display()));
                }
            }
        }
    }
    assert!(leaks.is_empty(), "secrets in the logs:\n{}", leaks.join("\n"));

    // Controls, so the search above cannot pass by looking in the wrong
    // place: the services log the numbers masked, and the carrier simulator
    // (the outside world, not Vigil) logs them whole, which the search finds.
    let challenge_log = std::fs::read_to_string(stack.challenge.log_path()).unwrap();
    assert!(
        challenge_log.contains("+155******41"),
        "the challenge log names the SMS phone, masked:\n{challenge_log}"
    );
    let sim_log = std::fs::read_to_string(stack.sim.log_path()).unwrap();
    assert!(
        shows(&sim_log, &SMS_PHONE[2..]),
        "the simulator logs whole numbers:\n{sim_log}"
    );
}
