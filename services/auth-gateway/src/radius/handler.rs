//! From a validated Access-Request to Accept, Reject or Challenge, through the
//! same challenge-service questions as the gRPC agent API. Reply-Message
//! carries the machine-readable reason and the human message; a doubt is a
//! Reject, never an Accept.

use std::{future::Future, net::IpAddr, sync::Arc};

use tokio::sync::SemaphorePermit;
use vigil_proto::{
    rpc::StartChallengeReply,
    v1::{ChallengeState, Decision, Factor, Reason},
};
use vigil_radius::{Handler, Request, Response};

use super::{
    Mode,
    registry::{ClientEntry, Registry},
    state,
};
use crate::{
    agent_api::{OVERLOADED, Start, admit, preauth, start, verify},
    app::Gateway,
    audit, directory, watch,
};

/// Password-and-code mode: the code is the password's last six characters.
const CODE_LEN: usize = 6;
/// Tunnel-Client-Endpoint (RFC 2868), where RD Gateway and some VPNs put the user's address.
const TUNNEL_CLIENT_ENDPOINT: u8 = 66;

pub struct RadiusHandler {
    gateway: Arc<Gateway>,
    registry: Arc<Registry>,
}

impl RadiusHandler {
    pub fn new(gateway: Arc<Gateway>, registry: Arc<Registry>) -> Self {
        Self { gateway, registry }
    }
}

impl Handler for RadiusHandler {
    fn handle(&self, request: Request) -> impl Future<Output = Response> + Send {
        answer(&self.gateway, &self.registry, request)
    }
}

/// What a login comes to, before it becomes a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Accept { reason: Reason, message: String },
    Reject { reason: Reason, message: String },
    Challenge { state: Vec<u8>, prompt: String },
}

impl Answer {
    fn reject(reason: Reason, message: impl Into<String>) -> Self {
        Self::Reject {
            reason,
            message: message.into(),
        }
    }

    /// A decision from the challenge service; anything but an allow is a reject.
    fn decided(decision: i32, reason: i32, message: String) -> Self {
        let reason = Reason::try_from(reason).unwrap_or_default();
        match Decision::try_from(decision) {
            Ok(Decision::Allow) => Self::Accept { reason, message },
            _ => Self::Reject { reason, message },
        }
    }

    fn decision(&self) -> Decision {
        match self {
            Self::Accept { .. } => Decision::Allow,
            Self::Reject { .. } => Decision::Deny,
            Self::Challenge { .. } => Decision::Challenge,
        }
    }

    fn reason(&self) -> Reason {
        match self {
            Self::Accept { reason, .. } | Self::Reject { reason, .. } => *reason,
            Self::Challenge { .. } => Reason::Enrolled,
        }
    }

    fn into_response(self) -> Response {
        match self {
            Self::Accept { reason, message } => {
                Response::accept().with_reply_message(&reply_text("ALLOW", reason, &message))
            }
            Self::Reject { reason, message } => {
                Response::reject().with_reply_message(&reply_text("DENY", reason, &message))
            }
            // The prompt is shown to the user as it is.
            Self::Challenge { state, prompt } => Response::challenge(state).with_reply_message(&prompt),
        }
    }
}

/// `REASON_UNKNOWN_USER` → `unknown_user`, the name the audit log and the docs use.
fn reason_name(reason: Reason) -> String {
    vigil_proto::enum_label(reason.as_str_name(), "REASON_")
}

/// "DENY unknown_user: the user is not enrolled in Vigil".
fn reply_text(verdict: &str, reason: Reason, message: &str) -> String {
    format!("{verdict} {}: {message}", reason_name(reason))
}

#[tracing::instrument(skip_all, fields(client = %request.client().id, source = %request.source(), agent_id, reason))]
async fn answer(gateway: &Gateway, registry: &Registry, request: Request) -> Response {
    let _timer = crate::metrics::RequestTimer::start("radius", "Access-Request");
    // Removed between the packet's check and now: nobody to decide for.
    let Some(client) = registry.entry(&request.client().id) else {
        return Answer::reject(Reason::Unavailable, "this RADIUS client is no longer registered").into_response();
    };
    // Shed before any work, like the gRPC logins: the same Reject now,
    // at no cost, rather than at the RPC deadline after queueing.
    let answer = match admit(gateway, "radius") {
        Some(login) => decide(gateway, &client, &request, login).await,
        None => Answer::reject(Reason::Unavailable, OVERLOADED),
    };
    crate::metrics::decision("radius", answer.decision(), answer.reason());
    let span = tracing::Span::current();
    span.record("agent_id", tracing::field::display(client.agent.agent_id));
    span.record("reason", reason_name(answer.reason()));
    tracing::info!(mode = client.mode.as_str(), name = %client.name, "RADIUS login decided");
    answer.into_response()
}

