//! HTTP surface of the simulator.

mod calls;
mod control;
mod fallback;
mod health;
mod messages;
mod phones;
mod push;

use axum::Router;
use axum::routing::{get, post, put};

use crate::state::SimState;

/// All routes: the Twilio-compatible Messages and Calls APIs, an FCM-style
/// push endpoint, the `/sim` control API and
/// health probes. Anything else gets a JSON 404/405.
pub fn router(state: SimState) -> Router {
    Router::new()
        .route(
            "/2010-04-01/Accounts/{account_sid}/Messages.json",
            post(messages::create),
        )
        // matchit cannot split `{sid}.json` inside one segment, so the handler
        // strips the suffix itself.
        .route(
            "/2010-04-01/Accounts/{account_sid}/Messages/{file}",
            get(messages::fetch),
        )
        .route("/2010-04-01/Accounts/{account_sid}/Calls.json", post(calls::create))
        .route("/v1/projects/{project}/messages:send", post(push::send))
        .route("/sim/inbox/{number}", get(control::inbox).delete(control::clear_inbox))
        .route("/sim/phones/{number}/reply", post(control::reply))
        .route(
            "/sim/phones/{number}/voice",
            get(phones::voice).put(phones::set_voice).post(phones::set_voice),
        )
        .route("/sim/calls/{number}", get(phones::calls))
        .route("/sim/devices", post(phones::create_device))
        .route("/sim/devices/enroll", post(phones::enroll_device))
        .route(
            "/sim/screens/{challenge_id}",
            put(phones::show_screen).post(phones::show_screen),
        )
        .route(
            "/sim/devices/{device_id}/behaviour",
            put(phones::set_device_behaviour).post(phones::set_device_behaviour),
        )
        .route("/sim/devices/{device_id}/pushes", get(phones::pushes))
        .route("/sim/devices/{device_id}/answer", post(phones::answer_now))
        .route("/sim/faults", post(control::set_faults))
        .route("/sim/stats", get(control::stats))
        .route("/healthz", get(health::ok))
        .route("/readyz", get(health::ok))
        .fallback(fallback::not_found)
        .method_not_allowed_fallback(fallback::method_not_allowed)
        .with_state(state)
}
