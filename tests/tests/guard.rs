//! Guards around the second factor, end to end through the real binaries:
//! rate limits per user and per agent, toll-fraud caps per destination
//! prefix, and providers' message templates.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vigil_core::ChallengeId;
use vigil_e2e::{AgentClient, Stack, StackOptions, Tenant, agent_client};
use vigil_otp::{OtpSecret, Totp};
use vigil_proto::rpc;
use vigil_proto::v1::{
    AgentKind, AuthenticateRequest, CreateAgentRequest, Decision, ExplainLoginRequest, Factor, PreauthRequest, Reason,
    UpdateProviderRequest, VerifyPasscodeRequest,
};
use vigil_testkit::wait_until;

async fn preauth(agent: &mut AgentClient, username: &str) -> anyhow::Result<(Decision, Reason, String)> {
    let reply = agent
        .preauth(PreauthRequest {
            username: username.into(),
            client_ip: "192.0.2.10".into(),
        })
        .await?
        .into_inner();
    Ok((reply.decision(), reply.reason(), reply.message))
}

async fn authenticate_sms(
    agent: &mut AgentClient,
    username: &str,
) -> anyhow::Result<vigil_proto::v1::AuthenticateResponse> {
    authenticate(agent, username, Factor::Sms).await
}

async fn authenticate(
    agent: &mut AgentClient,
    username: &str,
    factor: Factor,
) -> anyhow::Result<vigil_proto::v1::AuthenticateResponse> {
    Ok(agent
        .authenticate(AuthenticateRequest {
            username: username.into(),
            factor: factor as i32,
            client_ip: "192.0.2.10".into(),
            ..Default::default()
        })
        .await?
        .into_inner())
}

/// "try again in N s" -> N.
fn retry_seconds(message: &str) -> u64 {
    message
        .split("try again in ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no retry time in {message:?}"))
}

/// A stack whose challenge service allows each user and each agent
/// `(max, window seconds)` login calls.
async fn stack_with_limits(user: (u32, u32), agent: (u32, u32)) -> Stack {
    Stack::start(StackOptions {
        env: vec![
            ("challenge", "VIGIL_RATE_LIMIT_USER_MAX", user.0.to_string()),
            ("challenge", "VIGIL_RATE_LIMIT_USER_WINDOW_SECS", user.1.to_string()),
            ("challenge", "VIGIL_RATE_LIMIT_AGENT_MAX", agent.0.to_string()),
            ("challenge", "VIGIL_RATE_LIMIT_AGENT_WINDOW_SECS", agent.1.to_string()),
        ],
        ..Default::default()
    })
    .await
    .expect("stack starts")
}

