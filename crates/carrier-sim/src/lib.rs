//! Carrier simulator: speaks the Twilio Messages API to Vigil and plays the
//! phones on the other end, so tests and the local stack exercise the real
//! SMS path (HTTP, auth, signed webhooks) without a real carrier.
//!
//! Run it in-process with [`serve`], or mount [`router`] yourself.

mod auth;
mod config;
pub mod control;
mod delivery;
mod error;
mod ids;
mod phone;
mod routes;
mod segments;
mod state;
mod webhook;

use std::future::Future;

pub use config::{DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, DEFAULT_STATUS_DELAY, SimConfig};
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
