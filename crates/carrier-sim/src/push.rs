//! Simulated devices answering pushes: each signs its answer with its
//! Ed25519 key and posts it to the push's `callback_url`, as Vigil's app would.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signer as _;
use serde::Serialize;

use crate::control::{DeviceAction, DeviceStep};
use crate::state::SimState;

/// Header carrying the base64 Ed25519 signature over the exact body bytes.
pub const DEVICE_SIGNATURE_HEADER: &str = "X-Vigil-Device-Signature";

/// The answer a device posts.
#[derive(Debug, Serialize)]
struct Answer<'a> {
    delivery_id: &'a str,
    device_id: &'a str,
    answer: &'static str,
    matched_number: u32,
    /// Unix seconds.
    timestamp: i64,
}

/// How often a simulated user glances at the sign-in screen for its number.
const SCREEN_GLANCE: std::time::Duration = std::time::Duration::from_millis(25);
/// The longest a simulated user looks for the number before giving up.
const MAX_LOOK: std::time::Duration = std::time::Duration::from_secs(600);

/// The numbers a push offers, in order.
fn offered(data: &BTreeMap<String, String>) -> Vec<u32> {
    data.get("match_choices")
        .map(|c| c.split(',').filter_map(|n| n.trim().parse::<u32>().ok()).collect())
        .unwrap_or_default()
}

/// The number the sign-in screen shows for the push's challenge, once the
/// test (the "user") has put it there, or `None` when the push expires first.
async fn look_at_screen(state: &SimState, data: &BTreeMap<String, String>) -> Option<u32> {
    let challenge = data.get("challenge_id")?;
    let until = data
        .get("expires_at")
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .and_then(|t| (t.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().ok())
        .unwrap_or(MAX_LOOK)
        .min(MAX_LOOK);
    let deadline = tokio::time::Instant::now() + until;
    loop {
        if let Some(number) = state.screen(challenge) {
            return Some(number);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(SCREEN_GLANCE).await;
    }
}

/// The number the user picks for `step`.
async fn pick(state: &SimState, step: &DeviceStep, data: &BTreeMap<String, String>) -> Option<u32> {
    let choices = offered(data);
    if let Some(n) = step.pick {
        return Some(n);
    }
    match step.action {
        DeviceAction::Approve if !choices.is_empty() => look_at_screen(state, data).await,
        DeviceAction::WrongNumber => {
            let shown = look_at_screen(state, data).await?;
            // Any number but the shown one; one outside 10..=99 if all are taken.
            Some(
                choices
                    .into_iter()
                    .find(|n| *n != shown)
                    .unwrap_or(if shown == 0 { 1 } else { 0 }),
            )
        }
        _ => Some(choices.first().copied().unwrap_or(0)),
    }
}

/// Lets the device react to push number `index` as `step` says, in the background.
pub fn spawn(state: SimState, device_id: String, index: usize, step: DeviceStep, data: BTreeMap<String, String>) {
    tokio::spawn(async move {
        tokio::time::sleep(state.config().status_delay).await;
        answer(&state, &device_id, index, &step, &data).await;
    });
}

/// The device answers push number `index` now, as `step` says; the HTTP
/// status Vigil's callback answered, or `None` when nothing was posted.
pub async fn answer(
    state: &SimState,
    device_id: &str,
    index: usize,
    step: &DeviceStep,
    data: &BTreeMap<String, String>,
) -> Option<u16> {
    let answer = match step.action {
        DeviceAction::Approve | DeviceAction::WrongNumber => "approve",
        DeviceAction::Deny => "deny",
        DeviceAction::Fraud => "fraud",
        DeviceAction::Ignore | DeviceAction::PushError => return None,
    };
    let key = state.with_device(device_id, |d| d.key.clone())?;
    let (Some(delivery_id), Some(url)) = (data.get("delivery_id"), data.get("callback_url")) else {
        tracing::warn!(%device_id, "push without delivery_id or callback_url; not answered");
        return None;
    };
    let Some(matched_number) = pick(state, step, data).await else {
        tracing::info!(%device_id, "the sign-in screen never showed a number; push left unanswered");
        return None;
    };
    let body = Answer {
        delivery_id,
        device_id,
        answer,
        matched_number,
        timestamp: chrono::Utc::now().timestamp(),
    };
    let body = serde_json::to_string(&body).ok()?;
    let signature = STANDARD.encode(key.sign(body.as_bytes()).to_bytes());
    let status = state
        .http()
        .post(url)
        .header(DEVICE_SIGNATURE_HEADER, signature)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.clone())
        .send()
        .await
        .map(|r| r.status().as_u16());
    if let Err(err) = &status {
        tracing::warn!(%device_id, %url, error = %err, "push answer could not be posted");
    }
    tracing::info!(%device_id, answer, status = ?status.as_ref().ok(), "device answered push");
    state.with_device(device_id, |d| {
        if let Some(push) = d.pushes.get_mut(index) {
            push.answer = Some(body);
            push.answer_status = status.as_ref().ok().copied();
        }
    });
    status.ok()
}
