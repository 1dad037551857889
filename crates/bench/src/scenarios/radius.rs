//! `radius`: an Access-Request whose User-Password is a password followed by
//! a fresh TOTP code (password-and-code mode), signed with
//! Message-Authenticator as a NAS must, answered with Access-Accept.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use futures::{StreamExt, TryStreamExt, stream};
use tokio::net::UdpSocket;
use vigil_proto::v1::{CreateRadiusClientRequest, RadiusMode, SetDirectoryRequest};
use vigil_radius::{Attribute, Code, Packet, attr, hide_password, sign_request, verify_response};

use crate::driver::Scenario;
use crate::setup::Tenant;
use crate::stats::{Failure, Outcome};
use crate::users::{Pool, TotpUser};

/// The password part, checked by binding to the provider's directory as the user.
const PASSWORD: &str = "bench-password";
/// How long the gateway may take to learn about the new RADIUS client.
const REGISTRATION_WAIT: Duration = Duration::from_secs(30);

pub struct Radius {
    pub pool: Pool<TotpUser>,
    server: SocketAddr,
    /// One registered RADIUS client (and agent) per source address, so the
    /// load spreads under the per-agent rate limit.
    sources: Vec<IpAddr>,
    secret: String,
    /// Idle sockets per source; each request has one to itself, so any
    /// datagram on it is the answer to that request or a late one to an
    /// earlier request.
    sockets: Vec<Mutex<Vec<UdpSocket>>>,
    sent: AtomicU64,
}

/// The addresses the benchmark sends from: the given one, or `count` random
/// loopback ones (all of 127/8 is local on Linux) so runs never share a
/// RADIUS client. A remote server sees one address only.
pub fn bind_addresses(given: Option<IpAddr>, server: SocketAddr, count: usize) -> Vec<IpAddr> {
    match given {
        Some(ip) => vec![ip],
        None if server.ip().is_loopback() => {
            let mut ips = std::collections::BTreeSet::new();
            while ips.len() < count.max(1) {
                ips.insert(IpAddr::from([
                    127,
                    rand::random_range(1..=254),
                    rand::random(),
                    rand::random_range(1..=254),
                ]));
            }
            ips.into_iter().collect()
        }
        None => vec![IpAddr::from([0, 0, 0, 0])],
    }
}

/// Points the provider's password checks at `url` (a bind as the user).
pub async fn use_directory(tenant: &Tenant, url: &str, template: &str) -> anyhow::Result<()> {
    let mut admin = tenant.admin.clone();
    admin
        .set_directory(SetDirectoryRequest {
            provider_id: tenant.provider_id.clone(),
            url: url.to_owned(),
            bind_dn_template: template.to_owned(),
            ..Default::default()
        })
        .await
        .context("setting the provider's directory")?;
    Ok(())
}

impl Radius {
    /// Registers each source address as a RADIUS client of the provider.
    pub async fn register(
        tenant: &Tenant,
        users: Vec<TotpUser>,
        server: SocketAddr,
        sources: Vec<IpAddr>,
    ) -> anyhow::Result<Self> {
        let secret = format!("vigil-bench-secret-{}", tenant.run_id);
        stream::iter(sources.iter().enumerate())
            .map(|(i, ip)| {
                let mut admin = tenant.admin.clone();
                let request = CreateRadiusClientRequest {
                    provider_id: tenant.provider_id.clone(),
                    agent_id: String::new(),
                    name: format!("vigil-bench {} {i}", tenant.run_id),
                    source_cidr: ip.to_string(),
                    shared_secret: secret.clone(),
                    mode: RadiusMode::PasswordCode as i32,
                    timeout_seconds: 0,
                };
                async move {
                    admin
                        .create_radius_client(request)
                        .await
                        .with_context(|| format!("registering {ip} as a RADIUS client"))
                }
            })
            .buffer_unordered(16)
            .try_collect::<Vec<_>>()
            .await?;
        let radius = Self {
            pool: Pool::new(users),
            server,
            sockets: sources.iter().map(|_| Mutex::new(Vec::new())).collect(),
            sources,
            secret,
            sent: AtomicU64::new(0),
        };
        for source in 0..radius.sources.len() {
            radius.wait_registered(source).await?;
        }
        Ok(radius)
    }