/// How many of `username`'s recent attempts were decided for `reason`
/// (refusals are audited like every decision).
async fn attempts_for(tenant: &mut Tenant, username: &str, reason: Reason) -> anyhow::Result<usize> {
    let explained = tenant
        .admin
        .explain_login(ExplainLoginRequest {
            provider_id: tenant.provider_id.clone(),
            username: username.into(),
            agent_id: String::new(),
            client_ip: String::new(),
        })
        .await?
        .into_inner();
    Ok(explained
        .recent_attempts
        .iter()
        .filter(|a| a.reason() == reason)
        .count())
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_per_user_and_per_agent() {
    let stack = stack_with_limits((3, 4), (16, 600)).await;
    if let Err(error) = rate_limits(&stack).await {
        panic!("{error:#}\n\n{}", stack.log_tails(40));
    }
}

async fn rate_limits(stack: &Stack) -> anyhow::Result<()> {
    let mut acme = Tenant::create(stack, "Acme").await?;
    acme.add_user("carol", "+15550200001").await?;
    acme.add_user("dave", "+15550200002").await?;

    // Per user: three in the window pass, the fourth is refused with the time to retry.
    for _ in 0..3 {
        assert_eq!(preauth(&mut acme.agent, "carol").await?.1, Reason::Enrolled);
    }
    let (decision, reason, message) = preauth(&mut acme.agent, "Carol").await?;
    assert_eq!((decision, reason), (Decision::Deny, Reason::RateLimited), "{message}");
    assert!(message.contains("for this user"), "{message}");
    // Authenticate is refused too, and sends nothing.
    let refused = authenticate_sms(&mut acme.agent, "carol").await?;
    assert_eq!(
        (refused.decision(), refused.reason()),
        (Decision::Deny, Reason::RateLimited)
    );
    assert!(refused.challenge_id.is_empty());
    assert!(stack.sim_inbox("+15550200001").await?.is_empty());

    // The refusal is in the audit trail, like every decision.
    assert_eq!(attempts_for(&mut acme, "carol", Reason::RateLimited).await?, 2);

    // Another user is not held back by carol's limit.
    acme.add_user("erin", "+15550200003").await?;
    assert_eq!(preauth(&mut acme.agent, "erin").await?.1, Reason::Enrolled);

    // After the time the message gave (asking nothing meanwhile), carol passes again.
    let (_, _, message) = preauth(&mut acme.agent, "carol").await?;
    tokio::time::sleep(Duration::from_secs(retry_seconds(&message))).await;
    assert_eq!(preauth(&mut acme.agent, "carol").await?.1, Reason::Enrolled);

    // VerifyPasscode counts against the challenge's user: past the limit
    // even the right code is refused.
    let started = authenticate_sms(&mut acme.agent, "dave").await?;
    assert_eq!(started.decision(), Decision::Challenge, "{started:?}");
    let code = stack.sms_code("+15550200002", 1).await?;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let verify = |code: &str| VerifyPasscodeRequest {
        challenge_id: started.challenge_id.clone(),
        passcode: code.into(),
    };
    for _ in 0..2 {
        let denied = acme.agent.verify_passcode(verify(wrong)).await?.into_inner();
        assert_eq!(denied.reason(), Reason::WrongCode, "{denied:?}");
    }
    let refused = acme.agent.verify_passcode(verify(&code)).await?.into_inner();
    assert_eq!(
        (refused.decision(), refused.reason()),
        (Decision::Deny, Reason::RateLimited),
        "{refused:?}"
    );
    assert_eq!(refused.attempts_remaining, 1, "a refused request costs no attempt");

    // Per agent: fresh usernames each time, so only the agent's count grows.
    let mut agent_limited = None;
    for n in 0..20 {
        let (decision, reason, message) = preauth(&mut acme.agent, &format!("nobody{n}")).await?;
        if reason == Reason::RateLimited {
            assert_eq!(decision, Decision::Deny);
            agent_limited = Some((n, message));
            break;
        }
        assert_eq!(reason, Reason::UnknownUser);
    }
    let (n, message) = agent_limited.expect("the agent reaches its limit of 16");
    assert!(message.contains("from this agent"), "{message}");
    // 12 calls above (refused ones included) + 4 here = 16: the 17th is refused.
    assert_eq!(n, 4, "every call of the agent counts");

    // Another agent of the same provider still gets answers.
    let other = acme
        .admin
        .create_agent(CreateAgentRequest {
            provider_id: acme.provider_id.clone(),
            name: "second".into(),
            kind: AgentKind::Rdp as i32,
        })
        .await?
        .into_inner();
    let mut second = agent_client(&stack.grpc_url, &other.agent_id, &other.agent_key).await?;
    assert_eq!(preauth(&mut second, "nobody-else").await?.1, Reason::UnknownUser);
    Ok(())
}

/// A code typed with the login counts once against the limits, also when a
/// wrong code takes the login from the unlocked try to the user's lock, and
/// unknown users count against their agent; past the limit even the right
/// code is refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_login_in_one_call_counts_once_against_the_limits() {
    let stack = stack_with_limits((3, 600), (7, 600)).await;
    if let Err(error) = one_call_limits(&stack).await {
        panic!("{error:#}\n\n{}", stack.log_tails(40));
    }
}