/// `login` is this login's in-flight permit, held until the answer is known
/// (or, for second-factor logins, until only the user's answer is awaited).
async fn decide(gateway: &Gateway, client: &ClientEntry, request: &Request, login: SemaphorePermit<'_>) -> Answer {
    let Some(username) = request.user_name().map(str::trim).filter(|u| !u.is_empty()) else {
        return Answer::reject(Reason::InvalidRequest, "the request has no User-Name");
    };
    if let Some(state) = request.state() {
        return challenge_answered(gateway, client, request, username, state).await;
    }
    let client_ip = end_user_ip(request);
    match client.mode {
        Mode::Challenge => challenge(gateway, client, username, &client_ip).await,
        Mode::SecondFactor => second_factor(gateway, client, username, &client_ip, login).await,
        Mode::PasswordCode => password_code(gateway, client, request, username, &client_ip).await,
    }
}

/// The user's own address, for trusted networks and remembered approvals.
/// Not the packet's source: that is the NAS, and trusting it would let
/// every login through it skip the second factor.
fn end_user_ip(request: &Request) -> String {
    let tunnel = request
        .packet()
        .attribute(TUNNEL_CLIENT_ENDPOINT)
        // A leading byte below 0x20 is the RFC 2868 tag.
        .map(|v| match v.first() {
            Some(tag) if *tag < 0x20 => v.get(1..).unwrap_or_default(),
            _ => v,
        })
        .and_then(|v| std::str::from_utf8(v).ok());
    [request.calling_station_id(), tunnel]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|text| text.parse::<IpAddr>().is_ok())
        .unwrap_or_default()
        .to_owned()
}

fn password(request: &Request) -> Option<String> {
    request.password().and_then(|p| p.as_str().map(str::to_owned))
}

/// A challenge on the user's default factor. A NAS has no screen to show a
/// push's number on, so pushes from RADIUS logins are plain approve / deny.
async fn start_default(
    gateway: &Gateway,
    client: &ClientEntry,
    username: &str,
    client_ip: &str,
) -> StartChallengeReply {
    let how = Start {
        factor: Factor::Default,
        client_ip,
        number_matching: false,
        passcode: String::new(),
        counted_by_preauth: false,
    };
    start(gateway, &client.agent, username.to_owned(), how).await
}

/// (b) Start a challenge on the user's default factor; the code comes back with the State.
async fn challenge(gateway: &Gateway, client: &ClientEntry, username: &str, client_ip: &str) -> Answer {
    let reply = start_default(gateway, client, username, client_ip).await;
    if reply.decision == Decision::Challenge as i32 && !reply.challenge_id.is_empty() {
        return Answer::Challenge {
            state: state::mint(&gateway.tokens, &client.id, username, &reply.challenge_id),
            prompt: reply.message,
        };
    }
    Answer::decided(reply.decision, reply.reason, reply.message)
}

/// (b), second round: the State names the challenge, User-Password holds the code.
async fn challenge_answered(
    gateway: &Gateway,
    client: &ClientEntry,
    request: &Request,
    username: &str,
    state: &[u8],
) -> Answer {
    let Some(challenge_id) = state::open(&gateway.tokens, &client.id, username, state) else {
        tracing::warn!("RADIUS State not minted for this client and user; rejected");
        return Answer::reject(Reason::InvalidRequest, "the State does not belong to this login");
    };
    let code = password(request).map(|p| p.trim().to_owned()).unwrap_or_default();
    let reply = verify(gateway, &client.agent, challenge_id, code).await;
    Answer::decided(reply.decision, reply.reason, reply.message)
}

/// (a) The client checked the password: run the default factor (push,
/// voice, two-way SMS) and wait for the user's answer, at most the client's
/// timeout. The NAS's retransmissions meanwhile are held by the duplicate
/// cache and get this one answer.
async fn second_factor(
    gateway: &Gateway,
    client: &ClientEntry,
    username: &str,
    client_ip: &str,
    login: SemaphorePermit<'_>,
) -> Answer {
    let reply = start_default(gateway, client, username, client_ip).await;
    if reply.decision != Decision::Challenge as i32 || reply.challenge_id.is_empty() {
        return Answer::decided(reply.decision, reply.reason, reply.message);
    }
    // Waiting for the user costs next to nothing, and may last the client's
    // whole timeout: the bound is on work, so the permit goes back now.
    drop(login);
    let done = watch::follow(gateway, &client.agent, &reply.challenge_id, client.timeout, |_| true).await;
    let reason = Reason::try_from(done.reason).unwrap_or_default();
    match ChallengeState::try_from(done.state).unwrap_or_default() {
        ChallengeState::Approved => Answer::Accept {
            reason: Reason::Approved,
            message: "the user approved".into(),
        },
        _ => Answer::reject(reason, done.message),
    }
}

/// The code at the end of a password-and-code field, and nothing else.
fn trailing_code(field: &str) -> Option<&str> {
    let cut = field.len().checked_sub(CODE_LEN)?;
    let code = field.get(cut..)?;
    code.bytes().all(|b| b.is_ascii_digit()).then_some(code)
}