    /// The gateway drops packets from a source it does not know yet (its
    /// client list reloads shortly after the admin call): probe until it
    /// answers at all, with a user that does not exist.
    async fn wait_registered(&self, source: usize) -> anyhow::Result<()> {
        let give_up = tokio::time::Instant::now() + REGISTRATION_WAIT;
        let socket = self.socket(source).await.map_err(|f| anyhow::anyhow!("{}", f.0))?;
        while tokio::time::Instant::now() < give_up {
            let probe = self.exchange(&socket, "vigil-bench-probe", "000000");
            if tokio::time::timeout(Duration::from_millis(500), probe).await.is_ok() {
                self.put_socket(source, socket);
                return Ok(());
            }
        }
        anyhow::bail!(
            "the RADIUS server at {} did not answer {:?} within {REGISTRATION_WAIT:?}",
            self.server,
            self.sources.get(source)
        )
    }

    async fn socket(&self, source: usize) -> Result<UdpSocket, Failure> {
        let idle = self
            .sockets
            .get(source)
            .and_then(|s| s.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop());
        match idle {
            Some(socket) => Ok(socket),
            None => {
                let ip = self
                    .sources
                    .get(source)
                    .copied()
                    .ok_or_else(|| Failure::new("radius_bind"))?;
                UdpSocket::bind((ip, 0)).await.map_err(|_| Failure::new("radius_bind"))
            }
        }
    }

    fn put_socket(&self, source: usize, socket: UdpSocket) {
        if let Some(idle) = self.sockets.get(source) {
            idle.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(socket);
        }
    }

    /// One Access-Request and its verified answer.
    async fn exchange(&self, socket: &UdpSocket, username: &str, code: &str) -> Result<Packet, Failure> {
        let identifier = (self.sent.fetch_add(1, Ordering::Relaxed) % 256) as u8;
        let authenticator: [u8; 16] = rand::random();
        let secret = self.secret.as_bytes();
        let password = format!("{PASSWORD}{code}");
        let mut request = Packet::new(Code::AccessRequest, identifier, authenticator);
        request.attributes.extend([
            Attribute::new(attr::USER_NAME, username.as_bytes()),
            Attribute::new(
                attr::USER_PASSWORD,
                hide_password(password.as_bytes(), secret, &authenticator)
                    .map_err(|_| Failure::new("radius_encode"))?,
            ),
            Attribute::new(attr::NAS_IDENTIFIER, "vigil-bench"),
        ]);
        let bytes = sign_request(&request, secret).map_err(|_| Failure::new("radius_encode"))?;
        socket
            .send_to(&bytes, self.server)
            .await
            .map_err(|_| Failure::new("radius_send"))?;
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, from) = socket
                .recv_from(&mut buf)
                .await
                .map_err(|_| Failure::new("radius_recv"))?;
            let datagram = buf.get(..n).unwrap_or_default();
            // Late answers to an earlier, timed-out request fail these checks.
            if from != self.server || !verify_response(datagram, &authenticator, secret) {
                continue;
            }
            match Packet::decode(datagram) {
                Ok(p) if p.identifier == identifier => return Ok(p),
                _ => continue,
            }
        }
    }
}

/// `DENY wrong_code: …` → `reject:wrong_code`.
fn rejection(packet: &Packet) -> Failure {
    let message = packet.reply_message().unwrap_or_default();
    let reason = message
        .split_whitespace()
        .nth(1)
        .map(|r| r.trim_end_matches(':'))
        .unwrap_or("no_reason");
    Failure::new(format!("reject:{reason}"))
}

impl Scenario for Radius {
    type Job = (TotpUser, String);

    async fn prepare(&self) -> Result<Self::Job, Failure> {
        self.pool.take_code().await
    }

    async fn run(&self, (user, code): Self::Job) -> Result<Outcome, Failure> {
        let n = self.sent.load(Ordering::Relaxed);
        let source = usize::try_from(n % self.sources.len().max(1) as u64).unwrap_or(0);
        let socket = self.socket(source).await?;
        let answer = self.exchange(&socket, &user.username, &code).await;
        self.pool.put_back(user);
        // A timed-out exchange drops its socket with this future, so a late
        // answer never lands on a socket another request is using.
        self.put_socket(source, socket);
        let packet = answer?;
        match packet.code {
            Code::AccessAccept => Ok(Outcome::default()),
            Code::AccessReject => Err(rejection(&packet)),
            other => Err(Failure::new(format!("radius:{other:?}"))),
        }
    }
}
