//! The audit log through the real binaries: every admin change shows up with
//! who made it and what it touched, authentication decisions are in the same
//! log, filters and paging work, a provider admin token sees only its own
//! provider, and no secret handed out or set along the way is ever in it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use tonic::Code;
use vigil_e2e::{Admin, Stack, StackOptions, Tenant, admin_client, registration_client};
use vigil_proto::v1::{
    AgentKind, AuditEntry, AuditKind, CreateActivationRequest, CreateAdminTokenRequest, CreateAgentRequest,
    CreateRadiusClientRequest, CreateUserRequest, Decision, DeleteAgentRequest, DeleteRadiusClientRequest,
    DeleteUserRequest, EnrollFactorRequest, Factor, ImportUsersRequest, ListAuditRequest, PreauthRequest, RadiusMode,
    Reason, RegisterAgentRequest, UpdateAgentRequest, UpdateProviderRequest, UpdateUserRequest, UserStatus,
};

const RADIUS_SECRET: &str = "audit-shared-secret-0123456789";
const WEBHOOK_TOKEN: &str = "XyZwebhookPathToken987";
const PIN: &str = "482913";

/// Every entry of a query, fetched in pages of `page_size`.
async fn all(admin: &mut Admin, query: ListAuditRequest, page_size: u32) -> Vec<AuditEntry> {
    let mut entries = Vec::new();
    let mut token = String::new();
    loop {
        let page = admin
            .list_audit(ListAuditRequest {
                page_size,
                page_token: token,
                ..query.clone()
            })
            .await
            .expect("list audit")
            .into_inner();
        assert!(page.entries.len() <= page_size as usize);
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            return entries;
        }
        token = page.next_page_token;
    }
}

fn of_provider(provider_id: &str) -> ListAuditRequest {
    ListAuditRequest {
        provider_id: provider_id.into(),
        ..Default::default()
    }
}

