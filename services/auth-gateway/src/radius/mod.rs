//! RADIUS (RFC 2865) for NPS, RD Gateway and VPNs: each registered RADIUS
//! client is an agent of kind `radius`, and its logins go through the same
//! policy, challenge service and reasons as gRPC agents. The codec, the
//! Message-Authenticator checks and duplicate detection live in
//! `vigil-radius`; this module knows which clients exist and what to answer.

mod handler;
mod registry;
mod state;
pub mod store;

use std::{sync::Arc, time::Duration};

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vigil_proto::v1::RadiusMode;
use vigil_radius::{Server, ServerConfig};
use vigil_secrets::Aad;

pub use registry::Registry;

use crate::app::Gateway;

/// How a client's logins are decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// (a) The client checked the password; Vigil runs the user's default
    /// out-of-band factor and answers when the user does.
    SecondFactor,
    /// (b) Access-Challenge with a State; the code comes in a second request.
    Challenge,
    /// (c) User-Password is the password followed by a 6-digit TOTP code.
    PasswordCode,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SecondFactor => "second_factor",
            Self::Challenge => "challenge",
            Self::PasswordCode => "password_code",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "second_factor" => Some(Self::SecondFactor),
            "challenge" => Some(Self::Challenge),
            "password_code" => Some(Self::PasswordCode),
            _ => None,
        }
    }

    pub fn from_proto(mode: RadiusMode) -> Option<Self> {
        match mode {
            RadiusMode::SecondFactor => Some(Self::SecondFactor),
            RadiusMode::Challenge => Some(Self::Challenge),
            RadiusMode::PasswordCode => Some(Self::PasswordCode),
            RadiusMode::Unspecified => None,
        }
    }

    pub fn to_proto(self) -> RadiusMode {
        match self {
            Self::SecondFactor => RadiusMode::SecondFactor,
            Self::Challenge => RadiusMode::Challenge,
            Self::PasswordCode => RadiusMode::PasswordCode,
        }
    }
}

/// RADIUS client ids on the wire: `rcl_<uuid hex>`, like the other typed ids.
pub fn client_id_text(id: Uuid) -> String {
    format!("rcl_{}", id.simple())
}

pub fn parse_client_id(text: &str) -> Option<Uuid> {
    let body = text.strip_prefix("rcl_")?;
    if body.len() != 32 || !body.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Uuid::parse_str(body).ok()
}

/// Binds a shared secret's ciphertext to its client, so it cannot be moved
/// to another row.
pub fn secret_aad(id: Uuid) -> Aad {
    Aad::new("radius_secret").with("client", client_id_text(id))
}

/// Serves RADIUS on `socket` until `shutdown`, with the client list reloaded
/// every few seconds and whenever the admin API changes it.
pub async fn serve(gateway: Arc<Gateway>, socket: UdpSocket, shutdown: CancellationToken) {
    let registry = Arc::new(Registry::default());
    // Load before answering, so the first packets are not dropped as unknown.
    registry.reload(&gateway).await;
    let config = ServerConfig {
        // Above the longest second-factor wait (100 s), so a waiting handler
        // is never abandoned before it answers.
        handler_timeout: Duration::from_secs(120),
        ..ServerConfig::default()
    };
    let server = Server::new(socket, registry.clone(), config);
    let counters = server.counters();
    // Stops the helpers when the server ends, for whatever reason.
    let helpers = shutdown.child_token();
    let reloading = tokio::spawn(registry::keep_fresh(registry.clone(), gateway.clone(), helpers.clone()));
    let counting = tokio::spawn({
        let stop = helpers.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => tracing::debug!(counters = ?counters.snapshot(), "radius counters"),
                }
            }
        }
    });
    let handler = handler::RadiusHandler::new(gateway, registry);
    let stop = shutdown.clone();
    if let Err(error) = server.run(handler, async move { stop.cancelled().await }).await {
        tracing::error!(%error, "RADIUS server failed; RADIUS logins get no answer");
    }
    helpers.cancel();
    reloading.await.ok();
    counting.await.ok();
}
