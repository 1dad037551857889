//! The API login agents call. Every call is authenticated as an agent and
//! bound to its provider; every answer carries a decision and a reason, and
//! any doubt ends in a deny.

use std::{pin::Pin, sync::Arc, time::Duration};

use futures::Stream;
use tokio::sync::{SemaphorePermit, TryAcquireError};
use tonic::{Request, Response, Status};
use tracing::Instrument;
use vigil_agent_auth::methods;
use vigil_bus::{rpc::call, subjects};
use vigil_core::ChallengeId;
use vigil_proto::{
    rpc,
    v1::{self as api, Decision, Factor, Reason, auth_gateway_server::AuthGateway},
};

use crate::{
    app::Gateway,
    auth::{self, AgentIdentity, Credentials, authenticate_agent},
    error::GatewayError,
    metrics::RequestTimer,
    watch,
};

pub struct AgentApi(pub Arc<Gateway>);

const UNAVAILABLE: &str = "Vigil cannot decide right now; the login is denied";
pub const OVERLOADED: &str = "the Vigil server is overloaded; the login is denied, try again shortly";

/// A challenge-service reply that can stand for "no usable answer": a deny
/// with reason `unavailable`.
pub trait Reply: prost::Message + Default {
    fn rpc_error(&self) -> Option<&rpc::RpcError>;
    /// A deny with reason `unavailable` and `message`.
    fn unavailable_because(message: &str) -> Self;

    fn unavailable() -> Self {
        Self::unavailable_because(UNAVAILABLE)
    }

    /// The answer to a login shed at the in-flight bound.
    fn overloaded() -> Self {
        Self::unavailable_because(OVERLOADED)
    }
}

/// A permit to work on one login, or `None` when `VIGIL_MAX_IN_FLIGHT`
/// logins are in flight already: the caller then denies at once with
/// [`Reply::overloaded`]. Never waits: a login queued behind the ones in
/// flight would only be denied later, at the RPC deadline, after costing
/// the challenge service work. `api` labels the metric (`grpc`, `radius`).
///
/// Taken before the agent's signature is checked, since that check may read
/// the agent and costs a decryption and a database write (the nonce spent); after the checks that
/// cost nothing (headers, agent id, clock), so requests failing those never
/// hold a slot. GetAuthStatus and WatchAuth take none: they follow a login
/// already admitted (its challenge has been sent to the user), and shedding
/// them would waste that work; their RPCs still carry deadlines the
/// challenge service honours.
pub fn admit<'a>(gateway: &'a Gateway, api: &'static str) -> Option<SemaphorePermit<'a>> {
    match gateway.logins.try_acquire() {
        Ok(permit) => Some(permit),
        // Closed never happens (nobody closes it); it would be a deny all the same.
        Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => {
            crate::metrics::shed(api);
            tracing::debug!(api, "logins in flight at VIGIL_MAX_IN_FLIGHT; login shed");
            None
        }
    }
}

macro_rules! deniable_reply {
    ($($reply:ty),+ $(,)?) => {$(
        impl Reply for $reply {
            fn rpc_error(&self) -> Option<&rpc::RpcError> {
                self.error.as_ref()
            }
            fn unavailable_because(message: &str) -> Self {
                Self {
                    decision: Decision::Deny as i32,
                    reason: Reason::Unavailable as i32,
                    message: message.to_owned(),
                    ..Default::default()
                }
            }
        }
    )+};
}

deniable_reply!(rpc::PreauthReply, rpc::StartChallengeReply, rpc::VerifyReply);

impl Reply for rpc::StatusReply {
    fn rpc_error(&self) -> Option<&rpc::RpcError> {
        self.error.as_ref()
    }
    fn unavailable_because(message: &str) -> Self {
        Self {
            reason: Reason::Unavailable as i32,
            message: message.to_owned(),
            ..Default::default()
        }
    }
}

/// Asks the challenge service; no answer, a late one or an error reply is
/// logged and becomes a deny with reason `unavailable`, never an allow.
async fn ask<Req: prost::Message, Rep: Reply>(gateway: &Gateway, subject: &'static str, request: &Req) -> Rep {
    match call::<_, Rep>(&gateway.nats, subject, request, gateway.rpc_timeout).await {
        Ok(reply) if reply.rpc_error().is_none() => reply,
        Ok(reply) => {
            tracing::warn!(error = ?reply.rpc_error(), subject, "the challenge service refused; denying");
            Rep::unavailable()
        }
        Err(error) => {
            tracing::warn!(%error, subject, "no answer from the challenge service; denying");
            Rep::unavailable()
        }
    }
}

/// The policy decision for `username`, without starting a challenge,
/// counted against the rate limits. With `record_denials_only`, only a deny
/// is audited: for a check whose login goes on to a step that records its
/// own decision.
pub async fn preauth(
    gateway: &Gateway,
    agent: &AgentIdentity,
    username: String,
    client_ip: &str,
    record_denials_only: bool,
) -> rpc::PreauthReply {
    let ask_for = rpc::PreauthRequest {
        provider_id: agent.provider_id.to_string(),
        username,
        policy: Some(policy_context(agent, client_ip)),
        dry_run: false,
        record_denials_only,
    };
    ask(gateway, subjects::RPC_CHALLENGE_PREAUTH, &ask_for).await
}

