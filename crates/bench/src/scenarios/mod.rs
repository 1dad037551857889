//! The scenarios: each a [`Scenario`](crate::driver::Scenario) over the
//! public interfaces of a running stack.

pub mod deny;
pub mod push;
pub mod radius;
pub mod sms;
pub mod totp;

use vigil_e2e::AgentClient;
use vigil_proto::v1::{AuthenticateRequest, Decision, Factor, Reason, VerifyPasscodeRequest};

use crate::stats::Failure;

/// `REASON_WRONG_CODE` → `wrong_code`, as the audit log and Reply-Message say it.
pub fn reason_name(reason: Reason) -> String {
    let name = reason.as_str_name();
    name.strip_prefix("REASON_").unwrap_or(name).to_ascii_lowercase()
}

/// `deny:wrong_code`, `allow:bypass`: an answer the scenario did not expect.
pub fn unexpected(decision: Decision, reason: Reason) -> Failure {
    let d = decision.as_str_name();
    let d = d.strip_prefix("DECISION_").unwrap_or(d).to_ascii_lowercase();
    Failure::new(format!("{d}:{}", reason_name(reason)))
}

/// Authenticate on `factor`, then answer the challenge with `code` (or, with
/// `one_call`, send the code with Authenticate); the final decision and
/// reason (the first, when no challenge was started).
pub async fn login_with_code(
    agent: &mut AgentClient,
    username: &str,
    factor: Factor,
    code: &str,
    one_call: bool,
) -> Result<(Decision, Reason), Failure> {
    if one_call {
        let answered = authenticate(agent, username, factor, code).await?;
        return Ok((answered.decision(), answered.reason()));
    }
    let started = start(agent, username, factor).await?;
    if started.decision() != Decision::Challenge {
        return Ok((started.decision(), started.reason()));
    }
    verify(agent, started.challenge_id, code).await
}

pub async fn start(
    agent: &mut AgentClient,
    username: &str,
    factor: Factor,
) -> Result<vigil_proto::v1::AuthenticateResponse, Failure> {
    authenticate(agent, username, factor, "").await
}

/// Authenticate, with the code when the user typed it with the login.
async fn authenticate(
    agent: &mut AgentClient,
    username: &str,
    factor: Factor,
    passcode: &str,
) -> Result<vigil_proto::v1::AuthenticateResponse, Failure> {
    agent
        .authenticate(AuthenticateRequest {
            username: username.to_owned(),
            factor: factor as i32,
            client_ip: String::new(),
            passcode: passcode.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| Failure::grpc(&s))
}

pub async fn verify(agent: &mut AgentClient, challenge_id: String, code: &str) -> Result<(Decision, Reason), Failure> {
    let verified = agent
        .verify_passcode(VerifyPasscodeRequest {
            challenge_id,
            passcode: code.to_owned(),
        })
        .await
        .map_err(|s| Failure::grpc(&s))?
        .into_inner();
    Ok((verified.decision(), verified.reason()))
}
