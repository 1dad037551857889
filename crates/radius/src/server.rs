//! The UDP loop: receive, validate, de-duplicate, run the handler concurrently,
//! sign and send. Anything wrong with a datagram is a counted, logged drop.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::dedup::{Begin, DedupCache, DedupKey, MonotonicClock, SystemClock};
use crate::packet::MAX_PACKET_LEN;
use crate::request::{DropKind, Request, validate_request};
use crate::response::Response;
use crate::{ClientRegistry, ReplyContext};

/// Decides a request. May take as long as a push approval; it is never
/// invoked twice for one request, retransmissions included.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: Request) -> impl Future<Output = Response> + Send;
}

impl<F, Fut> Handler for F
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send,
{
    fn handle(&self, request: Request) -> impl Future<Output = Response> + Send {
        self(request)
    }
}

/// Tunables, with defaults suited to NAS retry timers of a few seconds.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// How long an answer is replayed to retransmissions (RFC 5080 §2.2.2).
    pub dedup_window: Duration,
    /// Most requests remembered, in flight and answered together.
    pub dedup_capacity: usize,
    /// Most handler invocations at once; more are dropped as overload.
    pub max_in_flight: usize,
    /// A handler still running after this is abandoned without an answer:
    /// the NAS has long given up, and its next attempt starts afresh.
    pub handler_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            dedup_window: Duration::from_secs(30),
            dedup_capacity: 16_384,
            max_in_flight: 1024,
            handler_timeout: Duration::from_secs(120),
        }
    }
}

/// Plain counters, for metrics to read.
#[derive(Debug, Default)]
pub struct Counters {
    pub received: AtomicU64,
    pub unknown_client: AtomicU64,
    pub malformed: AtomicU64,
    pub missing_message_authenticator: AtomicU64,
    pub bad_message_authenticator: AtomicU64,
    /// Retransmissions answered from the cache.
    pub duplicate_answered: AtomicU64,
    /// Retransmissions dropped while the first copy was being handled.
    pub duplicate_in_flight: AtomicU64,
    /// Dropped because the cache or the in-flight limit was full.
    pub overloaded: AtomicU64,
    pub handler_started: AtomicU64,
    pub handler_timeouts: AtomicU64,
    /// Handlers that panicked (no answer was sent).
    pub handler_failures: AtomicU64,
    /// Responses that could not be encoded (a plain Access-Reject went instead).
    pub encode_errors: AtomicU64,
    pub responses_sent: AtomicU64,
    pub send_errors: AtomicU64,
}

/// A copy of [`Counters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    pub received: u64,
    pub unknown_client: u64,
    pub malformed: u64,
    pub missing_message_authenticator: u64,
    pub bad_message_authenticator: u64,
    pub duplicate_answered: u64,
    pub duplicate_in_flight: u64,
    pub overloaded: u64,
    pub handler_started: u64,
    pub handler_timeouts: u64,
    pub handler_failures: u64,
    pub encode_errors: u64,
    pub responses_sent: u64,
    pub send_errors: u64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    /// Every datagram dropped without an answer, whatever the reason.
    pub fn dropped(&self) -> u64 {
        let s = self.snapshot();
        s.unknown_client
            + s.malformed
            + s.missing_message_authenticator
            + s.bad_message_authenticator
            + s.duplicate_in_flight
            + s.overloaded
    }

    pub fn snapshot(&self) -> CountersSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CountersSnapshot {
            received: g(&self.received),
            unknown_client: g(&self.unknown_client),
            malformed: g(&self.malformed),
            missing_message_authenticator: g(&self.missing_message_authenticator),
            bad_message_authenticator: g(&self.bad_message_authenticator),
            duplicate_answered: g(&self.duplicate_answered),
            duplicate_in_flight: g(&self.duplicate_in_flight),
            overloaded: g(&self.overloaded),
            handler_started: g(&self.handler_started),
            handler_timeouts: g(&self.handler_timeouts),
            handler_failures: g(&self.handler_failures),
            encode_errors: g(&self.encode_errors),
            responses_sent: g(&self.responses_sent),
            send_errors: g(&self.send_errors),
        }
    }

    fn drop_kind(&self, kind: DropKind) {
        match kind {
            DropKind::UnknownClient => inc(&self.unknown_client),
            DropKind::Malformed => inc(&self.malformed),
            DropKind::MissingMessageAuthenticator => inc(&self.missing_message_authenticator),
            DropKind::BadMessageAuthenticator => inc(&self.bad_message_authenticator),
        }
    }
}

/// A RADIUS authentication server on a socket the caller bound (port 0 in tests).
pub struct Server {
    socket: Arc<UdpSocket>,
    registry: Arc<dyn ClientRegistry>,
    config: ServerConfig,
    counters: Arc<Counters>,
    clock: Arc<dyn MonotonicClock>,
}

struct Shared<H> {
    socket: Arc<UdpSocket>,
    handler: H,
    counters: Arc<Counters>,
    cache: Mutex<DedupCache>,
    clock: Arc<dyn MonotonicClock>,
    handler_timeout: Duration,
}

impl<H> Shared<H> {
    // A panic elsewhere cannot leave the cache half-updated in a way that
    // matters more than going on serving, so poisoning is ignored.
    fn cache(&self) -> MutexGuard<'_, DedupCache> {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Server {
    pub fn new(socket: UdpSocket, registry: Arc<dyn ClientRegistry>, config: ServerConfig) -> Self {
        Self {
            socket: Arc::new(socket),
            registry,
            config,
            counters: Arc::new(Counters::default()),
            clock: Arc::new(SystemClock),
        }
    }

