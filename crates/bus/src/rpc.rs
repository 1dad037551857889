//! NATS request/reply for the latency-critical questions (preauth, start a
//! challenge, verify a passcode). Callers get a typed error for every way the
//! answer can fail to arrive, and must turn each into a deny.
//!
//! Every request carries its caller's deadline; a server drops a request
//! whose caller has already given up instead of spending work on it, and
//! runs at most a bounded number of handlers at once, so an overload sheds
//! work rather than piling it up.
//!
//! Both ends time each request (`vigil_rpc_call_seconds` at the caller,
//! `vigil_rpc_queued_seconds` and `vigil_rpc_handler_seconds` at the server),
//! so a slow answer shows where it waited.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use async_nats::{Client, HeaderMap};
use futures::StreamExt;
use prost::Message;
use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;
use vigil_proto::rpc;

use crate::{BusError, trace};

/// The caller's absolute deadline, in unix epoch milliseconds. Caller and
/// server clocks are assumed NTP-synced: a skew only moves, by its size, the
/// moment an abandoned request stops being worth answering.
pub const DEADLINE_HEADER: &str = "Vigil-Deadline";

/// Handlers one [`serve`] runs at once unless told otherwise.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// A reply type that can carry a request-level error.
pub trait RpcReply: Message + Default + Send + 'static {
    fn from_error(code: &str, message: String) -> Self;
    /// The request-level error the reply carries, taken out of it.
    fn take_error(&mut self) -> Option<rpc::RpcError>;
}

macro_rules! rpc_reply {
    ($($ty:ident),*) => {$(
        impl RpcReply for rpc::$ty {
            // Some replies carry nothing but the error.
            #[allow(clippy::needless_update)]
            fn from_error(code: &str, message: String) -> Self {
                Self { error: Some(rpc::RpcError { code: code.to_owned(), message }), ..Default::default() }
            }

            fn take_error(&mut self) -> Option<rpc::RpcError> {
                self.error.take()
            }
        }
    )*};
}

rpc_reply!(
    PreauthReply,
    StartChallengeReply,
    VerifyReply,
    StatusReply,
    CreateUserReply,
    UserReply,
    DeleteUserReply,
    ListUsersReply,
    ImportUsersReply,
    ExplainReply,
    EnrollFactorReply,
    ListAuditReply,
    EnrollDeviceReply
);

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("not connected to NATS")]
    Disconnected,
    #[error("no service is answering on {0}")]
    NoResponders(&'static str),
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    #[error("request failed: {0}")]
    Transport(String),
    #[error("malformed reply: {0}")]
    Decode(String),
}

/// Sends `request` and waits at most `timeout` for the reply.
pub async fn call<Req: Message, Rep: Message + Default>(
    client: &Client,
    subject: &'static str,
    request: &Req,
    timeout: Duration,
) -> Result<Rep, CallError> {
    // A disconnected client would queue the request and wait out the whole
    // deadline; answer at once instead.
    if client.connection_state() != async_nats::connection::State::Connected {
        return Err(CallError::Disconnected);
    }
    let mut headers = HeaderMap::new();
    trace::inject_current(&mut headers);
    headers.insert(DEADLINE_HEADER, unix_millis(SystemTime::now() + timeout).to_string());
    let nats_request = async_nats::Request::new()
        .payload(request.encode_to_vec().into())
        .headers(headers)
        .timeout(Some(timeout));
    let asked = Instant::now();
    let reply = tokio::time::timeout(timeout, client.send_request(subject, nats_request)).await;
    // Every outcome counts: a tail made of timeouts is still the tail.
    metrics::histogram!("vigil_rpc_call_seconds", "subject" => subject).record(asked.elapsed());
    let reply = reply
        .map_err(|_| CallError::TimedOut(timeout))?
        .map_err(|e| match e.kind() {
            async_nats::RequestErrorKind::NoResponders => CallError::NoResponders(subject),
            async_nats::RequestErrorKind::TimedOut => CallError::TimedOut(timeout),
            _ => CallError::Transport(e.to_string()),
        })?;
    Rep::decode(reply.payload).map_err(|e| CallError::Decode(e.to_string()))
}

/// How [`serve_with`] runs its handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// Handlers running at once; further requests wait (in arrival order)
    /// for one to finish, and are dropped if their deadline passes first.
    pub max_in_flight: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

