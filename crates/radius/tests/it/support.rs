//! A server on a free port with a toy MFA handler, and a raw NAS to talk to it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use vigil_radius::{
    Attribute, Cidr, Code, Counters, MonotonicClock, Packet, RadiusClient, Request, Response, Server, ServerConfig,
    SharedSecret, StaticClients, attr, hide_password, sign_request, verify_response,
};

pub const SECRET: &str = "testing123";
pub const CHALLENGE_PROMPT: &str = "Enter the code sent to your phone";

/// The toy policy: alice/right is accepted, anything else for alice rejected;
/// bob is challenged and accepted with code 123456; slow answers after a delay
/// (a push approval); stuck never answers.
pub struct Toy {
    pub calls: AtomicUsize,
    pub slow: Duration,
}

impl Toy {
    pub async fn decide(&self, req: Request) -> Response {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let password = req.password();
        let password = password
            .as_ref()
            .and_then(|p| p.as_str())
            .unwrap_or_default()
            .to_owned();
        match (req.user_name(), req.state()) {
            (Some("bob"), Some(b"chal-bob")) if password == "123456" => {
                Response::accept().with_reply_message("Welcome")
            }
            (Some("bob"), Some(_)) => Response::reject().with_reply_message("Wrong code"),
            (Some("bob"), None) => Response::challenge(b"chal-bob".to_vec()).with_reply_message(CHALLENGE_PROMPT),
            (Some("slow"), _) => {
                tokio::time::sleep(self.slow).await;
                Response::accept().with_reply_message("Approved on your phone")
            }
            (Some("panic"), _) => panic!("handler bug"),
            (Some("stuck"), _) => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Response::accept()
            }
            (Some("alice"), _) if password == "right" => Response::accept()
                .with_reply_message("Welcome")
                .with_class(b"vigil-session".to_vec())
                .with_session_timeout(3600),
            _ => Response::reject().with_reply_message("Access denied: wrong password"),
        }
    }
}

/// A clock the test moves by hand.
pub struct ManualClock(pub Mutex<Instant>);

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap();
        *t += by;
    }
}

impl MonotonicClock for ManualClock {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap()
    }
}

pub struct Running {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    pub toy: Arc<Toy>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    pub fn calls(&self) -> usize {
        self.toy.calls.load(Ordering::SeqCst)
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

pub struct Options {
    pub clients: StaticClients,
    pub config: ServerConfig,
    pub clock: Option<Arc<dyn MonotonicClock>>,
    pub slow: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            clients: StaticClients::new().with(
                "127.0.0.0/8".parse::<Cidr>().unwrap(),
                RadiusClient {
                    id: "agt_test".into(),
                    secret: SharedSecret::new(SECRET),
                },
            ),
            config: ServerConfig::default(),
            clock: None,
            slow: Duration::from_millis(1500),
        }
    }
}

pub async fn start(opts: Options) -> Running {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_test_writer()
            .try_init();
    }
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut server = Server::new(socket, Arc::new(opts.clients), opts.config);
    if let Some(clock) = opts.clock {
        server = server.with_clock(clock);
    }
    let addr = server.local_addr().unwrap();
    let counters = server.counters();
    let toy = Arc::new(Toy {
        calls: AtomicUsize::new(0),
        slow: opts.slow,
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let handler_toy = Arc::clone(&toy);
    let handler = move |req: Request| {
        let toy = Arc::clone(&handler_toy);
        async move { toy.decide(req).await }
    };
    let task = tokio::spawn(server.run(handler, async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        counters,
        toy,
        stop: Some(stop),
        task: Some(task),
    }
}

/// A raw NAS: builds signed Access-Requests with this crate's codec.
pub struct Nas {
    pub socket: UdpSocket,
    pub server: SocketAddr,
}

impl Nas {
    pub async fn new(server: SocketAddr) -> Self {
        Self {
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            server,
        }
    }

    pub fn request(id: u8, user: &str, password: &str, secret: &str) -> (Vec<u8>, [u8; 16]) {
        let auth: [u8; 16] = rand::random();
        let mut p = Packet::new(Code::AccessRequest, id, auth);
        p.attributes.push(Attribute::new(attr::USER_NAME, user.as_bytes()));
        let hidden = hide_password(password.as_bytes(), secret.as_bytes(), &auth).unwrap();
        p.attributes.push(Attribute::new(attr::USER_PASSWORD, hidden));
        p.attributes.push(Attribute::new(attr::NAS_IDENTIFIER, "test-nas"));
        (sign_request(&p, secret.as_bytes()).unwrap(), auth)
    }

    pub async fn send(&self, bytes: &[u8]) {
        self.socket.send_to(bytes, self.server).await.unwrap();
    }

    /// The next datagram, or `None` after `wait`.
    pub async fn recv(&self, wait: Duration) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(wait, self.socket.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
            _ => None,
        }
    }

    /// Decodes and authenticates a response the way a NAS must.
    pub fn check(response: &[u8], request_auth: &[u8; 16]) -> Packet {
        assert!(
            verify_response(response, request_auth, SECRET.as_bytes()),
            "response fails authentication"
        );
        let p = Packet::decode(response).unwrap();
        assert_eq!(
            p.attributes[0].typ,
            attr::MESSAGE_AUTHENTICATOR,
            "Message-Authenticator comes first"
        );
        p
    }
}