    pub fn with_clock(mut self, clock: Arc<dyn MonotonicClock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    pub fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.counters)
    }

    /// Serves until `shutdown` completes; handlers still running then are cancelled
    /// (their NAS retries elsewhere). Returns only on shutdown.
    pub async fn run<H: Handler>(self, handler: H, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let shared = Arc::new(Shared {
            socket: Arc::clone(&self.socket),
            handler,
            counters: Arc::clone(&self.counters),
            cache: Mutex::new(DedupCache::new(self.config.dedup_window, self.config.dedup_capacity)),
            clock: Arc::clone(&self.clock),
            handler_timeout: self.config.handler_timeout,
        });
        let permits = Arc::new(Semaphore::new(self.config.max_in_flight.max(1)));
        let mut tasks = JoinSet::new();
        // Octets past 4096 could only be padding (RFC 2865 §3), so they may be cut.
        let mut buf = vec![0u8; MAX_PACKET_LEN];
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(e) = joined {
                        inc(&self.counters.handler_failures);
                        tracing::error!(error = %e, "radius handler panicked, no answer sent");
                    }
                }
                received = self.socket.recv_from(&mut buf) => {
                    let (n, source) = match received {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::warn!(error = %e, "radius recv failed");
                            continue;
                        }
                    };
                    inc(&self.counters.received);
                    let datagram = buf.get(..n).unwrap_or_default();
                    self.accept(datagram, source, &shared, &permits, &mut tasks).await;
                }
            }
        }
        tasks.shutdown().await;
        Ok(())
    }

    async fn accept<H: Handler>(
        &self,
        datagram: &[u8],
        source: SocketAddr,
        shared: &Arc<Shared<H>>,
        permits: &Arc<Semaphore>,
        tasks: &mut JoinSet<()>,
    ) {
        let request = match validate_request(datagram, source, self.registry.as_ref()) {
            Ok(r) => r,
            Err(e) => {
                self.counters.drop_kind(e.kind());
                tracing::warn!(%source, error = %e, "radius packet dropped");
                return;
            }
        };
        let key = DedupKey {
            source,
            identifier: request.identifier(),
            authenticator: request.packet().authenticator,
        };
        let verdict = shared.cache().begin(key, shared.clock.now());
        match verdict {
            Begin::New => {}
            Begin::InFlight => {
                inc(&self.counters.duplicate_in_flight);
                tracing::debug!(%source, id = key.identifier, "retransmission while in flight, dropped");
                return;
            }
            Begin::Cached(bytes) => {
                inc(&self.counters.duplicate_answered);
                tracing::debug!(%source, id = key.identifier, "retransmission answered from cache");
                send(&self.socket, &self.counters, &bytes, source).await;
                return;
            }
            Begin::Full => {
                inc(&self.counters.overloaded);
                tracing::warn!(%source, "radius duplicate cache full, request dropped");
                return;
            }
        }
        let Ok(permit) = Arc::clone(permits).try_acquire_owned() else {
            shared.cache().abandon(key);
            inc(&self.counters.overloaded);
            tracing::warn!(%source, "radius in-flight limit reached, request dropped");
            return;
        };
        inc(&self.counters.handler_started);
        let shared = Arc::clone(shared);
        tasks.spawn(async move {
            let _permit = permit;
            // A handler that panics or is cancelled must not leave its request
            // "in flight" forever, or every retransmission would be dropped.
            let guard = InFlight {
                shared: &shared,
                key,
                armed: true,
            };
            let ctx = request.reply_context();
            let client = request.client().id.clone();
            let outcome = tokio::time::timeout(shared.handler_timeout, shared.handler.handle(request)).await;
            let Ok(response) = outcome else {
                inc(&shared.counters.handler_timeouts);
                tracing::warn!(%source, %client, "radius handler timed out, no answer sent");
                return;
            };
            let bytes: Arc<[u8]> = Arc::from(encode_or_reject(&response, &ctx, &shared.counters));
            // Cache before sending, so a retransmission racing the answer gets it too.
            shared.cache().complete(key, Arc::clone(&bytes), shared.clock.now());
            guard.disarm();
            send(&shared.socket, &shared.counters, &bytes, source).await;
        });
    }
}

/// Abandons the request's cache entry on drop unless it was answered.
struct InFlight<'a, H> {
    shared: &'a Shared<H>,
    key: DedupKey,
    armed: bool,
}

impl<H> InFlight<'_, H> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl<H> Drop for InFlight<'_, H> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.cache().abandon(self.key);
        }
    }
}

/// Fail closed: a response that cannot be encoded (too many attributes, say)
/// becomes a bare Access-Reject rather than silence or a crash.
fn encode_or_reject(response: &Response, ctx: &ReplyContext, counters: &Counters) -> Vec<u8> {
    match response.encode(ctx) {
        Ok(b) => b,
        Err(e) => {
            inc(&counters.encode_errors);
            tracing::error!(error = %e, "radius response could not be encoded, sending Access-Reject");
            Response::reject().encode(ctx).unwrap_or_default()
        }
    }
}

async fn send(socket: &UdpSocket, counters: &Counters, bytes: &[u8], to: SocketAddr) {
    if bytes.is_empty() {
        return;
    }
    match socket.send_to(bytes, to).await {
        Ok(_) => inc(&counters.responses_sent),
        Err(e) => {
            inc(&counters.send_errors);
            tracing::warn!(%to, error = %e, "radius send failed");
        }
    }
}