/// Policy, then (when it says so) a challenge on `factor`. An agent that
/// cannot show the login screen a number passes `number_matching: false`.
/// How a login is started: the factor, whether a push may ask for number
/// matching (an agent with a screen), and a code the user typed already.
pub struct Start<'a> {
    pub factor: Factor,
    pub client_ip: &'a str,
    pub number_matching: bool,
    /// Answers the challenge in the same step (TOTP, HOTP, backup code).
    pub passcode: String,
    /// This login's preauth already counted it against the rate limits.
    pub counted_by_preauth: bool,
}

pub async fn start(
    gateway: &Gateway,
    agent: &AgentIdentity,
    username: String,
    how: Start<'_>,
) -> rpc::StartChallengeReply {
    let Start {
        factor,
        client_ip,
        number_matching,
        passcode,
        counted_by_preauth,
    } = how;
    // The id is chosen here so that a retried start is idempotent.
    let ask_for = rpc::StartChallengeRequest {
        provider_id: agent.provider_id.to_string(),
        agent_id: agent.agent_id.to_string(),
        challenge_id: ChallengeId::new().to_string(),
        username,
        factor: factor as i32,
        policy: Some(policy_context(agent, client_ip)),
        client_ip: client_ip.to_owned(),
        no_number_matching: !number_matching,
        passcode,
        counted_by_preauth,
    };
    ask(gateway, subjects::RPC_CHALLENGE_START, &ask_for).await
}

pub async fn verify(
    gateway: &Gateway,
    agent: &AgentIdentity,
    challenge_id: String,
    passcode: String,
) -> rpc::VerifyReply {
    let ask_for = rpc::VerifyRequest {
        provider_id: agent.provider_id.to_string(),
        challenge_id,
        passcode,
        agent_id: agent.agent_id.to_string(),
    };
    ask(gateway, subjects::RPC_CHALLENGE_VERIFY, &ask_for).await
}

pub async fn status(gateway: &Gateway, agent: &AgentIdentity, challenge_id: String) -> rpc::StatusReply {
    let ask_for = rpc::StatusRequest {
        provider_id: agent.provider_id.to_string(),
        challenge_id,
    };
    ask(gateway, subjects::RPC_CHALLENGE_STATUS, &ask_for).await
}

fn agent_status(error: GatewayError) -> Status {
    match error {
        GatewayError::Unauthenticated => Status::unauthenticated("missing or invalid agent credentials"),
        // Fail closed: when the gateway cannot check the agent, the agent gets no answer but "unavailable".
        other => Status::from(other),
    }
}

impl AgentApi {
    /// The checks that cost nothing (see [`auth::credentials`]): made before
    /// a login is admitted, so malformed or stale requests take no slot.
    fn credentials<T>(&self, request: &Request<T>, method: &str) -> Result<Credentials, Status> {
        auth::credentials(request.metadata(), method, self.0.clock.now().timestamp()).map_err(agent_status)
    }

    async fn agent<T: prost::Message>(
        &self,
        request: &Request<T>,
        credentials: Credentials,
        method: &str,
    ) -> Result<AgentIdentity, Status> {
        let began = std::time::Instant::now();
        let body = request.get_ref().encode_to_vec();
        let agent = authenticate_agent(credentials, method, &body, &self.0).await;
        // The signature check and the nonce's insert: the gateway's own database hop.
        metrics::histogram!("vigil_gateway_agent_check_seconds").record(began.elapsed());
        agent.map_err(agent_status)
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
        block_user_on_fraud: agent.block_user_on_fraud,
        delivery_caps: Some(agent.caps),
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
        let _timer = RequestTimer::start("grpc", "Preauth");
        let credentials = self.credentials(&request, methods::PREAUTH)?;
        let reply = match admit(&self.0, "grpc") {
            Some(_login) => {
                let agent = self.agent(&request, credentials, methods::PREAUTH).await?;
                let req = request.into_inner();
                require_username(&req.username)?;
                let reply = preauth(&self.0, &agent, req.username, &req.client_ip, false).await;
                record(&agent, reply.reason);
                reply
            }
            None => shed(),
        };
        count(reply.decision, reply.reason);
        Ok(Response::new(api::PreauthResponse {
            decision: reply.decision,
            reason: reply.reason,
            message: reply.message,
            factors: reply.factors,
        }))
    }

