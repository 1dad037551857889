//! RADIUS through the real binaries, driven by FreeRADIUS's real `radclient`
//! (Debian `freeradius-utils`) the way NPS, RD Gateway and VPNs talk to
//! Vigil: clients registered over the admin API, the Access-Challenge /
//! State round trip with an SMS code, second-factor mode waiting for a phone
//! or push answer, password-and-code mode with TOTP, reasons in Reply-Message, and
//! packets Vigil must not answer. A missing radclient fails the tests: a
//! skipped interop test would prove nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tonic::Code;
use vigil_e2e::{Admin, Stack, StackOptions, admin_client};
use vigil_otp::{OtpSecret, Totp};
use vigil_proto::v1::{
    AgentKind, CreateAdminTokenRequest, CreateAgentRequest, CreateProviderRequest, CreateRadiusClientRequest,
    CreateUserRequest, DeleteRadiusClientRequest, EnrollFactorRequest, Factor, ListAgentsRequest,
    ListRadiusClientsRequest, RadiusMode, UpdateUserRequest, UsageModel,
};
use vigil_proto::v1::{AuditKind, Decision, GetDirectoryRequest, ListAuditRequest, Reason, SetDirectoryRequest};
use vigil_testkit::SlapdServer;

const SECRET: &str = "radius-shared-secret-0123";
const PHONE: &str = "+15550006001";
/// radclient must send Message-Authenticator (Blast-RADIUS): `0x00` asks it to compute one.
const MA: &str = "Message-Authenticator = 0x00";

/// What radclient printed (with `-x`) and whether it got an answer it accepted.
struct Exchange {
    output: String,
    success: bool,
}

impl Exchange {
    /// `Access-Accept`, `Access-Reject`, `Access-Challenge`, or `None` when nothing came back.
    fn answer(&self) -> Option<&str> {
        self.output
            .lines()
            .find_map(|l| l.strip_prefix("Received "))
            .and_then(|l| l.split_whitespace().next())
    }

    fn attribute(&self, name: &str) -> Option<String> {
        let prefix = format!("{name} = ");
        self.output
            .lines()
            .find_map(|l| l.trim().strip_prefix(&prefix).map(|v| v.trim_matches('"').to_owned()))
    }

    fn reply_message(&self) -> String {
        self.attribute("Reply-Message").unwrap_or_default()
    }

    fn sent(&self) -> usize {
        self.output.matches("Sent Access-Request").count()
    }
}