fn find<'a>(entries: &'a [AuditEntry], action: &str) -> &'a AuditEntry {
    entries
        .iter()
        .find(|e| e.action == action)
        .unwrap_or_else(|| panic!("no {action} entry in {entries:#?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_admin_change_is_audited_with_its_actor_and_never_a_secret() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack starts");
    let mut acme = Tenant::create(&stack, "Acme").await.unwrap();
    let provider_id = acme.provider_id.clone();
    let operator = &mut acme.admin;
    let mut secrets: Vec<String> = vec![RADIUS_SECRET.into(), WEBHOOK_TOKEN.into(), PIN.into()];

    let token = operator
        .create_admin_token(CreateAdminTokenRequest {
            provider_id: provider_id.clone(),
            description: "helpdesk".into(),
        })
        .await
        .unwrap()
        .into_inner();
    secrets.push(token.token.clone());
    let mut helpdesk = admin_client(&stack.grpc_url, &token.token).await.unwrap();
    let helpdesk_actor = format!("admin_token:{}", token.token_id);

    operator
        .update_provider(UpdateProviderRequest {
            provider_id: provider_id.clone(),
            fraud_webhook_url: Some(format!("https://hooks.example.com/services/{WEBHOOK_TOKEN}")),
            trusted_networks: vec!["10.0.0.0/8".into()],
            set_trusted_networks: true,
            ..Default::default()
        })
        .await
        .unwrap();

    // Activation and registration.
    let creds = helpdesk
        .create_activation(CreateActivationRequest {
            provider_id: provider_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    secrets.push(creds.password.clone());
    let mut registration = registration_client(&stack.grpc_url).await.unwrap();
    let wrong = registration
        .register(RegisterAgentRequest {
            login: creds.login.clone(),
            password: "guessed-password".into(),
            name: "rdp-02".into(),
            kind: AgentKind::Rdp as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    let registered = registration
        .register(RegisterAgentRequest {
            login: creds.login.clone(),
            password: creds.password.clone(),
            name: "rdp-02".into(),
            kind: AgentKind::Rdp as i32,
        })
        .await
        .unwrap()
        .into_inner();
    secrets.push(registered.agent_key.clone());

    // Agents made, changed and removed by the provider's own token.
    let made = helpdesk
        .create_agent(CreateAgentRequest {
            provider_id: provider_id.clone(),
            name: "app".into(),
            kind: AgentKind::App as i32,
        })
        .await
        .unwrap()
        .into_inner();
    secrets.push(made.agent_key.clone());
    helpdesk
        .update_agent(UpdateAgentRequest {
            agent_id: made.agent_id.clone(),
            enabled: Some(false),
            ..Default::default()
        })
        .await
        .unwrap();
    helpdesk
        .delete_agent(DeleteAgentRequest {
            agent_id: made.agent_id.clone(),
        })
        .await
        .unwrap();

    // Users: create, contact change, PIN, bypass, unlock, status, factors, import, delete.
    helpdesk
        .create_user(CreateUserRequest {
            provider_id: provider_id.clone(),
            username: "alice".into(),
            display_name: "Alice".into(),
            sms_phone: "+15551110001".into(),
        })
        .await
        .unwrap();
    helpdesk
        .update_user(UpdateUserRequest {
            provider_id: provider_id.clone(),
            user: "alice".into(),
            email: Some("alice@example.com".into()),
            pin: Some(PIN.into()),
            bypass_seconds: Some(600),
            bypass_count: Some(1),
            unlock: true,
            ..Default::default()
        })
        .await
        .unwrap();
    for status in [UserStatus::Disabled, UserStatus::Enabled] {
        helpdesk
            .update_user(UpdateUserRequest {
                provider_id: provider_id.clone(),
                user: "alice".into(),
                status: Some(status as i32),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let totp = operator
        .enroll_factor(EnrollFactorRequest {
            provider_id: provider_id.clone(),
            user: "alice".into(),
            factor: Factor::Totp as i32,
        })
        .await
        .unwrap()
        .into_inner();
    secrets.push(totp.secret_base32.clone());
    let backup = operator
        .enroll_factor(EnrollFactorRequest {
            provider_id: provider_id.clone(),
            user: "alice".into(),
            factor: Factor::BackupCode as i32,
        })
        .await
        .unwrap()
        .into_inner();
    secrets.extend(backup.backup_codes.iter().cloned());
    operator
        .import_users(ImportUsersRequest {
            provider_id: provider_id.clone(),
            csv: "username,display_name,phone\nbob,Bob,+15551110002\nalice,Alice A.,+15551110001\n".into(),
        })
        .await
        .unwrap();
    operator
        .delete_user(DeleteUserRequest {
            provider_id: provider_id.clone(),
            user: "bob".into(),
        })
        .await
        .unwrap();

    // RADIUS clients.
    let radius = helpdesk
        .create_radius_client(CreateRadiusClientRequest {
            provider_id: provider_id.clone(),
            name: "vpn".into(),
            source_cidr: "192.0.2.10".into(),
            shared_secret: RADIUS_SECRET.into(),
            mode: RadiusMode::Challenge as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    helpdesk
        .delete_radius_client(DeleteRadiusClientRequest {
            radius_client_id: radius.id.clone(),
        })
        .await
        .unwrap();

    // A login decision.
    let preauth = acme
        .agent
        .preauth(PreauthRequest {
            username: "mallory".into(),
            client_ip: "198.51.100.7".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(preauth.reason(), Reason::UnknownUser);

    let operator = &mut acme.admin;
    let entries = all(operator, of_provider(&provider_id), 500).await;
    let actions: HashSet<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    for expected in [
        "provider_created",
        "provider_updated",
        "admin_token_created",
        "activation_created",
        "agent_registration",
        "agent_created",
        "agent_updated",
        "agent_deleted",
        "user_created",
        "user_updated",
        "pin_changed",
        "bypass_set",
        "user_unlocked",
        "user_disabled",
        "user_enabled",
        "factor_enrolled",
        "user_deleted",
        "radius_client_created",
        "radius_client_deleted",
        "preauth",
    ] {
        assert!(actions.contains(expected), "no {expected} in {actions:?}");
    }

    // Who and what.
    let deleted = entries
        .iter()
        .find(|e| e.action == "agent_deleted" && e.target == made.agent_id)
        .expect("agent_deleted names the agent");
    assert_eq!(deleted.actor, helpdesk_actor);
    assert_eq!(find(&entries, "admin_token_created").actor, "operator");
    assert_eq!(find(&entries, "admin_token_created").target, helpdesk_actor);
    assert_eq!(find(&entries, "provider_updated").actor, "operator");
    let created = entries
        .iter()
        .find(|e| e.action == "user_created" && e.username == "alice")
        .expect("alice's creation");
    assert_eq!(created.actor, helpdesk_actor);
    assert!(created.target.starts_with("usr_"), "{created:?}");
    let refused = entries
        .iter()
        .find(|e| e.action == "agent_registration" && e.outcome == "activation_invalid")
        .expect("the wrong password is audited");
    assert_eq!(refused.actor, format!("activation:{}", creds.login));
    assert!(!refused.source.is_empty(), "the caller's address is kept");
    let ok = entries
        .iter()
        .find(|e| e.action == "agent_registration" && e.outcome == "ok")
        .unwrap();
    assert_eq!(ok.target, registered.agent_id);
    // The import updated alice (display name) and created bob, as the operator.
    assert!(
        entries.iter().any(|e| e.action == "user_updated"
            && e.username == "alice"
            && e.actor == "operator"
            && e.detail == "display_name"),
        "{entries:#?}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e.action == "user_created" && e.username == "bob")
    );
    let deleted_bob = find(&entries, "user_deleted");
    assert_eq!(deleted_bob.username, "bob", "a deleted user stays findable by name");
    let decision = find(&entries, "preauth");
    assert_eq!(decision.kind(), AuditKind::Authentication);
    assert_eq!(
        (decision.decision(), decision.reason()),
        (Decision::Deny, Reason::UnknownUser)
    );
    assert_eq!(decision.username, "mallory");
    assert_eq!(decision.source, "198.51.100.7");
    assert!(decision.actor.starts_with("agent:agt_"), "{decision:?}");
    assert!(
        find(&entries, "provider_updated")
            .detail
            .contains("fraud_webhook_url changed")
    );

    // Never a secret, anywhere in any entry.
    let everything = format!("{entries:?}");
    for secret in &secrets {
        assert!(!secret.is_empty());
        assert!(
            !everything.contains(secret.as_str()),
            "a secret leaked into the audit log: {secret}"
        );
    }

    // Newest first, and paging in small pages returns the same entries once each.
    let at = |e: &AuditEntry| e.at.map(|t| (t.seconds, t.nanos)).unwrap_or_default();
    assert!(entries.windows(2).all(|w| at(&w[0]) >= at(&w[1])));
    let paged = all(operator, of_provider(&provider_id), 4).await;
    let ids = |v: &[AuditEntry]| v.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&paged), ids(&entries));

    // Filters: kind, user, action, time range.
    let auth_only = all(
        operator,
        ListAuditRequest {
            kind: AuditKind::Authentication as i32,
            ..of_provider(&provider_id)
        },
        100,
    )
    .await;
    assert!(!auth_only.is_empty());
    assert!(auth_only.iter().all(|e| e.kind() == AuditKind::Authentication));
    let admin_only = all(
        operator,
        ListAuditRequest {
            kind: AuditKind::Admin as i32,
            ..of_provider(&provider_id)
        },
        100,
    )
    .await;
    assert_eq!(admin_only.len() + auth_only.len(), entries.len());
    let alice = all(
        operator,
        ListAuditRequest {
            user: "Alice".into(),
            ..of_provider(&provider_id)
        },
        100,
    )
    .await;
    assert!(alice.len() >= 8, "{alice:#?}");
    assert!(alice.iter().all(|e| e.username == "alice"));
    let pins = all(
        operator,
        ListAuditRequest {
            action: "pin_changed".into(),
            ..of_provider(&provider_id)
        },
        100,
    )
    .await;
    assert_eq!(pins.len(), 1);
    let oldest = entries.last().unwrap().at;
    let before_everything = all(
        operator,
        ListAuditRequest {
            until: oldest,
            ..of_provider(&provider_id)
        },
        100,
    )
    .await;
    assert!(before_everything.is_empty(), "{before_everything:#?}");
    let from_the_oldest = all(
        operator,
        ListAuditRequest {
            since: oldest,
            ..of_provider(&provider_id)
        },
        500,
    )
    .await;
    assert_eq!(from_the_oldest.len(), entries.len());

    // A provider admin token sees its own provider only.
    let globex = Tenant::create(&stack, "Globex").await.unwrap();
    let hidden = helpdesk.list_audit(of_provider(&globex.provider_id)).await.unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    let own = all(&mut helpdesk, ListAuditRequest::default(), 500).await;
    assert_eq!(ids(&own), ids(&all(operator, of_provider(&provider_id), 500).await));
    // The operator without a provider sees both, and the registration with
    // an unknown login that belongs to no provider.
    let mut registration = registration_client(&stack.grpc_url).await.unwrap();
    registration
        .register(RegisterAgentRequest {
            login: "act_nobody".into(),
            password: "x".into(),
            name: "x".into(),
            kind: AgentKind::Rdp as i32,
        })
        .await
        .unwrap_err();
    let everyone = all(operator, ListAuditRequest::default(), 500).await;
    assert!(everyone.iter().any(|e| e.provider_id == globex.provider_id));
    assert!(
        everyone
            .iter()
            .any(|e| e.provider_id.is_empty() && e.actor == "activation:act_nobody")
    );

    let bad = operator
        .list_audit(ListAuditRequest {
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
}