async fn one_call_limits(stack: &Stack) -> anyhow::Result<()> {
    let mut acme = Tenant::create(stack, "Acme").await?;
    acme.add_user("frank", "+15550200101").await?;
    let enrolled = acme.enroll("frank", Factor::Totp).await?;
    let seed = OtpSecret::from_base32(&enrolled.secret_base32)?;
    let code = || {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        Totp::default().generate(&seed, now).as_str().to_owned()
    };
    let in_one_call = |username: &str, passcode: String| AuthenticateRequest {
        username: username.into(),
        factor: Factor::Totp as i32,
        client_ip: "192.0.2.10".into(),
        passcode,
    };
    // Three wrong codes: each is counted once, though each goes on to the
    // user's lock after the unlocked try.
    for _ in 0..3 {
        let right = code();
        let wrong = if right == "000000" { "111111" } else { "000000" };
        let denied = acme
            .agent
            .authenticate(in_one_call("frank", wrong.into()))
            .await?
            .into_inner();
        assert_eq!(denied.reason(), Reason::WrongCode, "{denied:?}");
    }
    let refused = acme
        .agent
        .authenticate(in_one_call("frank", code()))
        .await?
        .into_inner();
    assert_eq!(
        (refused.decision(), refused.reason()),
        (Decision::Deny, Reason::RateLimited),
        "{refused:?}"
    );
    assert!(refused.message.contains("for this user"), "{}", refused.message);
    assert!(refused.challenge_id.is_empty(), "{refused:?}");
    assert_eq!(attempts_for(&mut acme, "frank", Reason::RateLimited).await?, 1);

    // The agent counted those four; unknown users count against it too.
    for n in 0..3 {
        let unknown = acme
            .agent
            .authenticate(in_one_call(&format!("nobody{n}"), "123456".into()))
            .await?
            .into_inner();
        assert_eq!(unknown.reason(), Reason::UnknownUser, "call {n}: {unknown:?}");
    }
    let refused = acme
        .agent
        .authenticate(in_one_call("nobody3", "123456".into()))
        .await?
        .into_inner();
    assert_eq!(refused.reason(), Reason::RateLimited, "{refused:?}");
    assert!(refused.message.contains("from this agent"), "{}", refused.message);
    Ok(())
}

/// The carrier simulator's counters.
async fn sim_stats(stack: &Stack) -> anyhow::Result<serde_json::Value> {
    Ok(reqwest::get(format!("{}/sim/stats", stack.sim_url))
        .await?
        .error_for_status()?
        .json()
        .await?)
}

