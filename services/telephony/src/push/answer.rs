//! `POST /v1/push/answer`: a device answers a push. The body is JSON signed
//! by the device's Ed25519 key (`X-Vigil-Device-Signature`, base64, over the
//! exact body bytes), checked against the key the challenge service sent
//! with the delivery. Telephony judges only that the answer is authentic,
//! fresh and first; what it means is the challenge service's call.

use std::sync::Arc;

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use vigil_core::DeliveryId;

use crate::{
    db::{self, Callback},
    error::PushAnswerError,
    model::{Answer, Channel, Delivery},
    push::fcm::FCM,
    webhooks::Webhooks,
};

/// Header carrying the device's signature.
pub const SIGNATURE_HEADER: &str = "X-Vigil-Device-Signature";

/// The body a device posts.
#[derive(Debug, Deserialize)]
pub struct PushAnswer {
    pub delivery_id: String,
    pub device_id: String,
    pub answer: DeviceAnswer,
    /// The number the user picked (number matching); 0 when none was offered.
    #[serde(default)]
    pub matched_number: u32,
    /// Unix seconds when the device signed the answer.
    pub timestamp: i64,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceAnswer {
    Approve,
    Deny,
    Fraud,
}

impl From<DeviceAnswer> for Answer {
    fn from(answer: DeviceAnswer) -> Self {
        match answer {
            DeviceAnswer::Approve => Self::Approve,
            DeviceAnswer::Deny => Self::Deny,
            DeviceAnswer::Fraud => Self::Fraud,
        }
    }
}

pub async fn handle(
    State(app): State<Arc<Webhooks>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), PushAnswerError> {
    let answer: PushAnswer = serde_json::from_slice(&body).map_err(|e| PushAnswerError::Malformed(e.to_string()))?;
    let id = DeliveryId::parse(&answer.delivery_id)
        .map_err(|_| PushAnswerError::UnknownDelivery(answer.delivery_id.clone()))?;

    let mut tx = app.pool.begin().await?;
    let delivery = db::lock_delivery(&mut tx, id)
        .await?
        .filter(|d| d.channel == Channel::Push)
        .ok_or_else(|| PushAnswerError::UnknownDelivery(answer.delivery_id.clone()))?;
    // Authenticity first: nothing below is revealed to an unsigned caller.
    verify(&delivery, &headers, &body)?;
    if !bool::from(
        answer
            .device_id
            .as_bytes()
            .ct_eq(delivery.device_id.as_deref().unwrap_or_default().as_bytes()),
    ) {
        return Err(PushAnswerError::BadSignature);
    }
    let digest = Sha256::digest(&body).to_vec();
    if delivery.answered_at.is_some() {
        // The same answer again (a retry after a lost response) is fine.
        return match &delivery.answer_digest {
            Some(first) if bool::from(first.as_slice().ct_eq(&digest)) => Ok((
                StatusCode::OK,
                Json(serde_json::json!({ "status": "already_recorded" })),
            )),
            _ => Err(PushAnswerError::AlreadyAnswered),
        };
    }
    let now = app.clock.now();
    if delivery.expired_at(now) {
        return Err(PushAnswerError::Expired);
    }
    if now.timestamp().abs_diff(answer.timestamp) > u64::from(app.push_max_skew_seconds) {
        return Err(PushAnswerError::StaleTimestamp);
    }

    let kind = Answer::from(answer.answer);
    db::record_answer(&mut tx, id, kind, Some(&digest)).await?;
    db::record_callback(
        &mut tx,
        &Callback {
            delivery: Some(id),
            carrier: FCM,
            kind: "push_answer",
            carrier_ref: delivery.carrier_ref.as_deref(),
            status: kind.as_str(),
            detail: None,
        },
    )
    .await?;
    let event = delivery.answer_event(kind, &answer.device_id, "", answer.matched_number);
    app.outbox.enqueue(&mut tx, &delivery.provider_id, &event).await?;
    tx.commit().await?;
    app.outbox.notify();
    tracing::info!(
        delivery_id = %id,
        challenge_id = %delivery.challenge_id,
        device_id = %answer.device_id,
        answer = kind.as_str(),
        "push answered"
    );
    Ok((StatusCode::OK, Json(serde_json::json!({ "status": "accepted" }))))
}

fn verify(delivery: &Delivery, headers: &HeaderMap, body: &[u8]) -> Result<(), PushAnswerError> {
    let key = delivery
        .device_public_key
        .as_deref()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .and_then(|k| VerifyingKey::from_bytes(&k).ok())
        .ok_or(PushAnswerError::BadSignature)?;
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| STANDARD.decode(v.trim()).ok())
        .and_then(|bytes| Signature::from_slice(&bytes).ok())
        .ok_or(PushAnswerError::BadSignature)?;
    // Strict: refuses the malleable and small-order forms plain `verify` allows.
    key.verify_strict(body, &signature)
        .map_err(|_| PushAnswerError::BadSignature)
}