/// Answers requests on `subject` (in queue group `queue`, so replicas share
/// the load) until `shutdown`, at most [`DEFAULT_MAX_IN_FLIGHT`] at once; see
/// [`serve_with`].
pub async fn serve<Req, Rep, F, Fut>(
    client: Client,
    subject: &'static str,
    queue: &'static str,
    handler: F,
    shutdown: CancellationToken,
) -> Result<(), BusError>
where
    Req: Message + Default + 'static,
    Rep: RpcReply,
    F: Fn(Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Rep> + Send,
{
    serve_with(client, subject, queue, ServeOptions::default(), handler, shutdown).await
}

/// Answers requests on `subject` (in queue group `queue`, so replicas share
/// the load) until `shutdown`; in-flight requests finish before it returns.
///
/// A request whose caller's deadline ([`DEADLINE_HEADER`]) has passed by the
/// time its handler would start is not handled: the caller has already
/// denied, so the work would only deepen an overload. It gets no reply and is
/// counted in `vigil_rpc_expired_total{subject}`. Requests without the
/// header are always handled.
pub async fn serve_with<Req, Rep, F, Fut>(
    client: Client,
    subject: &'static str,
    queue: &'static str,
    options: ServeOptions,
    handler: F,
    shutdown: CancellationToken,
) -> Result<(), BusError>
where
    Req: Message + Default + 'static,
    Rep: RpcReply,
    F: Fn(Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Rep> + Send,
{
    let mut subscription = client
        .queue_subscribe(subject, queue.to_owned())
        .await
        .map_err(|e| BusError::JetStream(format!("subscribe {subject}: {e}")))?;
    let permits = Arc::new(Semaphore::new(options.max_in_flight.max(1)));
    let in_flight = TaskTracker::new();
    loop {
        let message = tokio::select! {
            m = subscription.next() => m,
            () = shutdown.cancelled() => None,
        };
        let Some(message) = message else { break };
        let received = Instant::now();
        let Some(reply_to) = message.reply.clone() else {
            tracing::warn!(subject, "request without a reply subject; dropped");
            continue;
        };
        let deadline = deadline_of(message.headers.as_ref(), subject);
        if deadline.is_some_and(passed) {
            expired(subject, "before it was read");
            continue;
        }
        // Waiting here (not in a task per request) leaves the backlog in the
        // subscription, in order, and costs nothing per waiting request.
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => permit.ok(),
            () = sleep_until(deadline) => None,
            () = shutdown.cancelled() => break,
        };
        let Some(permit) = permit else {
            expired(subject, "waiting for a free handler");
            continue;
        };
        let handler = handler.clone();
        let client = client.clone();
        let span = tracing::info_span!("rpc", rpc.system = "nats", messaging.destination.name = subject);
        trace::continue_trace(&span, message.headers.as_ref());
        in_flight.spawn(
            async move {
                let _permit = permit;
                // Checked again where the handler starts: under CPU pressure
                // the task itself may start late.
                if deadline.is_some_and(passed) {
                    expired(subject, "before its handler started");
                    return;
                }
                let started = Instant::now();
                // Together with the caller's `vigil_rpc_call_seconds`, these
                // split a slow answer into the bus, the wait and the work.
                metrics::histogram!("vigil_rpc_queued_seconds", "subject" => subject)
                    .record(started.duration_since(received));
                let reply = match Req::decode(message.payload) {
                    Ok(request) => handler(request).await,
                    Err(e) => Rep::from_error("invalid_argument", format!("malformed request: {e}")),
                };
                metrics::histogram!("vigil_rpc_handler_seconds", "subject" => subject).record(started.elapsed());
                if let Err(error) = client.publish(reply_to, reply.encode_to_vec().into()).await {
                    tracing::warn!(error = %error, "could not send reply");
                }
            }
            .instrument(span),
        );
    }
    let _ = subscription.unsubscribe().await;
    in_flight.close();
    in_flight.wait().await;
    Ok(())
}

fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The deadline a request carries; a malformed one counts as none, so the
/// request is served as it would have been before deadlines existed.
fn deadline_of(headers: Option<&HeaderMap>, subject: &str) -> Option<SystemTime> {
    let value = headers?.get(DEADLINE_HEADER)?.as_str();
    match value.trim().parse::<u64>() {
        Ok(millis) => UNIX_EPOCH.checked_add(Duration::from_millis(millis)),
        Err(_) => {
            tracing::debug!(subject, value, "malformed {DEADLINE_HEADER} header; ignored");
            None
        }
    }
}

fn passed(deadline: SystemTime) -> bool {
    SystemTime::now() >= deadline
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<SystemTime>) {
    match deadline {
        Some(deadline) => {
            let left = deadline.duration_since(SystemTime::now()).unwrap_or_default();
            tokio::time::sleep(left).await;
        }
        None => std::future::pending().await,
    }
}

fn expired(subject: &'static str, when: &'static str) {
    // Debug, not warn: under overload this happens per request, and the
    // counter is what an operator watches.
    tracing::debug!(subject, when, "request past its caller's deadline; dropped unanswered");
    metrics::counter!("vigil_rpc_expired_total", "subject" => subject).increment(1);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(DEADLINE_HEADER, value);
        headers
    }

    #[test]
    fn the_deadline_header_round_trips_to_the_millisecond() {
        let now = SystemTime::now();
        let millis = unix_millis(now);
        let parsed = deadline_of(Some(&headers(&millis.to_string())), "t").unwrap();
        assert_eq!(unix_millis(parsed), millis);
        assert!(now.duration_since(parsed).unwrap_or_default() < Duration::from_millis(1));
    }

    #[test]
    fn a_missing_or_malformed_deadline_is_no_deadline() {
        assert_eq!(deadline_of(None, "t"), None);
        assert_eq!(deadline_of(Some(&HeaderMap::new()), "t"), None);
        assert_eq!(deadline_of(Some(&headers("soon")), "t"), None);
        assert_eq!(deadline_of(Some(&headers("-5")), "t"), None);
    }

    #[test]
    fn only_a_deadline_in_the_past_has_passed() {
        assert!(passed(SystemTime::now() - Duration::from_millis(1)));
        assert!(!passed(SystemTime::now() + Duration::from_secs(5)));
    }
}