async fn wait_for_messages(stack: &Stack, count: u64) -> anyhow::Result<()> {
    wait_until(Duration::from_secs(15), "the SMS at the carrier", || async {
        anyhow::Ok((sim_stats(stack).await?["messages_accepted"] == count).then_some(()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn sms_and_voice_are_capped_per_destination_prefix_and_hour() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack starts");
    if let Err(error) = caps(&stack).await {
        panic!("{error:#}\n\n{}", stack.log_tails(40));
    }
}

async fn caps(stack: &Stack) -> anyhow::Result<()> {
    let mut acme = Tenant::create(stack, "Acme").await?;
    let mut other = Tenant::create(stack, "Other").await?;
    // Defaults for a new provider.
    let provider = acme
        .admin
        .get_provider(vigil_proto::v1::GetProviderRequest {
            provider_id: acme.provider_id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(
        (
            provider.sms_cap_per_hour,
            provider.voice_cap_per_hour,
            provider.cap_prefix_digits
        ),
        (100, 50, 4)
    );
    // Bad settings are refused.
    for (sms, prefix) in [(Some(1_000_001), None), (None, Some(0)), (None, Some(16))] {
        let refused = acme
            .admin
            .update_provider(UpdateProviderRequest {
                provider_id: acme.provider_id.clone(),
                sms_cap_per_hour: sms,
                cap_prefix_digits: prefix,
                ..Default::default()
            })
            .await
            .expect_err("out of range");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    }
    let updated = acme
        .admin
        .update_provider(UpdateProviderRequest {
            provider_id: acme.provider_id.clone(),
            sms_cap_per_hour: Some(2),
            voice_cap_per_hour: Some(1),
            cap_prefix_digits: Some(4),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!((updated.sms_cap_per_hour, updated.voice_cap_per_hour), (2, 1));

    for (user, phone) in [
        ("u1", "+15550300001"),
        ("u2", "+15550300002"),
        ("u3", "+15550300003"),
        ("uk", "+442079460001"),
    ] {
        acme.add_user(user, phone).await?;
    }
    other.add_user("o1", "+15550300009").await?;

    // Two SMS to +1555... go out; the third is refused at once and never sent.
    for user in ["u1", "u2"] {
        let started = authenticate_sms(&mut acme.agent, user).await?;
        assert_eq!(started.decision(), Decision::Challenge, "{started:?}");
    }
    wait_for_messages(stack, 2).await?;
    let capped = authenticate_sms(&mut acme.agent, "u3").await?;
    assert_eq!(
        (capped.decision(), capped.reason()),
        (Decision::Deny, Reason::DeliveryCapped),
        "{capped:?}"
    );
    assert!(capped.challenge_id.is_empty());
    assert!(capped.message.contains("+1555"), "{}", capped.message);

    // Another prefix, and another provider with the same prefix, still get theirs.
    assert_eq!(
        authenticate_sms(&mut acme.agent, "uk").await?.decision(),
        Decision::Challenge
    );
    assert_eq!(
        authenticate_sms(&mut other.agent, "o1").await?.decision(),
        Decision::Challenge
    );
    wait_for_messages(stack, 4).await?;
    assert!(
        stack.sim_inbox("+15550300003").await?.is_empty(),
        "the capped SMS never reached the carrier"
    );

    // Voice has its own cap: one call, then refused.
    assert_eq!(
        authenticate(&mut acme.agent, "u3", Factor::Voice).await?.decision(),
        Decision::Challenge
    );
    let capped = authenticate(&mut acme.agent, "u1", Factor::Voice).await?;
    assert_eq!(
        (capped.decision(), capped.reason()),
        (Decision::Deny, Reason::DeliveryCapped)
    );
    assert!(capped.message.contains("calls"), "{}", capped.message);

    // The refusal is audited like every decision.
    assert!(attempts_for(&mut acme, "u1", Reason::DeliveryCapped).await? > 0);

    // Raising the cap (with the CLI) lets the next one through.
    let shown = stack.vigil(&["providers", "caps", &acme.provider_id, "--sms-per-hour", "3"])?;
    assert_eq!(
        (&shown["sms_cap_per_hour"], &shown["voice_cap_per_hour"]),
        (&serde_json::json!(3), &serde_json::json!(1)),
        "{shown}"
    );
    assert_eq!(
        authenticate_sms(&mut acme.agent, "u3").await?.decision(),
        Decision::Challenge
    );
    stack.sms_code("+15550300003", 1).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_templates_word_the_sms_and_the_call() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack starts");
    if let Err(error) = templates(&stack).await {
        panic!("{error:#}\n\n{}", stack.log_tails(40));
    }
}

async fn templates(stack: &Stack) -> anyhow::Result<()> {
    let mut acme = Tenant::create(stack, "Acme").await?;
    let mut other = Tenant::create(stack, "Other").await?;
    acme.add_user("alice", "+15550500001").await?;
    other.add_user("bob", "+15550500002").await?;

    // Bad templates are refused with the reason.
    for (sms, voice, why) in [
        (Some("your code"), None, "{code}"),
        (Some("{code} {pin}"), None, "{pin}"),
        (Some(&*format!("{{code}}{}", "x".repeat(320))), None, "320"),
        (None, Some("your code is {code}"), "{code}"),
    ] {
        let refused = acme
            .admin
            .update_provider(UpdateProviderRequest {
                provider_id: acme.provider_id.clone(),
                sms_template: sms.map(str::to_owned),
                voice_template: voice.map(str::to_owned),
                ..Default::default()
            })
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().contains(why), "{refused:?}");
    }
    let updated = acme
        .admin
        .update_provider(UpdateProviderRequest {
            provider_id: acme.provider_id.clone(),
            sms_template: Some("{provider}: your code is {code}".into()),
            voice_template: Some("{provider} security check for {username}.".into()),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(updated.sms_template, "{provider}: your code is {code}");
    // Telephony learns the templates from the provider event.
    stack
        .wait_consumed("VIGIL_PROVIDER", "vigil.provider.updated", "telephony-providers")
        .await?;

    // The SMS the carrier got is the provider's wording, with the real code.
    let started = authenticate_sms(&mut acme.agent, "alice").await?;
    assert_eq!(started.decision(), Decision::Challenge, "{started:?}");
    let code = stack.sms_code("+15550500001", 1).await?;
    assert_eq!(
        stack.sim_inbox("+15550500001").await?,
        vec![format!("Acme: your code is {code}")]
    );
    let approved = acme
        .agent
        .verify_passcode(VerifyPasscodeRequest {
            challenge_id: started.challenge_id,
            passcode: code,
        })
        .await?
        .into_inner();
    assert_eq!(approved.reason(), Reason::Approved);

    // A provider without templates gets Vigil's default text.
    authenticate_sms(&mut other.agent, "bob").await?;
    stack.sms_code("+15550500002", 1).await?;
    let inbox = stack.sim_inbox("+15550500002").await?;
    assert!(inbox[0].starts_with("Your Vigil verification code is"), "{inbox:?}");

    // The call greets with the provider's voice template.
    let started = authenticate(&mut acme.agent, "alice", Factor::Voice).await?;
    assert_eq!(started.decision(), Decision::Challenge, "{started:?}");
    let heard = wait_until(Duration::from_secs(15), "the call to be answered", || async {
        let calls: Vec<serde_json::Value> = reqwest::get(format!("{}/sim/calls/+15550500001", stack.sim_url))
            .await?
            .error_for_status()?
            .json()
            .await?;
        anyhow::Ok(
            calls
                .first()
                .and_then(|c| c["heard"].as_array())
                .filter(|h| !h.is_empty())
                .cloned(),
        )
    })
    .await?;
    assert_eq!(heard[0], "Acme security check for alice.", "{heard:?}");
    Ok(())
}

/// The gateway retries a start that timed out with the same challenge id. A
/// retry arriving after its first try took the last SMS of the hour gets
/// that challenge back, not a `delivery_capped` refusal, and no second SMS.
#[tokio::test(flavor = "multi_thread")]
async fn a_retried_start_at_the_cap_gets_its_first_challenge() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack starts");
    let mut acme = Tenant::create(&stack, "Acme").await.unwrap();
    let phone = "+15550300021";
    acme.add_user("alice", phone).await.unwrap();
    let start = |challenge_id: String| rpc::StartChallengeRequest {
        provider_id: acme.provider_id.clone(),
        agent_id: "agt_0192f0c5a0b07c3e8d9a1b2c3d4e5f60".into(),
        challenge_id,
        username: "alice".into(),
        factor: Factor::Sms as i32,
        client_ip: "192.0.2.10".into(),
        policy: Some(rpc::PolicyContext {
            require_user_match: true,
            block_user_on_fraud: true,
            delivery_caps: Some(rpc::DeliveryCaps {
                sms_per_hour: 1,
                voice_per_hour: 1,
                prefix_digits: 4,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let ask = |request: rpc::StartChallengeRequest| {
        let stack = &stack;
        async move { stack.start_challenge(&request).await.unwrap() }
    };

    let id = ChallengeId::new().to_string();
    let first = ask(start(id.clone())).await;
    assert_eq!(first.decision(), Decision::Challenge, "{first:?}");
    let retried = ask(start(id.clone())).await;
    assert_eq!(
        (retried.decision(), retried.challenge_id.as_str()),
        (Decision::Challenge, id.as_str()),
        "{retried:?}"
    );
    // The cap itself holds for a new login.
    let another = ask(start(ChallengeId::new().to_string())).await;
    assert_eq!(
        (another.decision(), another.reason()),
        (Decision::Deny, Reason::DeliveryCapped),
        "{another:?}"
    );
    wait_until(Duration::from_secs(15), "the SMS to arrive", || async {
        anyhow::Ok((!stack.sim_inbox(phone).await?.is_empty()).then_some(()))
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stack.sim_inbox(phone).await.unwrap().len(), 1, "one SMS, not two");
}
