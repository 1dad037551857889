//! Simulated devices answering pushes: each signs its answer with its
//! Ed25519 key and posts it to the push's `callback_url`, as Vigil's app would.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signer as _;
use serde::Serialize;

use crate::control::DeviceAction;
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

/// Lets the device react to push number `index` in the background.
pub fn spawn(state: SimState, device_id: String, index: usize, data: BTreeMap<String, String>) {
    tokio::spawn(async move {
        tokio::time::sleep(state.config().status_delay).await;
        let Some((behaviour, key)) = state.with_device(&device_id, |d| (d.behaviour.clone(), d.key.clone())) else {
            return;
        };
        let answer = match behaviour.action {
            DeviceAction::Approve => "approve",
            DeviceAction::Deny => "deny",
            DeviceAction::Fraud => "fraud",
            DeviceAction::Ignore => return,
        };
        let (Some(delivery_id), Some(url)) = (data.get("delivery_id"), data.get("callback_url")) else {
            tracing::warn!(%device_id, "push without delivery_id or callback_url; not answered");
            return;
        };
        let offered = data
            .get("match_choices")
            .and_then(|c| c.split(',').find_map(|n| n.trim().parse::<u32>().ok()));
        let body = Answer {
            delivery_id,
            device_id: &device_id,
            answer,
            matched_number: behaviour.pick.or(offered).unwrap_or(0),
            timestamp: chrono::Utc::now().timestamp(),
        };
        let Ok(body) = serde_json::to_string(&body) else {
            return;
        };
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
        state.with_device(&device_id, |d| {
            if let Some(push) = d.pushes.get_mut(index) {
                push.answer = Some(body);
                push.answer_status = status.ok();
            }
        });
    });
}
