//! TOTP, HOTP and backup codes through the real binaries: enrolment over the
//! admin API, a login with each, replay refused, HOTP resync.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{SystemTime, UNIX_EPOCH};

use vigil_core::ChallengeId;
use vigil_e2e::{Admin, AgentClient, Stack, StackOptions, Tenant};
use vigil_otp::{Hotp, OtpSecret, Totp};
use vigil_proto::events::ChallengeCompleted;
use vigil_proto::rpc;
use vigil_proto::v1::{
    AuthenticateRequest, AuthenticateResponse, ChallengeState, Decision, EnrollFactorRequest, EnrollFactorResponse,
    Factor, Reason, ResyncHotpRequest, VerifyPasscodeRequest,
};

async fn enroll(admin: &mut Admin, provider_id: &str, factor: Factor) -> EnrollFactorResponse {
    admin
        .enroll_factor(EnrollFactorRequest {
            provider_id: provider_id.into(),
            user: "alice".into(),
            factor: factor as i32,
        })
        .await
        .expect("enrol")
        .into_inner()
}

/// Starts alice's challenge on `factor`; it must be challenged.
async fn start(agent: &mut AgentClient, factor: Factor) -> String {
    let started = agent
        .authenticate(AuthenticateRequest {
            username: "alice".into(),
            factor: factor as i32,
            client_ip: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.decision(), Decision::Challenge, "{started:?}");
    started.challenge_id
}

/// Starts a challenge on `factor` and answers it with `code`.
async fn login(agent: &mut AgentClient, factor: Factor, code: &str) -> Reason {
    let challenge_id = start(agent, factor).await;
    agent
        .verify_passcode(VerifyPasscodeRequest {
            challenge_id,
            passcode: code.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .reason()
}

/// One user logs in a score of times within a minute here: more than the
/// per-user rate limit allows (tests/tests/guard.rs tests that limit).
async fn stack_without_user_limit() -> Stack {
    Stack::start(StackOptions {
        env: vec![("challenge", "VIGIL_RATE_LIMIT_USER_MAX", "0".into())],
        ..Default::default()
    })
    .await
    .expect("stack starts")
}

/// A stack as above; Acme with alice (at `phone`) enrolled in TOTP, and her seed.
async fn alice_with_totp(phone: &str) -> (Stack, Tenant, OtpSecret) {
    let stack = stack_without_user_limit().await;
    let mut tenant = Tenant::create(&stack, "Acme").await.unwrap();
    tenant.add_user("alice", phone).await.unwrap();
    let totp = enroll(&mut tenant.admin, &tenant.provider_id, Factor::Totp).await;
    let seed = OtpSecret::from_base32(&totp.secret_base32).unwrap();
    (stack, tenant, seed)
}

#[tokio::test(flavor = "multi_thread")]
async fn totp_hotp_and_backup_codes_log_in_once_each() {
    let stack = stack_without_user_limit().await;
    let mut tenant = Tenant::create(&stack, "Acme").await.unwrap();
    tenant.add_user("alice", "+15550003001").await.unwrap();
    let Tenant {
        mut admin,
        provider_id: provider,
        mut agent,
    } = tenant;

    let not_yet = agent
        .authenticate(AuthenticateRequest {
            username: "alice".into(),
            factor: Factor::Totp as i32,
            client_ip: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (not_yet.decision(), not_yet.reason()),
        (Decision::Deny, Reason::NotEnrolled)
    );

    // TOTP: the URI and QR come once; a code works once.
    let totp = enroll(&mut admin, &provider, Factor::Totp).await;
    assert!(
        totp.otpauth_uri.starts_with("otpauth://totp/Vigil:alice?"),
        "{}",
        totp.otpauth_uri
    );
    assert!(totp.qr_png.starts_with(b"\x89PNG"));
    let seed = OtpSecret::from_base32(&totp.secret_base32).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let code = Totp::default().generate(&seed, now);
    assert_eq!(login(&mut agent, Factor::Totp, code.as_str()).await, Reason::Approved);
    assert_eq!(
        login(&mut agent, Factor::Totp, code.as_str()).await,
        Reason::AlreadyUsed,
        "replay refused"
    );
    let wrong = if code.as_str() == "000000" { "111111" } else { "000000" };
    assert_eq!(login(&mut agent, Factor::Totp, wrong).await, Reason::WrongCode);

    // HOTP: look-ahead, then resync after the token ran far ahead.
    let hotp = enroll(&mut admin, &provider, Factor::Hotp).await;
    let seed = OtpSecret::from_base32(&hotp.secret_base32).unwrap();
    let token = Hotp::default();
    assert_eq!(
        login(&mut agent, Factor::Hotp, token.generate(&seed, 2).as_str()).await,
        Reason::Approved
    );
    assert_eq!(
        login(&mut agent, Factor::Hotp, token.generate(&seed, 2).as_str()).await,
        Reason::WrongCode
    );
    assert_eq!(
        login(&mut agent, Factor::Hotp, token.generate(&seed, 50).as_str()).await,
        Reason::WrongCode
    );
    admin
        .resync_hotp(ResyncHotpRequest {
            provider_id: provider.clone(),
            user: "alice".into(),
            first_code: token.generate(&seed, 50).as_str().into(),
            second_code: token.generate(&seed, 51).as_str().into(),
        })
        .await
        .unwrap();
    assert_eq!(
        login(&mut agent, Factor::Hotp, token.generate(&seed, 52).as_str()).await,
        Reason::Approved
    );

    // Backup codes: ten, each works once, case and dashes do not matter.
    let backup = enroll(&mut admin, &provider, Factor::BackupCode).await;
    assert_eq!(backup.backup_codes.len(), 10);
    let first = backup.backup_codes[0].to_uppercase();
    assert_eq!(login(&mut agent, Factor::BackupCode, &first).await, Reason::Approved);
    assert_eq!(login(&mut agent, Factor::BackupCode, &first).await, Reason::AlreadyUsed);
    // Regenerating invalidates the old list.
    let fresh = enroll(&mut admin, &provider, Factor::BackupCode).await;
    assert_eq!(
        login(&mut agent, Factor::BackupCode, &backup.backup_codes[1]).await,
        Reason::WrongCode
    );
    assert_eq!(
        login(&mut agent, Factor::BackupCode, &fresh.backup_codes[1].replace('-', "")).await,
        Reason::Approved
    );

    // Text logs written to a file, not a terminal, carry no colour codes.
    for service in stack.services() {
        let Some(log) = service.log_text() else { continue };
        let log = log.unwrap();
        assert!(log.contains(" INFO "), "{}", service.log_tail(5));
        assert!(!log.contains('\u{1b}'), "{}", service.log_tail(5));
    }
}

/// Many challenges answered at once with the same TOTP code: the code is
/// accepted exactly once, whichever answer gets there first.
#[tokio::test(flavor = "multi_thread")]
async fn one_totp_code_raced_on_many_challenges_approves_once() {
    let (_stack, mut tenant, seed) = alice_with_totp("+15550003002").await;

    let mut challenges = Vec::new();
    for _ in 0..8 {
        challenges.push(start(&mut tenant.agent, Factor::Totp).await);
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let code = Totp::default().generate(&seed, now);
    let answers = challenges.into_iter().map(|challenge_id| {
        let mut agent = tenant.agent.clone();
        let passcode = code.as_str().to_owned();
        tokio::spawn(async move {
            agent
                .verify_passcode(VerifyPasscodeRequest { challenge_id, passcode })
                .await
                .unwrap()
                .into_inner()
                .reason()
        })
    });
    assert_approved_once(answers).await;
}

/// Answers raced with one code: one approves; each of the others is told
/// the code was used or, since a replay counts as a failure and the fifth
/// locks the user out, that the user is locked out.
async fn assert_approved_once(answers: impl Iterator<Item = tokio::task::JoinHandle<Reason>>) {
    let reasons: Vec<Reason> = futures::future::join_all(answers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let approved = reasons.iter().filter(|r| **r == Reason::Approved).count();
    assert_eq!(approved, 1, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .all(|r| matches!(r, Reason::Approved | Reason::AlreadyUsed | Reason::LockedOut)),
        "{reasons:?}"
    );
}

/// Many logins in one call at once with the same TOTP code: however many
/// are decided without the user's lock, one claims the code's step and the
/// rest are told it was used.
#[tokio::test(flavor = "multi_thread")]
async fn one_totp_code_raced_on_many_logins_in_one_call_approves_once() {
    let (_stack, tenant, seed) = alice_with_totp("+15550003003").await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let code = Totp::default().generate(&seed, now);
    let logins = (0..8).map(|_| {
        let mut agent = tenant.agent.clone();
        let passcode = code.as_str().to_owned();
        tokio::spawn(async move { login_in_one_call(&mut agent, Factor::Totp, &passcode).await.reason() })
    });
    assert_approved_once(logins).await;
}

/// Authenticate carrying the code the user typed: one call, one final answer.
async fn login_in_one_call(agent: &mut AgentClient, factor: Factor, code: &str) -> AuthenticateResponse {
    agent
        .authenticate(AuthenticateRequest {
            username: "alice".into(),
            factor: factor as i32,
            client_ip: String::new(),
            passcode: code.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// A code sent with Authenticate starts and answers the challenge at once:
/// the answer is final, the code works once, a wrong one leaves the challenge
/// open to VerifyPasscode, a factor that takes no typed code is refused
/// without sending anything, and each login is billed once.
#[tokio::test(flavor = "multi_thread")]
async fn a_code_sent_with_authenticate_is_answered_in_one_call() {
    let stack = stack_without_user_limit().await;
    let phone = "+15550003004";
    let mut tenant = Tenant::create(&stack, "Acme").await.unwrap();
    tenant.add_user("alice", phone).await.unwrap();

    // Only SMS so far: a typed code has nothing to answer, and no SMS goes out.
    let sms = login_in_one_call(&mut tenant.agent, Factor::Sms, "123456").await;
    assert_eq!(
        (sms.decision(), sms.reason()),
        (Decision::Deny, Reason::InvalidRequest),
        "{sms:?}"
    );
    let none = login_in_one_call(&mut tenant.agent, Factor::Default, "123456").await;
    assert_eq!(
        (none.decision(), none.reason()),
        (Decision::Deny, Reason::NotEnrolled),
        "{none:?}"
    );

    // With TOTP enrolled, the default (SMS) is passed over for the factor
    // that takes the code.
    let totp = enroll(&mut tenant.admin, &tenant.provider_id, Factor::Totp).await;
    let seed = OtpSecret::from_base32(&totp.secret_base32).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let code = Totp::default().generate(&seed, now);
    let approved = login_in_one_call(&mut tenant.agent, Factor::Default, code.as_str()).await;
    assert_eq!(
        (approved.decision(), approved.reason(), approved.state()),
        (Decision::Allow, Reason::Approved, ChallengeState::Approved),
        "{approved:?}"
    );
    assert!(!approved.challenge_id.is_empty());
    // One call, one audit record: the answer, under `authenticate`.
    assert_eq!(
        tenant.audited(&approved.challenge_id).await.unwrap(),
        [("authenticate".to_owned(), Decision::Allow, Reason::Approved)]
    );
    let replayed = login_in_one_call(&mut tenant.agent, Factor::Totp, code.as_str()).await;
    assert_eq!(
        (replayed.decision(), replayed.reason()),
        (Decision::Deny, Reason::AlreadyUsed),
        "{replayed:?}"
    );

    // A wrong code: denied, and the challenge stays open for another try.
    let wrong = if code.as_str() == "000000" { "111111" } else { "000000" };
    let first_try = login_in_one_call(&mut tenant.agent, Factor::Totp, wrong).await;
    assert_eq!(
        (first_try.decision(), first_try.reason(), first_try.state()),
        (Decision::Deny, Reason::WrongCode, ChallengeState::Pending),
        "{first_try:?}"
    );
    assert!(first_try.attempts_remaining > 0, "{first_try:?}");
    let second_try = tenant
        .agent
        .verify_passcode(VerifyPasscodeRequest {
            challenge_id: first_try.challenge_id.clone(),
            passcode: wrong.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second_try.reason(), Reason::WrongCode, "{second_try:?}");
    assert_eq!(second_try.attempts_remaining, first_try.attempts_remaining - 1);
    assert_eq!(
        tenant.audited(&first_try.challenge_id).await.unwrap(),
        [
            ("authenticate".to_owned(), Decision::Deny, Reason::WrongCode),
            ("verify".to_owned(), Decision::Deny, Reason::WrongCode),
        ]
    );

    // Three challenges were started (approved, replayed, wrong): three
    // authentications, each counted once; nothing was sent by SMS.
    stack.authentications_counted(&tenant.provider_id, 3).await.unwrap();
    assert!(stack.sim_inbox(phone).await.unwrap().is_empty());

    // The operator's "test user" with the code the user reads out: one
    // call, exit 0 when it approves, 3 when it does not.
    let next = Totp::default().generate(&seed, now + 30);
    let (code, said) = cli_test_with_code(&stack, &tenant.agent, next.as_str()).await;
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("test passed"), "{said}");
    let (code, said) = cli_test_with_code(&stack, &tenant.agent, wrong).await;
    assert_eq!(code, Some(3), "{said}");
    assert!(said.contains("wrong_code") || said.contains("WRONG_CODE"), "{said}");

    // Started without a code: recorded as challenged.
    let started = start(&mut tenant.agent, Factor::Sms).await;
    assert_eq!(
        tenant.audited(&started).await.unwrap(),
        [("authenticate".to_owned(), Decision::Challenge, Reason::Enrolled)]
    );
}

/// The gateway resends a start that timed out with the same challenge id. A
/// login in one call is answered on its first try: the resend gets that
/// answer, and its own check of the code is not kept (no second attempt
/// counted).
#[tokio::test(flavor = "multi_thread")]
async fn a_retried_login_in_one_call_gets_its_first_answer() {
    let (stack, mut tenant, seed) = alice_with_totp("+15550003005").await;
    let start = |challenge_id: &str, passcode: &str| {
        let request = rpc::StartChallengeRequest {
            provider_id: tenant.provider_id.clone(),
            agent_id: tenant.agent.credential.agent_id.clone(),
            challenge_id: challenge_id.into(),
            username: "alice".into(),
            factor: Factor::Totp as i32,
            passcode: passcode.into(),
            ..Default::default()
        };
        let stack = &stack;
        async move { stack.start_challenge(&request).await.unwrap() }
    };
    let answer = |r: &rpc::StartChallengeReply| (r.decision(), r.reason(), r.state(), r.attempts_remaining);

    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let code = Totp::default().generate(&seed, now);
    let approved_id = ChallengeId::new().to_string();
    let id = approved_id.clone();
    let first = start(&id, code.as_str()).await;
    assert_eq!(
        answer(&first),
        (Decision::Allow, Reason::Approved, ChallengeState::Approved, 0),
        "{first:?}"
    );
    let resent = start(&id, code.as_str()).await;
    assert_eq!(answer(&resent), answer(&first), "{resent:?}");
    assert_eq!(resent.challenge_id, id);

    let wrong = if code.as_str() == "000000" { "111111" } else { "000000" };
    let wrong_id = ChallengeId::new().to_string();
    let id = wrong_id.clone();
    let first = start(&id, wrong).await;
    assert_eq!(
        (first.decision(), first.reason(), first.state()),
        (Decision::Deny, Reason::WrongCode, ChallengeState::Pending),
        "{first:?}"
    );
    assert!(first.attempts_remaining > 1, "{first:?}");
    let resent = start(&id, wrong).await;
    assert_eq!(answer(&resent), answer(&first), "{resent:?}");
    // The resend counted no attempt of its own: the next wrong code takes one.
    let next = tenant
        .agent
        .verify_passcode(VerifyPasscodeRequest {
            challenge_id: id.clone(),
            passcode: wrong.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.attempts_remaining, first.attempts_remaining - 1, "{next:?}");

    // And the challenge is still open to the right code.
    let right = Totp::default().generate(&seed, now + 30);
    let approved = tenant
        .agent
        .verify_passcode(VerifyPasscodeRequest {
            challenge_id: id,
            passcode: right.as_str().into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(approved.decision(), Decision::Allow, "{approved:?}");

    // Each resend left no audit record of its own.
    assert_eq!(
        tenant.audited(&approved_id).await.unwrap(),
        [("authenticate".to_owned(), Decision::Allow, Reason::Approved)]
    );
    assert_eq!(
        tenant.audited(&wrong_id).await.unwrap(),
        [
            ("authenticate".to_owned(), Decision::Deny, Reason::WrongCode),
            ("verify".to_owned(), Decision::Deny, Reason::WrongCode),
            ("verify".to_owned(), Decision::Allow, Reason::Approved),
        ]
    );
}

/// `vigil users test alice --passcode CODE` as an operator runs it: its exit
/// code and what it printed.
async fn cli_test_with_code(stack: &Stack, agent: &AgentClient, code: &str) -> (Option<i32>, String) {
    let output = tokio::process::Command::new(vigil_testkit::workspace_bin("vigil").unwrap())
        .args([
            "--gateway",
            &stack.grpc_url,
            "users",
            "test",
            "alice",
            "--passcode",
            code,
        ])
        .env("VIGIL_AGENT_ID", &agent.credential.agent_id)
        .env("VIGIL_AGENT_KEY", &agent.credential.key)
        .output()
        .await
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// A challenge takes three wrong codes (`VIGIL_MAX_VERIFY_ATTEMPTS`): each is
/// counted on the challenge, the third ends it as denied, and after that not
/// even the right code opens it.
#[tokio::test(flavor = "multi_thread")]
async fn wrong_codes_end_a_challenge_after_its_attempts() {
    let (stack, mut tenant, seed) = alice_with_totp("+15550003006").await;
    let challenge_id = start(&mut tenant.agent, Factor::Totp).await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let right = Totp::default().generate(&seed, now);
    let wrong = if right.as_str() == "000000" { "111111" } else { "000000" };
    let mut verify = async |passcode: &str| {
        tenant
            .agent
            .verify_passcode(VerifyPasscodeRequest {
                challenge_id: challenge_id.clone(),
                passcode: passcode.into(),
            })
            .await
            .unwrap()
            .into_inner()
    };
    let answers = [verify(wrong).await, verify(wrong).await, verify(wrong).await];
    let seen: Vec<_> = answers
        .iter()
        .map(|a| (a.reason(), a.state(), a.attempts_remaining))
        .collect();
    assert_eq!(
        seen,
        [
            (Reason::WrongCode, ChallengeState::Pending, 2),
            (Reason::WrongCode, ChallengeState::Pending, 1),
            (Reason::TooManyAttempts, ChallengeState::Denied, 0),
        ]
    );
    // Its end went out as an event (what WatchAuth wakes on).
    let ended = stack
        .wait_event::<ChallengeCompleted>("VIGIL_CHALLENGE", |e| e.challenge_id == challenge_id)
        .await
        .unwrap();
    assert_eq!(
        (ended.state(), ended.reason()),
        (ChallengeState::Denied, Reason::TooManyAttempts)
    );
    let late = verify(right.as_str()).await;
    assert_eq!(
        (late.decision(), late.state()),
        (Decision::Deny, ChallengeState::Denied),
        "{late:?}"
    );
    assert_eq!(
        tenant.audited(&challenge_id).await.unwrap(),
        [
            ("authenticate".to_owned(), Decision::Challenge, Reason::Enrolled),
            ("verify".to_owned(), Decision::Deny, Reason::WrongCode),
            ("verify".to_owned(), Decision::Deny, Reason::WrongCode),
            ("verify".to_owned(), Decision::Deny, Reason::TooManyAttempts),
            // The right code, too late: audited all the same.
            ("verify".to_owned(), Decision::Deny, Reason::TooManyAttempts),
        ]
    );
}