/// One radclient run: `attributes` on stdin, `timeout` seconds per try, `tries` tries.
async fn radclient(stack: &Stack, secret: &str, attributes: &str, timeout: &str, tries: u32) -> Exchange {
    let (output, status) = vigil_testkit::radclient::run(
        &stack.radius_addr,
        secret,
        attributes,
        (timeout, tries),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    Exchange {
        output,
        success: status.success(),
    }
}

/// An Access-Request as a NAS sends it: PAP, with Message-Authenticator.
async fn login(stack: &Stack, username: &str, password: &str) -> Exchange {
    // A few tries: the first packet may race the client list's reload after an admin change.
    radclient(
        stack,
        SECRET,
        &format!("User-Name = {username}, User-Password = \"{password}\", {MA}"),
        "1",
        3,
    )
    .await
}

async fn answer_challenge(stack: &Stack, username: &str, state: &str, code: &str) -> Exchange {
    let attributes = format!("User-Name = {username}, User-Password = \"{code}\", State = {state}, {MA}");
    radclient(stack, SECRET, &attributes, "1", 1).await
}

async fn provider(admin: &mut Admin, name: &str) -> String {
    admin
        .create_provider(CreateProviderRequest {
            name: name.into(),
            usage_model: UsageModel::PerAuthentication as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .id
}

/// `username`'s authentication audit records, oldest first: what was done,
/// decided and why.
async fn audited(admin: &mut Admin, provider_id: &str, username: &str) -> Vec<(String, Decision, Reason)> {
    let entries = admin
        .list_audit(ListAuditRequest {
            provider_id: provider_id.into(),
            user: username.into(),
            kind: AuditKind::Authentication as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    entries
        .iter()
        .rev()
        .map(|e| (e.action.clone(), e.decision(), e.reason()))
        .collect()
}

/// Enrols `username` in TOTP; the seed the authenticator app would get.
async fn totp_seed(admin: &mut Admin, provider_id: &str, username: &str) -> OtpSecret {
    let enrolled = admin
        .enroll_factor(EnrollFactorRequest {
            provider_id: provider_id.into(),
            user: username.into(),
            factor: Factor::Totp as i32,
        })
        .await
        .unwrap()
        .into_inner();
    OtpSecret::from_base32(&enrolled.secret_base32).unwrap()
}

async fn user(admin: &mut Admin, provider_id: &str, username: &str, phone: &str) {
    admin
        .create_user(CreateUserRequest {
            provider_id: provider_id.into(),
            username: username.into(),
            display_name: username.into(),
            sms_phone: phone.into(),
        })
        .await
        .unwrap();
}

fn client(provider_id: &str, mode: RadiusMode) -> CreateRadiusClientRequest {
    CreateRadiusClientRequest {
        provider_id: provider_id.into(),
        agent_id: String::new(),
        name: "vpn-01".into(),
        source_cidr: "127.0.0.1".into(),
        shared_secret: SECRET.into(),
        mode: mode as i32,
        timeout_seconds: 0,
    }
}

fn why(stack: &Stack, exchange: &Exchange) -> String {
    format!("{}\n{}", exchange.output, stack.log_tails(30))
}

/// The answer was an Access-Reject whose Reply-Message gives `reason`.
fn assert_rejected(stack: &Stack, exchange: &Exchange, reason: &str) {
    assert_eq!(exchange.answer(), Some("Access-Reject"), "{}", why(stack, exchange));
    assert!(
        exchange.reply_message().starts_with(&format!("DENY {reason}:")),
        "{}",
        exchange.output
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn radius_clients_are_managed_per_provider_with_bad_input_refused() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack starts");
    let mut admin = admin_client(&stack.grpc_url, &stack.admin_token).await.unwrap();
    let acme = provider(&mut admin, "Acme").await;
    let globex = provider(&mut admin, "Globex").await;

    let created = admin
        .create_radius_client(client(&acme, RadiusMode::Challenge))
        .await
        .unwrap()
        .into_inner();
    assert!(created.id.starts_with("rcl_"), "{created:?}");
    assert_eq!(created.source_cidr, "127.0.0.1/32");
    assert_eq!(created.mode(), RadiusMode::Challenge);
    assert_eq!(created.timeout_seconds, 60);
    // An agent of kind radius was made for it.
    let agents = admin
        .list_agents(ListAgentsRequest {
            provider_id: acme.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .agents;
    assert!(
        agents
            .iter()
            .any(|a| a.id == created.agent_id && a.kind() == AgentKind::Radius),
        "{agents:?}"
    );

    let refused = {
        let admin = admin.clone();
        move |request: CreateRadiusClientRequest| {
            let mut admin = admin.clone();
            async move { admin.create_radius_client(request).await.unwrap_err() }
        }
    };
    let other_net = |r: CreateRadiusClientRequest| CreateRadiusClientRequest {
        source_cidr: "192.0.2.0/24".into(),
        ..r
    };
    for (request, code, needle) in [
        (
            CreateRadiusClientRequest {
                shared_secret: "short".into(),
                ..other_net(client(&acme, RadiusMode::Challenge))
            },
            Code::InvalidArgument,
            "shared_secret",
        ),
        (
            CreateRadiusClientRequest {
                source_cidr: "vpn.example.com".into(),
                ..client(&acme, RadiusMode::Challenge)
            },
            Code::InvalidArgument,
            "source_cidr",
        ),
        (
            CreateRadiusClientRequest {
                source_cidr: "0.0.0.0/0".into(),
                ..client(&acme, RadiusMode::Challenge)
            },
            Code::InvalidArgument,
            "too wide",
        ),
        (
            other_net(client(&acme, RadiusMode::Unspecified)),
            Code::InvalidArgument,
            "mode",
        ),
        (
            CreateRadiusClientRequest {
                timeout_seconds: 1000,
                ..other_net(client(&acme, RadiusMode::SecondFactor))
            },
            Code::InvalidArgument,
            "timeout_seconds",
        ),
        // Packets are told apart by source address, across providers too.
        (
            client(&globex, RadiusMode::Challenge),
            Code::AlreadyExists,
            "already registered",
        ),
        // Another provider's agent is not there for Globex.
        (
            CreateRadiusClientRequest {
                agent_id: created.agent_id.clone(),
                ..other_net(client(&globex, RadiusMode::Challenge))
            },
            Code::NotFound,
            "does not exist",
        ),
    ] {
        let status = refused(request).await;
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains(needle), "{status:?}");
    }

    // An existing agent must be of kind radius.
    let rdp = admin
        .create_agent(CreateAgentRequest {
            provider_id: acme.clone(),
            name: "rdp".into(),
            kind: AgentKind::Rdp as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let status = refused(CreateRadiusClientRequest {
        agent_id: rdp.agent_id,
        ..other_net(client(&acme, RadiusMode::Challenge))
    })
    .await;
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");

    // Tenant isolation: Globex's admin token neither sees nor deletes Acme's client.
    let token = admin
        .create_admin_token(CreateAdminTokenRequest {
            provider_id: globex.clone(),
            description: "globex admin".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let mut globex_admin = admin_client(&stack.grpc_url, &token).await.unwrap();
    let status = globex_admin
        .list_radius_clients(ListRadiusClientsRequest {
            provider_id: acme.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = globex_admin
        .delete_radius_client(DeleteRadiusClientRequest {
            radius_client_id: created.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = admin
        .delete_radius_client(DeleteRadiusClientRequest {
            radius_client_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    let listed = admin
        .list_radius_clients(ListRadiusClientsRequest {
            provider_id: acme.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .clients;
    assert_eq!(listed, vec![created.clone()], "the secret is never returned");
    admin
        .delete_radius_client(DeleteRadiusClientRequest {
            radius_client_id: created.id.clone(),
        })
        .await
        .unwrap();
    let listed = admin
        .list_radius_clients(ListRadiusClientsRequest { provider_id: acme })
        .await
        .unwrap()
        .into_inner()
        .clients;
    assert!(listed.is_empty());
    // A deleted client is a stranger: its packets get no answer.
    let gone = radclient(
        &stack,
        SECRET,
        &format!("User-Name = alice, User-Password = x, {MA}"),
        "1",
        1,
    )
    .await;
    assert_eq!(gone.answer(), None, "{}", why(&stack, &gone));
}

#[tokio::test(flavor = "multi_thread")]
async fn challenge_mode_round_trip_with_an_sms_code() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack starts");
    let mut admin = admin_client(&stack.grpc_url, &stack.admin_token).await.unwrap();
    let acme = provider(&mut admin, "Acme").await;
    user(&mut admin, &acme, "alice", PHONE).await;
    user(&mut admin, &acme, "bob", "+15550006002").await;
    admin
        .create_radius_client(client(&acme, RadiusMode::Challenge))
        .await
        .unwrap();

    // First round: Access-Challenge with a State and where the code went.
    let first = login(&stack, "alice", "ad-password").await;
    assert_eq!(first.answer(), Some("Access-Challenge"), "{}", why(&stack, &first));
    assert!(
        first.reply_message().starts_with("Enter the code sent to +155"),
        "{}",
        first.output
    );
    assert!(!first.reply_message().contains(PHONE), "the phone number is masked");
    let state = first.attribute("State").expect("State in the challenge");
    let code = stack.sms_code(PHONE, 1).await.unwrap();

    // A State is bound to its user: bob cannot answer alice's challenge.
    let stolen = answer_challenge(&stack, "bob", &state, &code).await;
    assert_rejected(&stack, &stolen, "invalid_request");

    // Second round: State + code → Access-Accept.
    let second = answer_challenge(&stack, "alice", &state, &code).await;
    assert_eq!(second.answer(), Some("Access-Accept"), "{}", why(&stack, &second));
    assert!(second.success, "{}", second.output);
    assert_eq!(second.reply_message(), "ALLOW approved: approved");
    // The code worked once.
    let again = answer_challenge(&stack, "alice", &state, &code).await;
    assert_rejected(&stack, &again, "already_used");

    // A wrong code is rejected with its reason.
    let first = login(&stack, "alice", "ad-password").await;
    assert_eq!(first.answer(), Some("Access-Challenge"), "{}", why(&stack, &first));
    let state = first.attribute("State").unwrap();
    let code = stack.sms_code(PHONE, 2).await.unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let rejected = answer_challenge(&stack, "alice", &state, wrong).await;
    assert_eq!(rejected.answer(), Some("Access-Reject"), "{}", why(&stack, &rejected));
    assert_eq!(rejected.reply_message(), "DENY wrong_code: the code is not correct");

    // A forged State never reaches the challenge service.
    let forged = answer_challenge(&stack, "alice", "0x63686c5f", &code).await;
    assert_rejected(&stack, &forged, "invalid_request");

    // Unknown users are denied with the policy's reason (require_user_match).
    let unknown = login(&stack, "mallory", "pw").await;
    assert_rejected(&stack, &unknown, "unknown_user");

    // A wrong shared secret, or no Message-Authenticator: no answer at all.
    let wrong_secret = radclient(
        &stack,
        "not-the-shared-secret",
        &format!("User-Name = alice, User-Password = pw, {MA}"),
        "1",
        1,
    )
    .await;
    assert_eq!(wrong_secret.answer(), None, "{}", wrong_secret.output);
    assert!(!wrong_secret.success);
    let no_ma = radclient(&stack, SECRET, "User-Name = alice, User-Password = pw", "1", 1).await;
    assert_eq!(no_ma.answer(), None, "{}", no_ma.output);
    assert!(!no_ma.success);
    // Neither started a challenge.
    assert_eq!(stack.sim_inbox(PHONE).await.unwrap().len(), 2);
}

/// A stack with provider Acme, user alice and a second-factor RADIUS client
/// that waits up to 20 seconds.
async fn second_factor_stack() -> (Stack, Admin, String) {
    let stack = Stack::start(StackOptions::default()).await.expect("stack starts");
    let mut admin = admin_client(&stack.grpc_url, &stack.admin_token).await.unwrap();
    let acme = provider(&mut admin, "Acme").await;
    user(&mut admin, &acme, "alice", PHONE).await;
    admin
        .create_radius_client(CreateRadiusClientRequest {
            timeout_seconds: 20,
            ..client(&acme, RadiusMode::SecondFactor)
        })
        .await
        .unwrap();
    (stack, admin, acme)
}

/// The NAS retransmits every half second while `user` (a task) answers on
/// the phone; the one answer is an Access-Accept.
async fn approved_while_retransmitting(stack: &Stack, user: tokio::task::JoinHandle<()>) {
    let approved = radclient(
        stack,
        SECRET,
        &format!("User-Name = alice, User-Password = checked-by-nas, {MA}"),
        "0.5",
        20,
    )
    .await;
    user.await.unwrap();
    assert_eq!(approved.answer(), Some("Access-Accept"), "{}", why(stack, &approved));
    assert_eq!(approved.reply_message(), "ALLOW approved: the user approved");
    assert!(approved.sent() >= 2, "radclient retransmitted: {}", approved.output);
}

#[tokio::test(flavor = "multi_thread")]
async fn second_factor_mode_waits_for_the_phone_and_duplicates_are_answered_once() {
    let (stack, mut admin, acme) = second_factor_stack().await;

    // Two-way SMS as the default factor: the NAS retransmits every half
    // second while the user reads the SMS and replies YES; one challenge, one
    // SMS, one answer.
    let replier = tokio::spawn({
        let sim = stack.sim_url.clone();
        async move {
            vigil_testkit::wait_until(Duration::from_secs(15), "the SMS", || {
                let sim = sim.clone();
                async move {
                    let inbox: Vec<serde_json::Value> =
                        reqwest::get(format!("{sim}/sim/inbox/{PHONE}")).await?.json().await?;
                    anyhow::Ok((!inbox.is_empty()).then_some(()))
                }
            })
            .await
            .unwrap();
            // Long enough for several retransmissions.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            reqwest::Client::new()
                .post(format!("{sim}/sim/phones/{PHONE}/reply"))
                .json(&json!({"body": "YES"}))
                .send()
                .await
                .unwrap()
                .error_for_status()
                .unwrap();
        }
    });
    approved_while_retransmitting(&stack, replier).await;
    assert_eq!(
        stack.sim_inbox(PHONE).await.unwrap().len(),
        1,
        "the retransmissions started no second challenge"
    );

    // Voice as the default factor: a wrong PIN is a deny, the right one an accept.
    admin
        .update_user(UpdateUserRequest {
            provider_id: acme.clone(),
            user: "alice".into(),
            pin: Some("4711".into()),
            default_factor: Some(Factor::Voice as i32),
            ..Default::default()
        })
        .await
        .unwrap();
    let phone_does = |digits: &'static str| {
        let sim = stack.sim_url.clone();
        async move {
            reqwest::Client::new()
                .put(format!("{sim}/sim/phones/{PHONE}/voice"))
                .json(&json!({"action": "answer", "digits": digits}))
                .send()
                .await
                .unwrap()
                .error_for_status()
                .unwrap();
        }
    };
    phone_does("1234#").await;
    let denied = login(&stack, "alice", "checked-by-nas").await;
    assert_rejected(&stack, &denied, "wrong_code");
    phone_does("4711#").await;
    let accepted = login(&stack, "alice", "checked-by-nas").await;
    assert_eq!(accepted.answer(), Some("Access-Accept"), "{}", why(&stack, &accepted));
}

/// Enrols a simulated phone for `username`'s push, with the phone's script.
async fn enrol_phone(
    stack: &Stack,
    admin: &mut Admin,
    provider_id: &str,
    username: &str,
    script: serde_json::Value,
) -> String {
    let issued = admin
        .enroll_factor(EnrollFactorRequest {
            provider_id: provider_id.into(),
            user: username.into(),
            factor: Factor::Push as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let enrolled: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/sim/devices/enroll", stack.sim_url))
        .json(&json!({"payload": issued.enrollment_uri, "behaviour": script}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(enrolled["enrolled"], true, "{enrolled}");
    admin
        .update_user(UpdateUserRequest {
            provider_id: provider_id.into(),
            user: username.into(),
            default_factor: Some(Factor::Push as i32),
            ..Default::default()
        })
        .await
        .unwrap();
    enrolled["device_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn second_factor_mode_with_push_accepts_an_approval_once_and_rejects_a_deny() {
    let (stack, mut admin, acme) = second_factor_stack().await;
    // The first push is read and answered a while later; the second is denied at once.
    let device = enrol_phone(
        &stack,
        &mut admin,
        &acme,
        "alice",
        json!({"action": "deny", "script": [{"action": "ignore"}]}),
    )
    .await;
    let sim = stack.sim_url.clone();
    let approver = tokio::spawn({
        let sim = sim.clone();
        let device = device.clone();
        async move {
            vigil_testkit::wait_until(Duration::from_secs(15), "the push", || {
                let sim = sim.clone();
                let device = device.clone();
                async move {
                    let pushes: Vec<serde_json::Value> = reqwest::get(format!("{sim}/sim/devices/{device}/pushes"))
                        .await?
                        .json()
                        .await?;
                    anyhow::Ok((!pushes.is_empty()).then_some(()))
                }
            })
            .await
            .unwrap();
            // Long enough for the NAS to retransmit several times.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let answered: serde_json::Value = reqwest::Client::new()
                .post(format!("{sim}/sim/devices/{device}/answer"))
                .json(&json!({"action": "approve"}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(answered["status"], 200, "{answered}");
        }
    });
    approved_while_retransmitting(&stack, approver).await;
    let pushes: Vec<serde_json::Value> = reqwest::get(format!("{sim}/sim/devices/{device}/pushes"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pushes.len(), 1, "the retransmissions started no second push");
    // A NAS cannot show a number: RADIUS pushes are plain approve / deny.
    assert_eq!(pushes[0]["data"]["match_choices"], "");

    let denied = login(&stack, "alice", "checked-by-nas").await;
    assert_rejected(&stack, &denied, "denied");
}

/// A stack with `options` beside a directory where alice's password is
/// `hunter2`; Acme has alice and a password-and-code RADIUS client.
async fn password_code_stack(options: StackOptions) -> (Stack, SlapdServer, Admin, String) {
    let (stack, slapd) = tokio::join!(
        Stack::start(options),
        SlapdServer::start(
            "dn: ou=people,dc=example,dc=org\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: uid=alice,ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: alice\ncn: Alice\n\
             sn: Example\nuserPassword: hunter2\n",
        )
    );
    let (stack, slapd) = (stack.expect("stack starts"), slapd.expect("slapd starts"));
    let mut admin = admin_client(&stack.grpc_url, &stack.admin_token).await.unwrap();
    let acme = provider(&mut admin, "Acme").await;
    user(&mut admin, &acme, "alice", PHONE).await;
    admin
        .create_radius_client(client(&acme, RadiusMode::PasswordCode))
        .await
        .unwrap();
    (stack, slapd, admin, acme)
}

/// Points `provider_id`'s password checks at `slapd`'s people.
fn people_directory(provider_id: &str, slapd: &SlapdServer) -> SetDirectoryRequest {
    SetDirectoryRequest {
        provider_id: provider_id.to_owned(),
        url: slapd.url(),
        bind_dn_template: "uid={username},ou=people,dc=example,dc=org".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn password_code_mode_asks_policy_before_the_directory() {
    // Three Access-Requests a minute for a user: the fourth password is
    // never tried.
    let options = StackOptions {
        env: vec![("challenge", "VIGIL_RATE_LIMIT_USER_MAX", "3".into())],
        ..Default::default()
    };
    let (stack, slapd, mut admin, acme) = password_code_stack(options).await;
    admin.set_directory(people_directory(&acme, &slapd)).await.unwrap();
    let seed = totp_seed(&mut admin, &acme, "alice").await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    // Each login counts once, though the gateway asks policy, then starts
    // and answers the challenge: two logins that pass leave room for one.
    for step in [now - 30, now] {
        let code = Totp::default().generate(&seed, step);
        let accepted = login(&stack, "alice", &format!("hunter2{}", code.as_str())).await;
        assert_eq!(accepted.answer(), Some("Access-Accept"), "{}", why(&stack, &accepted));
    }
    let wrong = login(&stack, "alice", "guess01123456").await;
    assert!(
        wrong.reply_message().starts_with("DENY wrong_password:"),
        "{}",
        why(&stack, &wrong)
    );
    // Even the right password: refused by the rate limit, not by the directory.
    let code = Totp::default().generate(&seed, now + 30);
    let limited = login(&stack, "alice", &format!("hunter2{}", code.as_str())).await;
    assert_rejected(&stack, &limited, "rate_limited");
    // Each login is recorded once: the policy check before the password is
    // recorded only when it is what refuses the login.
    let audited = audited(&mut admin, &acme, "alice").await;
    let approved = ("authenticate".to_owned(), Decision::Allow, Reason::Approved);
    assert_eq!(audited.iter().filter(|a| **a == approved).count(), 2, "{audited:?}");
    assert!(
        audited
            .iter()
            .all(|(action, decision, _)| action != "preauth" || *decision == Decision::Deny),
        "{audited:?}"
    );
    assert_eq!(
        audited.last(),
        Some(&("preauth".to_owned(), Decision::Deny, Reason::RateLimited)),
        "{audited:?}"
    );
    assert_eq!(audited.len(), 4, "{audited:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn password_code_mode_checks_the_password_in_the_directory_and_the_totp_code() {
    let (mut stack, slapd, mut admin, acme) = password_code_stack(StackOptions::default()).await;

    // No directory to check the password against: refused, and said so.
    let no_directory = login(&stack, "alice", "hunter2123456").await;
    assert_rejected(&stack, &no_directory, "no_directory");
    admin.set_directory(people_directory(&acme, &slapd)).await.unwrap();
    for bad in [
        SetDirectoryRequest {
            url: "http://ldap.example.org".into(),
            bind_dn_template: "uid={username},dc=example,dc=org".into(),
            ..Default::default()
        },
        SetDirectoryRequest {
            url: slapd.url(),
            bind_dn_template: "cn=everyone,dc=example,dc=org".into(),
            ..Default::default()
        },
        SetDirectoryRequest {
            url: slapd.url(),
            search_bind_dn: "cn=reader,dc=example,dc=org".into(),
            ..Default::default()
        },
    ] {
        let refused = admin
            .set_directory(SetDirectoryRequest {
                provider_id: acme.clone(),
                ..bad
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{}", refused.message());
    }
    let shown = admin
        .get_directory(GetDirectoryRequest {
            provider_id: acme.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(shown.configured && shown.url == slapd.url(), "{shown:?}");
    let wrong_password = login(&stack, "alice", "hunter3123456").await;
    assert_rejected(&stack, &wrong_password, "wrong_password");
    // Only a code: an empty password is never an LDAP bind that "succeeds".
    let only_code = login(&stack, "alice", "123456").await;
    assert!(
        only_code.reply_message().starts_with("DENY wrong_password:"),
        "{}",
        only_code.output
    );
    let refused = admin
        .list_audit(ListAuditRequest {
            provider_id: acme.clone(),
            user: "alice".into(),
            kind: AuditKind::Authentication as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        refused
            .entries
            .iter()
            .any(|e| e.reason() == Reason::WrongPassword && e.decision() == Decision::Deny),
        "{refused:#?}"
    );
    assert!(
        !format!("{refused:?}").contains("hunter3"),
        "no password in the audit log"
    );

    // The right password, but not enrolled in TOTP yet: the reason says so.
    let not_yet = login(&stack, "alice", "hunter2123456").await;
    assert_rejected(&stack, &not_yet, "not_enrolled");

    let seed = totp_seed(&mut admin, &acme, "alice").await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let code = Totp::default().generate(&seed, now);

    let missing = login(&stack, "alice", "hunter2").await;
    assert_rejected(&stack, &missing, "invalid_request");
    let wrong = if code.as_str() == "000000" { "111111" } else { "000000" };
    let rejected = login(&stack, "alice", &format!("hunter2{wrong}")).await;
    assert_rejected(&stack, &rejected, "wrong_code");
    let accepted = login(&stack, "alice", &format!("hunter2{}", code.as_str())).await;
    assert_eq!(accepted.answer(), Some("Access-Accept"), "{}", why(&stack, &accepted));
    // A TOTP code works once.
    let replayed = login(&stack, "alice", &format!("hunter2{}", code.as_str())).await;
    assert_rejected(&stack, &replayed, "already_used");

    // The gateway keeps directories in memory with their connections open;
    // a change through the admin API holds from the next login on.
    admin
        .set_directory(SetDirectoryRequest {
            url: format!("ldap://127.0.0.1:{}", vigil_testkit::free_port()),
            ..people_directory(&acme, &slapd)
        })
        .await
        .unwrap();
    let moved = login(&stack, "alice", "hunter2123456").await;
    assert_rejected(&stack, &moved, "unavailable");
    admin
        .set_directory(SetDirectoryRequest {
            provider_id: acme.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let removed = login(&stack, "alice", "hunter2123456").await;
    assert_rejected(&stack, &removed, "no_directory");

    // Fail closed: with the challenge service gone, the answer is a reject with a reason.
    stack.challenge.kill();
    stack.challenge.wait_exit(Duration::from_secs(10)).await.unwrap();
    let code = Totp::default().generate(&seed, now + 30);
    let down = login(&stack, "alice", &format!("hunter2{}", code.as_str())).await;
    assert_rejected(&stack, &down, "unavailable");
}
