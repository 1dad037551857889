//! Carrier simulator: speaks the Twilio Messages and Calls APIs and an
//! FCM-style push API to Vigil, and plays the phones and devices on the other
//! end (answering calls and pressing keys, replying to SMS, approving pushes
//! with a signed answer), so tests and the local stack exercise the real paths
//! (HTTP, auth, signed webhooks) without a real carrier.
//!
//! Run it in-process with [`serve`], or mount [`router`] yourself.

mod auth;
mod config;
pub mod control;
mod delivery;
mod error;
mod ids;
mod phone;
mod push;
mod routes;
mod segments;
mod state;
mod twiml;
mod voice;
mod webhook;

use std::future::Future;

pub use config::{DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, DEFAULT_PUSH_TOKEN, DEFAULT_STATUS_DELAY, SimConfig};
pub use push::DEVICE_SIGNATURE_HEADER;
pub use routes::router;
pub use state::SimState;

/// Serves the simulator on `listener` until `shutdown` resolves, then drains
/// in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cfg: SimConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = SimState::new(cfg)?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, account_sid = %state.config().account_sid, "carrier simulator listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    tracing::info!("carrier simulator stopped");
    Ok(())
}