    #[tracing::instrument(skip_all, fields(agent_id, provider_id, reason))]
    async fn authenticate(
        &self,
        request: Request<api::AuthenticateRequest>,
    ) -> Result<Response<api::AuthenticateResponse>, Status> {
        let _timer = RequestTimer::start("grpc", "Authenticate");
        let credentials = self.credentials(&request, methods::AUTHENTICATE)?;
        let reply = match admit(&self.0, "grpc") {
            Some(_login) => {
                let agent = self.agent(&request, credentials, methods::AUTHENTICATE).await?;
                let req = request.into_inner();
                require_username(&req.username)?;
                let factor = Factor::try_from(req.factor).unwrap_or_default();
                let how = Start {
                    factor,
                    client_ip: &req.client_ip,
                    number_matching: true,
                    passcode: req.passcode,
                    counted_by_preauth: false,
                };
                let reply = start(&self.0, &agent, req.username, how).await;
                record(&agent, reply.reason);
                reply
            }
            None => shed(),
        };
        count(reply.decision, reply.reason);
        Ok(Response::new(api::AuthenticateResponse {
            decision: reply.decision,
            reason: reply.reason,
            message: reply.message,
            challenge_id: reply.challenge_id,
            state: reply.state,
            expires_at: reply.expires_at,
            match_number: reply.match_number,
            attempts_remaining: reply.attempts_remaining,
        }))
    }

    // Exempt from the in-flight bound: see `admit`.
    #[tracing::instrument(skip_all, fields(agent_id, provider_id, reason))]
    async fn get_auth_status(
        &self,
        request: Request<api::GetAuthStatusRequest>,
    ) -> Result<Response<api::AuthStatus>, Status> {
        let _timer = RequestTimer::start("grpc", "GetAuthStatus");
        let credentials = self.credentials(&request, methods::GET_AUTH_STATUS)?;
        let agent = self.agent(&request, credentials, methods::GET_AUTH_STATUS).await?;
        let req = request.into_inner();
        let reply = status(&self.0, &agent, req.challenge_id.clone()).await;
        record(&agent, reply.reason);
        Ok(Response::new(api::AuthStatus {
            challenge_id: req.challenge_id,
            state: reply.state,
            reason: reply.reason,
            message: reply.message,
            expires_at: reply.expires_at,
        }))
    }

    type WatchAuthStream = Pin<Box<dyn Stream<Item = Result<api::AuthStatus, Status>> + Send + 'static>>;

    // Exempt from the in-flight bound: see `admit`.
    #[tracing::instrument(skip_all, fields(agent_id, provider_id, reason))]
    async fn watch_auth(
        &self,
        request: Request<api::WatchAuthRequest>,
    ) -> Result<Response<Self::WatchAuthStream>, Status> {
        let credentials = self.credentials(&request, methods::WATCH_AUTH)?;
        let agent = self.agent(&request, credentials, methods::WATCH_AUTH).await?;
        let challenge_id = request.into_inner().challenge_id;
        if challenge_id.trim().is_empty() {
            return Err(Status::invalid_argument("challenge_id must not be empty"));
        }
        // At most a handful of states go out; the buffer never fills.
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let gateway = self.0.clone();
        tokio::spawn(
            async move {
                let last = watch::follow(&gateway, &agent, &challenge_id, MAX_WATCH, |reply| {
                    tx.try_send(Ok(auth_status(&challenge_id, reply))).is_ok()
                })
                .await;
                record(&agent, last.reason);
            }
            .in_current_span(),
        );
        let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        Ok(Response::new(Box::pin(stream)))
    }

    #[tracing::instrument(skip_all, fields(agent_id, provider_id, reason))]
    async fn verify_passcode(
        &self,
        request: Request<api::VerifyPasscodeRequest>,
    ) -> Result<Response<api::VerifyPasscodeResponse>, Status> {
        let _timer = RequestTimer::start("grpc", "VerifyPasscode");
        let credentials = self.credentials(&request, methods::VERIFY_PASSCODE)?;
        let reply = match admit(&self.0, "grpc") {
            Some(_login) => {
                let agent = self.agent(&request, credentials, methods::VERIFY_PASSCODE).await?;
                let req = request.into_inner();
                if req.passcode.len() > 64 {
                    return Err(Status::invalid_argument("passcode is too long"));
                }
                let reply = verify(&self.0, &agent, req.challenge_id, req.passcode).await;
                record(&agent, reply.reason);
                reply
            }
            None => shed(),
        };
        count(reply.decision, reply.reason);
        Ok(Response::new(api::VerifyPasscodeResponse {
            decision: reply.decision,
            reason: reply.reason,
            message: reply.message,
            state: reply.state,
            attempts_remaining: reply.attempts_remaining,
        }))
    }
}

/// The answer to a gRPC login shed at the in-flight bound; the caller is not
/// known (its signature was not checked), so only the reason goes on the span.
fn shed<R: Reply>() -> R {
    tracing::Span::current().record("reason", Reason::Unavailable.as_str_name());
    R::overloaded()
}

/// Counts a decision the agent API gave (status polls decide nothing).
fn count(decision: i32, reason: i32) {
    crate::metrics::decision(
        "grpc",
        Decision::try_from(decision).unwrap_or_default(),
        Reason::try_from(reason).unwrap_or_default(),
    );
}

/// The longest a WatchAuth stream stays open, whatever the challenge says.
const MAX_WATCH: Duration = Duration::from_secs(15 * 60);

fn auth_status(challenge_id: &str, reply: &rpc::StatusReply) -> api::AuthStatus {
    api::AuthStatus {
        challenge_id: challenge_id.to_owned(),
        state: reply.state,
        reason: reply.reason,
        message: reply.message.clone(),
        expires_at: reply.expires_at,
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
