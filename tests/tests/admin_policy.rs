//! The admin side through the real binaries: activation credentials, signed
//! agent requests, provider admin tokens and tenant isolation, users and CSV
//! import, and every policy decision with its reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tonic::Code;
use vigil_agent_auth::{AgentCredential, methods};
use vigil_e2e::{Admin, AgentClient, Stack, StackOptions, admin_client, agent_client, registration_client};
use vigil_proto::v1::{
    self as api, AgentKind, AuthenticateRequest, CreateActivationRequest, CreateAdminTokenRequest,
    CreateProviderRequest, CreateUserRequest, Decision, ExplainLoginRequest, Factor, GetProviderRequest,
    ImportUsersRequest, ListUsersRequest, PreauthRequest, Reason, RegisterAgentRequest, UpdateAgentRequest,
    UpdateProviderRequest, UpdateUserRequest, UsageModel, UserStatus, VerifyPasscodeRequest,
};

async fn provider(admin: &mut Admin, name: &str) -> String {
    admin
        .create_provider(CreateProviderRequest {
            name: name.into(),
            usage_model: UsageModel::PerAuthentication as i32,
        })
        .await
        .expect("provider")
        .into_inner()
        .id
}

fn login(username: &str, client_ip: &str) -> AuthenticateRequest {
    AuthenticateRequest {
        username: username.into(),
        factor: Factor::Sms as i32,
        client_ip: client_ip.into(),
        ..Default::default()
    }
}

async fn decide(agent: &mut AgentClient, username: &str, client_ip: &str) -> (Decision, Reason) {
    let r = agent
        .authenticate(login(username, client_ip))
        .await
        .expect("authenticate")
        .into_inner();
    (r.decision(), r.reason())
}

/// Registers an agent through activation credentials, as agents in the field do.
async fn activated_agent(stack: &Stack, admin: &mut Admin, provider_id: &str) -> AgentClient {
    let creds = admin
        .create_activation(CreateActivationRequest {
            provider_id: provider_id.into(),
        })
        .await
        .expect("activation")
        .into_inner();
    let mut registration = registration_client(&stack.grpc_url).await.expect("connect");
    let registered = registration
        .register(RegisterAgentRequest {
            login: creds.login,
            password: creds.password,
            name: "rdp-01".into(),
            kind: AgentKind::Rdp as i32,
        })
        .await
        .expect("register")
        .into_inner();
    assert_eq!(registered.provider_id, provider_id);
    agent_client(&stack.grpc_url, &registered.agent_id, &registered.agent_key)
        .await
        .expect("agent")
}

