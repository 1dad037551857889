//! NATS request/reply for the latency-critical questions (preauth, start a
//! challenge, verify a passcode). Callers get a typed error for every way the
//! answer can fail to arrive, and must turn each into a deny.

use std::{future::Future, time::Duration};

use async_nats::{Client, HeaderMap};
use futures::StreamExt;
use prost::Message;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;
use vigil_proto::rpc;

use crate::{BusError, trace};

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
    let nats_request = async_nats::Request::new()
        .payload(request.encode_to_vec().into())
        .headers(headers)
        .timeout(Some(timeout));
    let reply = tokio::time::timeout(timeout, client.send_request(subject, nats_request))
        .await
        .map_err(|_| CallError::TimedOut(timeout))?
        .map_err(|e| match e.kind() {
            async_nats::RequestErrorKind::NoResponders => CallError::NoResponders(subject),
            async_nats::RequestErrorKind::TimedOut => CallError::TimedOut(timeout),
            _ => CallError::Transport(e.to_string()),
        })?;
    Rep::decode(reply.payload).map_err(|e| CallError::Decode(e.to_string()))
}

/// Answers requests on `subject` (in queue group `queue`, so replicas share
/// the load) until `shutdown`; in-flight requests finish before it returns.
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
    let mut subscription = client
        .queue_subscribe(subject, queue.to_owned())
        .await
        .map_err(|e| BusError::JetStream(format!("subscribe {subject}: {e}")))?;
    let in_flight = TaskTracker::new();
    loop {
        let message = tokio::select! {
            m = subscription.next() => m,
            () = shutdown.cancelled() => None,
        };
        let Some(message) = message else { break };
        let Some(reply_to) = message.reply.clone() else {
            tracing::warn!(subject, "request without a reply subject; dropped");
            continue;
        };
        let handler = handler.clone();
        let client = client.clone();
        let span = tracing::info_span!("rpc", rpc.system = "nats", messaging.destination.name = subject);
        trace::continue_trace(&span, message.headers.as_ref());
        in_flight.spawn(
            async move {
                let reply = match Req::decode(message.payload) {
                    Ok(request) => handler(request).await,
                    Err(e) => Rep::from_error("invalid_argument", format!("malformed request: {e}")),
                };
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
