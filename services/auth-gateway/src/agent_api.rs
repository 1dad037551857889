//! The API login agents call. Every call is authenticated as an agent and
//! bound to its provider; every answer carries a decision and a reason, and
//! any doubt ends in a deny.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use vigil_agent_auth::methods;
use vigil_bus::{
    rpc::{CallError, call},
    subjects,
};
use vigil_core::ChallengeId;
use vigil_proto::{
    rpc,
    v1::{self as api, Decision, Reason, auth_gateway_server::AuthGateway},
};

use crate::{
    app::Gateway,
    auth::{AgentIdentity, authenticate_agent},
    error::GatewayError,
};

pub struct AgentApi(pub Arc<Gateway>);

const UNAVAILABLE: &str = "Vigil cannot decide right now; the login is denied";

/// Why the challenge service gave no usable answer: logged, and the login denied.
fn unavailable(what: &str, error: &dyn std::fmt::Display) -> (i32, i32, String) {
    tracing::warn!(%error, what, "no answer from the challenge service; denying");
    (
        Decision::Deny as i32,
        Reason::Unavailable as i32,
        UNAVAILABLE.to_owned(),
    )
}

impl AgentApi {
    async fn agent<T: prost::Message>(&self, request: &Request<T>, method: &str) -> Result<AgentIdentity, Status> {
        let body = request.get_ref().encode_to_vec();
        authenticate_agent(request.metadata(), method, &body, &self.0)
            .await
            .map_err(|e| match e {
                GatewayError::Unauthenticated => Status::unauthenticated("missing or invalid agent credentials"),
                // Fail closed: when the gateway cannot check the agent, the agent gets no answer but "unavailable".
                other => Status::from(other),
            })
    }

    async fn ask<Req: prost::Message, Rep: prost::Message + Default>(
        &self,
        subject: &'static str,
        request: &Req,
    ) -> Result<Rep, CallError> {
        call(&self.0.nats, subject, request, self.0.rpc_timeout).await
    }
}

/// What the challenge service needs to know of this agent's policy.
pub fn policy_context(agent: &AgentIdentity, client_ip: &str) -> rpc::PolicyContext {
    rpc::PolicyContext {
        agent_id: agent.agent_id.to_string(),
        client_ip: client_ip.trim().to_owned(),
        require_user_match: agent.require_user_match,
        trusted_network: agent.is_trusted(client_ip),
        remember_minutes: agent.remember_minutes,
    }
}

fn require_username(username: &str) -> Result<(), Status> {
    if username.trim().is_empty() {
        return Err(Status::invalid_argument("username must not be empty"));
    }
    Ok(())
}

