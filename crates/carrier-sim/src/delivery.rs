//! Simulated delivery: a message moves `queued` -> `sent` -> `delivered`,
//! one `status_delay` apart, with a signed status callback at each step.

use vigil_twilio::{API_VERSION, MessageResource, StatusCallback};

use crate::state::SimState;
use crate::webhook;

const PROGRESSION: [&str; 2] = ["sent", "delivered"];

/// Runs the progression of one message in the background.
pub fn spawn(state: SimState, sid: String, status_callback: Option<String>) {
    tokio::spawn(async move {
        for status in PROGRESSION {
            tokio::time::sleep(state.config().status_delay).await;
            // Evicted messages simply stop progressing.
            let Some(msg) = state.set_status(&sid, status) else {
                return;
            };
            tracing::debug!(%sid, %status, "message status changed");
            if let Some(url) = &status_callback {
                notify(&state, url, &msg).await;
            }
        }
    });
}

/// Posts one status callback; the outcome is logged, never propagated, since
/// a real carrier does not care whether the customer's webhook works.
async fn notify(state: &SimState, url: &str, msg: &MessageResource) {
    let cfg = state.config();
    let callback = StatusCallback {
        message_sid: msg.sid.clone(),
        message_status: msg.status.clone(),
        account_sid: cfg.account_sid.clone(),
        to: msg.to.clone(),
        from: msg.from.clone(),
        error_code: msg.error_code,
    };
    let mut params = callback.to_params();
    // Twilio also sends these legacy/extra fields. Including them keeps
    // receivers honest: a signature check must cover every posted parameter.
    params.extend([
        ("SmsSid".to_owned(), msg.sid.clone()),
        ("SmsStatus".to_owned(), msg.status.clone()),
        ("ApiVersion".to_owned(), API_VERSION.to_owned()),
    ]);
    match webhook::post_signed(state.http(), &cfg.auth_token, url, &params).await {
        Ok(status) if status.is_success() => {
            tracing::debug!(sid = %msg.sid, status = %msg.status, %url, "status callback delivered");
        }
        Ok(http_status) => {
            tracing::warn!(sid = %msg.sid, status = %msg.status, %url, %http_status, "status callback rejected");
        }
        Err(err) => {
            tracing::warn!(sid = %msg.sid, status = %msg.status, %url, error = %err, "status callback failed");
        }
    }
}
