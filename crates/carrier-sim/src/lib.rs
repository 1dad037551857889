//! Carrier simulator: speaks the Twilio Messages and Calls APIs and an
//! FCM-style push API to Vigil, and plays the phones and devices on the other
//! end (answering calls and pressing keys, replying to SMS, approving pushes
//! with a signed answer), so tests and the local stack exercise the real paths
//! (HTTP, auth, signed webhooks) without a real carrier.
//!
//! Run it in-process with [`serve`], or mount [`router`] yourself.
//!
//! Carrier side (what Vigil calls):
//! - `POST /2010-04-01/Accounts/{sid}/Messages.json`, `GET .../Messages/{sid}.json`
//! - `POST /2010-04-01/Accounts/{sid}/Calls.json` (`To`, `From`, `Url`,
//!   `StatusCallback`, `Timeout`): rings for `status_delay`, then plays the
//!   called number's [`control::VoiceBehaviour`]: fetches `Url` (signed),
//!   presses the keys into the first `<Gather>`'s action (`Digits`,
//!   `FinishedOnKey`, signed) and posts the final status with `CallDuration`.
//! - `POST /v1/projects/{project}/messages:send` (bearer `push_token`,
//!   FCM-style): the device registered under `message.token` answers after
//!   `status_delay` by POSTing `{delivery_id, device_id, answer,
//!   matched_number, timestamp}` to `data.callback_url`, signed with its
//!   Ed25519 key in [`DEVICE_SIGNATURE_HEADER`] (base64, over the body).
//!
//! Control side (tests, the CLI), JSON:
//! - `GET|DELETE /sim/inbox/{number}`; a GET with `?wait_ms=N&after=SID`
//!   waits up to N ms for a message newer than SID; `POST /sim/phones/{number}/reply`
//! - `PUT /sim/phones/{number}/voice` `{"action": "answer"|"no_answer"|"busy"|
//!   "hang_up"|"fail", "digits": "1234#", "duration_seconds": 12}` (default:
//!   answer and press `#`); `GET` reads it back
//! - `GET /sim/calls/{number}`: calls placed to it, with what the phone heard
//! - `POST /sim/devices` (optional behaviour) → `{device_id, token,
//!   public_key}`; `PUT /sim/devices/{id}/behaviour` `{"action":
//!   "approve"|"deny"|"fraud"|"ignore"|"wrong_number"|"push_error", "pick": 47,
//!   "status": 503, "script": [{"action": "deny"}, ...]}` (script steps are
//!   used one per push, then `action`); `GET /sim/devices/{id}/pushes`
//! - `POST /sim/devices/enroll` `{"payload": "vigil-push://enroll?url=..&code=.."}`
//!   (or `url` and `code`, optional `device_name` and `behaviour`): the phone
//!   makes a key pair and enrols at Vigil's URL → `{enrolled, status,
//!   device_id, error, token, public_key}`
//! - `POST /sim/devices/{id}/answer` `{"action", "pick", "index"}`: answer a
//!   received push now (late or again) → `{status}`
//! - `PUT /sim/screens/{challenge_id}` `{"number": 42}`: what the sign-in
//!   screen shows; `approve` picks it, `wrong_number` another one
//! - `POST /sim/faults` `{"fail_next": 2, "status": 503, "api": "any"|
//!   "messages"|"calls"|"push"}`; `GET /sim/stats`

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
    // TCP_NODELAY, as a carrier's front end has: the simulator must not add
    // Nagle's delays to what the benchmark measures.
    let listener = axum::serve::ListenerExt::tap_io(listener, |stream: &mut tokio::net::TcpStream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set on an accepted connection");
        }
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    tracing::info!("carrier simulator stopped");
    Ok(())
}