#[tokio::test(flavor = "multi_thread")]
async fn activation_credentials_are_one_time_expiring_and_audited() {
    let stack = Stack::start(StackOptions {
        activation_ttl_secs: 3,
        ..Default::default()
    })
    .await
    .expect("stack starts");
    let mut admin = admin_client(&stack.grpc_url, &stack.admin_token).await.unwrap();
    let acme = provider(&mut admin, "Acme").await;
    let mut registration = registration_client(&stack.grpc_url).await.unwrap();
    let activate = |admin: &mut Admin| {
        let mut admin = admin.clone();
        let acme = acme.clone();
        async move {
            admin
                .create_activation(CreateActivationRequest { provider_id: acme })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let register = |login: &str, password: &str| RegisterAgentRequest {
        login: login.into(),
        password: password.into(),
        name: "vpn".into(),
        kind: AgentKind::Radius as i32,
    };

    let first = activate(&mut admin).await;
    let wrong = registration
        .register(register(&first.login, "not-the-password"))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert!(wrong.message().contains("activation_invalid"), "{}", wrong.message());

    // Regenerating invalidates the previous credentials.
    let second = activate(&mut admin).await;
    let replaced = registration
        .register(register(&first.login, &first.password))
        .await
        .unwrap_err();
    assert_eq!(replaced.code(), Code::FailedPrecondition);
    assert!(
        replaced.message().contains("activation_replaced"),
        "{}",
        replaced.message()
    );

    let ok = registration
        .register(register(&second.login, &second.password))
        .await
        .unwrap()
        .into_inner();
    assert!(ok.agent_key.starts_with("vak_"));
    let reused = registration
        .register(register(&second.login, &second.password))
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::FailedPrecondition);
    assert!(reused.message().contains("activation_used"), "{}", reused.message());

    let third = activate(&mut admin).await;
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let expired = registration
        .register(register(&third.login, &third.password))
        .await
        .unwrap_err();
    assert_eq!(expired.code(), Code::FailedPrecondition);
    assert!(
        expired.message().contains("activation_expired"),
        "{}",
        expired.message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_requests_must_be_signed_fresh_and_from_an_enabled_agent() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack starts");
    let mut admin = admin_client(&stack.grpc_url, &stack.admin_token).await.unwrap();
    let acme = provider(&mut admin, "Acme").await;
    let mut agent = activated_agent(&stack, &mut admin, &acme).await;
    let preauth = || PreauthRequest {
        username: "nobody".into(),
        client_ip: String::new(),
    };
    // Unknown users are denied with a reason by default.
    let answer = agent.preauth(preauth()).await.unwrap().into_inner();
    assert_eq!(
        (answer.decision(), answer.reason()),
        (Decision::Deny, Reason::UnknownUser)
    );

    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let nonce = "replayed-nonce-0123456789";
    let credential = agent.credential.clone();
    agent
        .raw
        .preauth(credential.sign_at(methods::PREAUTH, preauth(), now, nonce))
        .await
        .unwrap();
    let replay = agent
        .raw
        .preauth(credential.sign_at(methods::PREAUTH, preauth(), now, nonce))
        .await;
    assert_eq!(
        replay.unwrap_err().code(),
        Code::Unauthenticated,
        "a replayed nonce is refused"
    );
    let stale = agent
        .raw
        .preauth(credential.sign_at(methods::PREAUTH, preauth(), now - 3_600, "stale-nonce-0123456789"))
        .await;
    assert_eq!(
        stale.unwrap_err().code(),
        Code::Unauthenticated,
        "an old timestamp is refused"
    );
    let wrong_method = agent
        .raw
        .preauth(credential.sign(methods::AUTHENTICATE, preauth()))
        .await;
    assert_eq!(wrong_method.unwrap_err().code(), Code::Unauthenticated);
    let forged = AgentCredential {
        agent_id: credential.agent_id.clone(),
        key: "vak_forged".into(),
    };
    let forged = agent.raw.preauth(forged.sign(methods::PREAUTH, preauth())).await;
    assert_eq!(forged.unwrap_err().code(), Code::Unauthenticated);
    // A forgery does not spend the nonce it carries: the agent's own request
    // with that nonce still goes through.
    let (forger, own_nonce) = (
        AgentCredential {
            agent_id: credential.agent_id.clone(),
            key: "vak_forged".into(),
        },
        "nonce-a-forger-tried-first-0123",
    );
    let forged = agent
        .raw
        .preauth(forger.sign_at(methods::PREAUTH, preauth(), now, own_nonce))
        .await;
    assert_eq!(forged.unwrap_err().code(), Code::Unauthenticated);
    agent
        .raw
        .preauth(credential.sign_at(methods::PREAUTH, preauth(), now, own_nonce))
        .await
        .expect("the nonce is still the agent's to use");
    let mut unsigned = agent.raw.clone();
    assert_eq!(
        unsigned.preauth(preauth()).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    // A disabled agent is refused at once; enabled again, it works again.
    let set_enabled = |enabled: bool| UpdateAgentRequest {
        agent_id: credential.agent_id.clone(),
        enabled: Some(enabled),
        ..Default::default()
    };
    admin.update_agent(set_enabled(false)).await.unwrap();
    assert_eq!(
        agent.preauth(preauth()).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    admin.update_agent(set_enabled(true)).await.unwrap();
    agent.preauth(preauth()).await.unwrap();
    // Disabled through another gateway replica, as if: this gateway holds
    // the agent in memory, and refuses it at once all the same.
    let gateway_db = sqlx::PgPool::connect(&stack.pg.url_for("vigil_gateway")).await.unwrap();
    let agent_uuid = vigil_core::AgentId::parse(&credential.agent_id).unwrap().as_uuid();
    let set_in_db = |enabled: bool| {
        sqlx::query("UPDATE agents SET enabled = $2 WHERE id = $1")
            .bind(agent_uuid)
            .bind(enabled)
            .execute(&gateway_db)
    };
    set_in_db(false).await.unwrap();
    assert_eq!(
        agent.preauth(preauth()).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    set_in_db(true).await.unwrap();
    agent.preauth(preauth()).await.unwrap();
    admin
        .delete_agent(api::DeleteAgentRequest {
            agent_id: credential.agent_id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        agent.preauth(preauth()).await.unwrap_err().code(),
        Code::Unauthenticated
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_tokens_are_scoped_and_the_usage_model_is_fixed() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack starts");
    let mut operator = admin_client(&stack.grpc_url, &stack.admin_token).await.unwrap();
    let acme = provider(&mut operator, "Acme").await;
    let globex = provider(&mut operator, "Globex").await;

    let mut nobody = admin_client(&stack.grpc_url, "vat_not-a-token-at-all").await.unwrap();
    let refused = nobody
        .get_provider(GetProviderRequest {
            provider_id: acme.clone(),
        })
        .await;
    assert_eq!(refused.unwrap_err().code(), Code::Unauthenticated);

    let token = operator
        .create_admin_token(CreateAdminTokenRequest {
            provider_id: globex.clone(),
            description: "globex helpdesk".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let mut globex_admin = admin_client(&stack.grpc_url, &token).await.unwrap();
    globex_admin
        .get_provider(GetProviderRequest {
            provider_id: globex.clone(),
        })
        .await
        .expect("own provider");
    let other = globex_admin
        .get_provider(GetProviderRequest {
            provider_id: acme.clone(),
        })
        .await;
    assert_eq!(other.unwrap_err().code(), Code::NotFound, "another tenant is invisible");
    let users = globex_admin
        .list_users(ListUsersRequest {
            provider_id: acme.clone(),
            ..Default::default()
        })
        .await;
    assert_eq!(users.unwrap_err().code(), Code::NotFound);
    let create = globex_admin
        .create_provider(CreateProviderRequest {
            name: "Rogue".into(),
            usage_model: UsageModel::PerEnabledUser as i32,
        })
        .await;
    assert_eq!(create.unwrap_err().code(), Code::PermissionDenied);
    let listed = globex_admin
        .list_providers(api::ListProvidersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.providers.len(), 1);

    let change = operator
        .update_provider(UpdateProviderRequest {
            provider_id: acme.clone(),
            usage_model: Some(UsageModel::PerEnabledUser as i32),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(change.code(), Code::FailedPrecondition);
    assert!(
        change.message().contains("create a new provider"),
        "{}",
        change.message()
    );
    let bad_cidr = operator
        .update_provider(UpdateProviderRequest {
            provider_id: acme,
            trusted_networks: vec!["10.0.0.0/33".into()],
            set_trusted_networks: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_cidr.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_policy_decision_has_its_reason() {
    let stack = Stack::start(StackOptions {
        lockout_threshold: 4,
        ..Default::default()
    })
    .await
    .expect("stack starts");
    let mut admin = admin_client(&stack.grpc_url, &stack.admin_token).await.unwrap();
    let acme = provider(&mut admin, "Acme").await;
    let globex = provider(&mut admin, "Globex").await;
    let mut agent = activated_agent(&stack, &mut admin, &acme).await;
    let agent_id = agent.credential.agent_id.clone();
    for (provider_id, username, phone) in [
        (&acme, "alice", "+15550001001"),
        (&acme, "dave", "+15550001004"),
        (&globex, "gina", "+15550001009"),
    ] {
        admin
            .create_user(CreateUserRequest {
                provider_id: provider_id.clone(),
                username: username.into(),
                display_name: username.into(),
                sms_phone: phone.into(),
            })
            .await
            .unwrap();
    }
    let update = |user: &str| UpdateUserRequest {
        provider_id: acme.clone(),
        user: user.into(),
        ..Default::default()
    };

    assert_eq!(
        decide(&mut agent, "gina", "").await,
        (Decision::Deny, Reason::UnknownUser),
        "other tenant's user"
    );
    assert_eq!(decide(&mut agent, "alice", "192.0.2.1").await.1, Reason::Enrolled);

    admin
        .update_provider(UpdateProviderRequest {
            provider_id: acme.clone(),
            trusted_networks: vec!["10.0.0.0/8".into()],
            set_trusted_networks: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        decide(&mut agent, "alice", "10.1.2.3").await,
        (Decision::Allow, Reason::TrustedNetwork)
    );
    assert_eq!(decide(&mut agent, "alice", "192.0.2.1").await.0, Decision::Challenge);

    admin
        .update_user(UpdateUserRequest {
            bypass_seconds: Some(300),
            bypass_count: Some(1),
            ..update("alice")
        })
        .await
        .unwrap();
    assert_eq!(
        decide(&mut agent, "alice", "192.0.2.1").await,
        (Decision::Allow, Reason::Bypass)
    );
    assert_eq!(
        decide(&mut agent, "alice", "192.0.2.1").await.0,
        Decision::Challenge,
        "bypass used up"
    );

    admin
        .update_user(UpdateUserRequest {
            status: Some(UserStatus::Disabled as i32),
            ..update("dave")
        })
        .await
        .unwrap();
    assert_eq!(
        decide(&mut agent, "dave", "10.1.2.3").await,
        (Decision::Deny, Reason::Disabled),
        "trusted network does not beat disabled"
    );

    // Unknown users let through only when the agent says so, still with a reason.
    admin
        .update_agent(UpdateAgentRequest {
            agent_id: agent_id.clone(),
            require_user_match: Some(false),
            remember_minutes: Some(10),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        decide(&mut agent, "mallory", "").await,
        (Decision::Allow, Reason::UnknownUser)
    );

    // Remembered approval: same agent, user and address only.
    let challenge = agent
        .authenticate(login("alice", "192.0.2.7"))
        .await
        .unwrap()
        .into_inner();
    // Alice's fourth challenge so far, so the fourth SMS to her phone.
    let code = stack.sms_code("+15550001001", 4).await.unwrap();
    let verified = agent
        .verify_passcode(VerifyPasscodeRequest {
            challenge_id: challenge.challenge_id,
            passcode: code,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verified.reason(), Reason::Approved);
    assert_eq!(
        decide(&mut agent, "alice", "192.0.2.7").await,
        (Decision::Allow, Reason::Remembered)
    );
    assert_eq!(decide(&mut agent, "alice", "192.0.2.8").await.0, Decision::Challenge);

    // Lockout after 4 wrong answers, across challenges; an admin unlocks.
    let mut last = Reason::Unspecified;
    for _ in 0..4 {
        let c = agent
            .authenticate(login("alice", "192.0.2.9"))
            .await
            .unwrap()
            .into_inner();
        last = agent
            .verify_passcode(VerifyPasscodeRequest {
                challenge_id: c.challenge_id,
                passcode: "000000x".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .reason();
    }
    assert_eq!(last, Reason::LockedOut);
    assert_eq!(
        decide(&mut agent, "alice", "10.1.2.3").await,
        (Decision::Deny, Reason::LockedOut)
    );
    admin
        .update_user(UpdateUserRequest {
            unlock: true,
            ..update("alice")
        })
        .await
        .unwrap();
    assert_eq!(decide(&mut agent, "alice", "192.0.2.9").await.0, Decision::Challenge);

    // The doctor explains, and lists the attempts with their reasons.
    let explained = admin
        .explain_login(ExplainLoginRequest {
            provider_id: acme.clone(),
            username: "alice".into(),
            agent_id: agent_id.clone(),
            client_ip: "10.9.9.9".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (explained.decision(), explained.reason()),
        (Decision::Allow, Reason::TrustedNetwork)
    );
    assert!(
        explained.considered.iter().any(|c| c.contains("trusted network: true")),
        "{:?}",
        explained.considered
    );
    let reasons: Vec<Reason> = explained.recent_attempts.iter().map(|a| a.reason()).collect();
    for expected in [
        Reason::LockedOut,
        Reason::Remembered,
        Reason::Bypass,
        Reason::TrustedNetwork,
        Reason::WrongCode,
    ] {
        assert!(reasons.contains(&expected), "{expected:?} missing from {reasons:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_import_reports_each_row_and_is_idempotent() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack starts");
    let mut admin = admin_client(&stack.grpc_url, &stack.admin_token).await.unwrap();
    let acme = provider(&mut admin, "Acme").await;
    admin
        .create_user(CreateUserRequest {
            provider_id: acme.clone(),
            username: "alice".into(),
            display_name: "Alice".into(),
            sms_phone: "+15550002001".into(),
        })
        .await
        .unwrap();
    let csv = "username,display_name,phone,email,default_method\n\
               alice,Alice Liddell,+15550002001,alice@example.com,sms\n\
               bob,Bob,+15550002002,bob@example.com,voice\n\
               carol,Carol,555-0100,carol@example.com,sms\n\
               dan,Dan,,dan@example,sms\n\
               erin,Erin,+15550002005,,fax\n";
    let import = |csv: &str| ImportUsersRequest {
        provider_id: acme.clone(),
        csv: csv.into(),
    };
    let first = admin.import_users(import(csv)).await.unwrap().into_inner();
    assert_eq!(
        (first.created, first.updated, first.unchanged, first.rejected),
        (1, 1, 0, 3),
        "{first:?}"
    );
    let carol = first.rows.iter().find(|r| r.username == "carol").unwrap();
    assert!(carol.reason.contains("phone"), "{carol:?}");
    let again = admin.import_users(import(csv)).await.unwrap().into_inner();
    assert_eq!(
        (again.created, again.updated, again.unchanged, again.rejected),
        (0, 0, 2, 3),
        "{again:?}"
    );

    let page = admin
        .list_users(ListUsersRequest {
            provider_id: acme.clone(),
            query: "example.com".into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.users.len(), 1);
    assert_eq!(page.users[0].username, "alice");
    assert_eq!(page.users[0].phone, "+155******01", "phones leave masked");
    let next = admin
        .list_users(ListUsersRequest {
            provider_id: acme.clone(),
            query: "example.com".into(),
            page_size: 1,
            page_token: page.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.users[0].username, "bob");
    assert_eq!(next.users[0].default_factor(), Factor::Voice);
    let huge = admin
        .list_users(ListUsersRequest {
            provider_id: acme.clone(),
            page_size: 100_000,
            ..Default::default()
        })
        .await;
    assert_eq!(huge.unwrap_err().code(), Code::InvalidArgument);

    let pin = admin
        .update_user(UpdateUserRequest {
            provider_id: acme.clone(),
            user: "bob".into(),
            pin: Some("12ab".into()),
            ..Default::default()
        })
        .await;
    assert_eq!(pin.unwrap_err().code(), Code::InvalidArgument);
    let bob = admin
        .update_user(UpdateUserRequest {
            provider_id: acme.clone(),
            user: "bob".into(),
            pin: Some("4711".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(bob.has_pin);
    admin
        .delete_user(api::DeleteUserRequest {
            provider_id: acme.clone(),
            user: "bob".into(),
        })
        .await
        .unwrap();
    let gone = admin
        .get_user(api::GetUserRequest {
            provider_id: acme,
            user: "bob".into(),
        })
        .await;
    assert_eq!(gone.unwrap_err().code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_health_reports_serving_and_then_not_serving_without_nats() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let mut stack = Stack::start(StackOptions::default()).await.expect("stack starts");
    let health = HealthClient::new(vigil_e2e::clients::channel(&stack.grpc_url).await.unwrap());
    let check = || HealthCheckRequest {
        service: "vigil.v1.AuthGateway".into(),
    };
    let status = vigil_testkit::wait_until(Duration::from_secs(10), "SERVING", || {
        let mut health = health.clone();
        async move {
            let s = health.check(check()).await?.into_inner().status();
            anyhow::Ok((s == ServingStatus::Serving).then_some(s))
        }
    })
    .await
    .unwrap();
    assert_eq!(status, ServingStatus::Serving);
    stack.nats.stop();
    vigil_testkit::wait_until(Duration::from_secs(15), "NOT_SERVING", || {
        let mut health = health.clone();
        async move {
            let s = health.check(check()).await?.into_inner().status();
            anyhow::Ok((s == ServingStatus::NotServing).then_some(()))
        }
    })
    .await
    .unwrap();
}