#[tonic::async_trait]
impl AuthGateway for AgentApi {
    #[tracing::instrument(skip_all, fields(agent_id, provider_id, reason))]
    async fn preauth(&self, request: Request<api::PreauthRequest>) -> Result<Response<api::PreauthResponse>, Status> {
        let agent = self.agent(&request, methods::PREAUTH).await?;
        let req = request.into_inner();
        require_username(&req.username)?;
        let ask = rpc::PreauthRequest {
            provider_id: agent.provider_id.to_string(),
            username: req.username,
            policy: Some(policy_context(&agent, &req.client_ip)),
            dry_run: false,
        };
        let response = match self
            .ask::<_, rpc::PreauthReply>(subjects::RPC_CHALLENGE_PREAUTH, &ask)
            .await
        {
            Ok(reply) if reply.error.is_none() => api::PreauthResponse {
                decision: reply.decision,
                reason: reply.reason,
                message: reply.message,
                factors: reply.factors,
            },
            Ok(reply) => {
                let (decision, reason, message) = unavailable("preauth", &format!("{:?}", reply.error));
                api::PreauthResponse {
                    decision,
                    reason,
                    message,
                    factors: vec![],
                }
            }
            Err(e) => {
                let (decision, reason, message) = unavailable("preauth", &e);
                api::PreauthResponse {
                    decision,
                    reason,
                    message,
                    factors: vec![],
                }
            }
        };
        record(&agent, response.reason);
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all, fields(agent_id, provider_id, reason))]
    async fn authenticate(
        &self,
        request: Request<api::AuthenticateRequest>,
    ) -> Result<Response<api::AuthenticateResponse>, Status> {
        let agent = self.agent(&request, methods::AUTHENTICATE).await?;
        let req = request.into_inner();
        require_username(&req.username)?;
        // The id is chosen here so that a retried start is idempotent.
        let ask = rpc::StartChallengeRequest {
            provider_id: agent.provider_id.to_string(),
            agent_id: agent.agent_id.to_string(),
            challenge_id: ChallengeId::new().to_string(),
            username: req.username,
            factor: req.factor,
            policy: Some(policy_context(&agent, &req.client_ip)),
            client_ip: req.client_ip,
        };
        let response = match self
            .ask::<_, rpc::StartChallengeReply>(subjects::RPC_CHALLENGE_START, &ask)
            .await
        {
            Ok(reply) if reply.error.is_none() => api::AuthenticateResponse {
                decision: reply.decision,
                reason: reply.reason,
                message: reply.message,
                challenge_id: reply.challenge_id,
                state: reply.state,
                expires_at: reply.expires_at,
            },
            Ok(reply) => {
                let (decision, reason, message) = unavailable("authenticate", &format!("{:?}", reply.error));
                api::AuthenticateResponse {
                    decision,
                    reason,
                    message,
                    ..Default::default()
                }
            }
            Err(e) => {
                let (decision, reason, message) = unavailable("authenticate", &e);
                api::AuthenticateResponse {
                    decision,
                    reason,
                    message,
                    ..Default::default()
                }
            }
        };
        record(&agent, response.reason);
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all, fields(agent_id, provider_id, reason))]
    async fn get_auth_status(
        &self,
        request: Request<api::GetAuthStatusRequest>,
    ) -> Result<Response<api::AuthStatus>, Status> {
        let agent = self.agent(&request, methods::GET_AUTH_STATUS).await?;
        let req = request.into_inner();
        let ask = rpc::StatusRequest {
            provider_id: agent.provider_id.to_string(),
            challenge_id: req.challenge_id.clone(),
        };
        let response = match self
            .ask::<_, rpc::StatusReply>(subjects::RPC_CHALLENGE_STATUS, &ask)
            .await
        {
            Ok(reply) if reply.error.is_none() => api::AuthStatus {
                challenge_id: req.challenge_id,
                state: reply.state,
                reason: reply.reason,
                message: reply.message,
                expires_at: reply.expires_at,
            },
            Ok(reply) => {
                let (_, reason, message) = unavailable("status", &format!("{:?}", reply.error));
                api::AuthStatus {
                    challenge_id: req.challenge_id,
                    reason,
                    message,
                    ..Default::default()
                }
            }
            Err(e) => {
                let (_, reason, message) = unavailable("status", &e);
                api::AuthStatus {
                    challenge_id: req.challenge_id,
                    reason,
                    message,
                    ..Default::default()
                }
            }
        };
        record(&agent, response.reason);
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all, fields(agent_id, provider_id, reason))]
    async fn verify_passcode(
        &self,
        request: Request<api::VerifyPasscodeRequest>,
    ) -> Result<Response<api::VerifyPasscodeResponse>, Status> {
        let agent = self.agent(&request, methods::VERIFY_PASSCODE).await?;
        let req = request.into_inner();
        if req.passcode.len() > 64 {
            return Err(Status::invalid_argument("passcode is too long"));
        }
        let ask = rpc::VerifyRequest {
            provider_id: agent.provider_id.to_string(),
            challenge_id: req.challenge_id,
            passcode: req.passcode,
        };
        let response = match self
            .ask::<_, rpc::VerifyReply>(subjects::RPC_CHALLENGE_VERIFY, &ask)
            .await
        {
            Ok(reply) if reply.error.is_none() => api::VerifyPasscodeResponse {
                decision: reply.decision,
                reason: reply.reason,
                message: reply.message,
                state: reply.state,
                attempts_remaining: reply.attempts_remaining,
            },
            Ok(reply) => {
                let (decision, reason, message) = unavailable("verify", &format!("{:?}", reply.error));
                api::VerifyPasscodeResponse {
                    decision,
                    reason,
                    message,
                    ..Default::default()
                }
            }
            Err(e) => {
                let (decision, reason, message) = unavailable("verify", &e);
                api::VerifyPasscodeResponse {
                    decision,
                    reason,
                    message,
                    ..Default::default()
                }
            }
        };
        record(&agent, response.reason);
        Ok(Response::new(response))
    }
}

/// Puts who asked and why the answer was what it was on the request's span.
fn record(agent: &AgentIdentity, reason: i32) {
    let span = tracing::Span::current();
    span.record("agent_id", tracing::field::display(agent.agent_id));
    span.record("provider_id", tracing::field::display(agent.provider_id));
    span.record("reason", Reason::try_from(reason).unwrap_or_default().as_str_name());
    tracing::info!("decided");
}
