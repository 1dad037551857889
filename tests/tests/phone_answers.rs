//! Answers given on the phone, through the real binaries and the carrier
//! simulator's phones: a voice call approved with the PIN, a fraud report
//! that blocks the user until an admin unblocks, an unanswered call that
//! fails the challenge, and an SMS answered with a reply.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::json;
use vigil_e2e::{AgentClient, Stack, StackOptions, Tenant};
use vigil_proto::v1::{
    AuthenticateRequest, ChallengeState, Decision, Factor, PreauthRequest, Reason, UpdateUserRequest, UserStatus,
};
use vigil_testkit::wait_until;

const PHONE: &str = "+15550004001";

async fn phone_does(stack: &Stack, action: serde_json::Value) {
    reqwest::Client::new()
        .put(format!("{}/sim/phones/{PHONE}/voice", stack.sim_url))
        .json(&action)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
}

/// Starts a challenge on `factor` and waits for its final state.
async fn answered(agent: &mut AgentClient, factor: Factor) -> (ChallengeState, Reason) {
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
    agent.final_state(&started.challenge_id).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn voice_pin_fraud_no_answer_and_sms_reply() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack starts");
    let mut tenant = Tenant::create(&stack, "Acme").await.unwrap();
    tenant.add_user("alice", PHONE).await.unwrap();
    let Tenant {
        mut admin,
        provider_id: provider,
        mut agent,
    } = tenant;
    let update = || UpdateUserRequest {
        provider_id: provider.clone(),
        user: "alice".into(),
        ..Default::default()
    };
    admin
        .update_user(UpdateUserRequest {
            pin: Some("4711".into()),
            ..update()
        })
        .await
        .unwrap();

    phone_does(&stack, json!({"action": "answer", "digits": "4711#"})).await;
    assert_eq!(
        answered(&mut agent, Factor::Voice).await,
        (ChallengeState::Approved, Reason::Approved)
    );
    phone_does(&stack, json!({"action": "answer", "digits": "1234#"})).await;
    assert_eq!(
        answered(&mut agent, Factor::Voice).await,
        (ChallengeState::Denied, Reason::WrongCode)
    );
    phone_does(&stack, json!({"action": "no_answer"})).await;
    assert_eq!(
        answered(&mut agent, Factor::Voice).await,
        (ChallengeState::Failed, Reason::DeliveryFailed)
    );

    // Two-way SMS: the user replies YES instead of typing the code.
    let sms_reply = tokio::spawn({
        let sim = stack.sim_url.clone();
        let before = stack.sim_inbox(PHONE).await.unwrap().len();
        let stack_sim = stack.sim_url.clone();
        async move {
            wait_until(Duration::from_secs(15), "the SMS", || {
                let sim = sim.clone();
                async move {
                    let inbox: Vec<serde_json::Value> =
                        reqwest::get(format!("{sim}/sim/inbox/{PHONE}")).await?.json().await?;
                    anyhow::Ok((inbox.len() > before).then_some(()))
                }
            })
            .await
            .unwrap();
            reqwest::Client::new()
                .post(format!("{stack_sim}/sim/phones/{PHONE}/reply"))
                .json(&json!({"body": "YES"}))
                .send()
                .await
                .unwrap()
                .error_for_status()
                .unwrap();
        }
    });
    assert_eq!(
        answered(&mut agent, Factor::Sms).await,
        (ChallengeState::Approved, Reason::Approved)
    );
    sms_reply.await.unwrap();

    // Fraud: 0# ends the challenge as fraud and blocks the user.
    phone_does(&stack, json!({"action": "answer", "digits": "0#"})).await;
    assert_eq!(
        answered(&mut agent, Factor::Voice).await,
        (ChallengeState::Fraud, Reason::Fraud)
    );
    let pre = agent
        .preauth(PreauthRequest {
            username: "alice".into(),
            client_ip: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (pre.decision(), pre.reason()),
        (Decision::Deny, Reason::BlockedForFraud)
    );
    admin
        .update_user(UpdateUserRequest {
            status: Some(UserStatus::Enabled as i32),
            ..update()
        })
        .await
        .unwrap();
    let pre = agent
        .preauth(PreauthRequest {
            username: "alice".into(),
            client_ip: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pre.decision(), Decision::Challenge, "unblocked by the admin");
}