/// A login refused before any challenge began is not in the challenge
/// service's log of decisions: the gateway's audit log keeps it.
async fn record_refusal(gateway: &Gateway, client: &ClientEntry, username: &str, client_ip: &str, reason: Reason) {
    let actor = format!("agent:{}", client.agent.agent_id);
    let event = audit::Event {
        provider_id: Some(client.agent.provider_id.as_uuid()),
        event: audit::LOGIN_REFUSED,
        outcome: &reason_name(reason),
        actor: &actor,
        target: username,
        source: client_ip,
        detail: "radius password_code",
    };
    let recorded = match gateway.pool.acquire().await {
        Ok(mut conn) => audit::record(&mut conn, event, gateway.clock.now()).await,
        Err(e) => Err(e),
    };
    if let Err(e) = recorded {
        tracing::error!(error = %e, "could not audit a refused RADIUS login");
    }
}

/// Policy refusals that stop a password-and-code login before the directory
/// is asked: abuse and account state, and doubt (fail closed).
fn refused_before_password(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::RateLimited | Reason::LockedOut | Reason::BlockedForFraud | Reason::Disabled | Reason::Unavailable
    )
}

/// (c) User-Password is the password followed by a TOTP code.
async fn password_code(
    gateway: &Gateway,
    client: &ClientEntry,
    request: &Request,
    username: &str,
    client_ip: &str,
) -> Answer {
    let field = password(request).unwrap_or_default();
    let Some(code) = trailing_code(&field) else {
        return Answer::reject(
            Reason::InvalidRequest,
            "the password must end with the 6-digit code from the authenticator app",
        );
    };
    // Policy first, and it counts against the per-user and per-agent rate
    // limits: a rate-limited, locked, blocked or disabled user never reaches
    // the directory, so RADIUS cannot spray passwords at it. Other refusals
    // (unknown user, not enrolled) come after the password check, so they
    // tell nothing to someone who does not know the password. A login that
    // goes on is recorded once, by its refusal or its start below.
    let policy = preauth(gateway, &client.agent, username.to_owned(), client_ip, true).await;
    if policy.decision == Decision::Deny as i32 && refused_before_password(policy.reason()) {
        return Answer::decided(policy.decision, policy.reason, policy.message);
    }
    // The password before the code, checked next by the provider's
    // directory: a wrong password never spends the user's code.
    let secret = field.get(..field.len() - code.len()).unwrap_or_default();
    let refusal = match directory::check(
        gateway,
        client.agent.provider_id.as_uuid(),
        username,
        secret.to_owned().into(),
    )
    .await
    {
        directory::Verdict::Accepted => None,
        directory::Verdict::Refused => Some(Answer::reject(
            Reason::WrongPassword,
            "the directory refused the password",
        )),
        directory::Verdict::NotConfigured => Some(Answer::reject(
            Reason::NoDirectory,
            "no directory is configured to check passwords for this provider (vigil providers directory)",
        )),
        directory::Verdict::Unavailable(why) => Some(Answer::reject(
            Reason::Unavailable,
            format!("the directory could not check the password: {why}"),
        )),
    };
    if let Some(refused) = refusal {
        record_refusal(gateway, client, username, client_ip, refused.reason()).await;
        return refused;
    }
    // Started and answered in one step: the reply is the final answer (a
    // CHALLENGE here would be a bug, and rejects like any non-ALLOW). The
    // preauth above counted this Access-Request; it counts once.
    let how = Start {
        factor: Factor::Totp,
        client_ip,
        number_matching: false,
        passcode: code.to_owned(),
        counted_by_preauth: true,
    };
    let reply = start(gateway, &client.agent, username.to_owned(), how).await;
    Answer::decided(reply.decision, reply.reason, reply.message)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_like_the_audit_log() {
        assert_eq!(reason_name(Reason::UnknownUser), "unknown_user");
        assert_eq!(
            reply_text("DENY", Reason::UnknownUser, "the user is not enrolled in Vigil"),
            "DENY unknown_user: the user is not enrolled in Vigil"
        );
    }

    #[test]
    fn only_an_allow_accepts() {
        let r = Reason::Approved as i32;
        assert!(matches!(
            Answer::decided(Decision::Allow as i32, r, String::new()),
            Answer::Accept { .. }
        ));
        for d in [Decision::Deny, Decision::Challenge, Decision::Unspecified] {
            assert!(matches!(
                Answer::decided(d as i32, r, String::new()),
                Answer::Reject { .. }
            ));
        }
        assert!(matches!(Answer::decided(99, r, String::new()), Answer::Reject { .. }));
    }

    #[test]
    fn the_code_is_the_last_six_digits() {
        assert_eq!(trailing_code("hunter2123456"), Some("123456"));
        assert_eq!(trailing_code("123456"), Some("123456"));
        assert_eq!(trailing_code("12345"), None);
        assert_eq!(trailing_code("hunter212345a"), None);
        assert_eq!(trailing_code("pässwörd12345"), None);
        assert_eq!(trailing_code(""), None);
    }
}
