//! `POST /v1/push/enroll`: a device enrols for push. It made its Ed25519
//! key pair itself and presents the one-time code an admin gave the user
//! (typed, or read from the QR payload), with its public key and push
//! registration token. Telephony checks the key is a usable Ed25519 key and
//! forwards the rest to the challenge service, which owns users and codes.

use std::sync::Arc;

use axum::{Json, body::Bytes, extract::State, http::StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use vigil_bus::{rpc::call, subjects};
use vigil_proto::rpc;

use crate::{error::PushEnrollError, webhooks::Webhooks};

/// The body a device posts.
#[derive(Debug, Serialize, Deserialize)]
pub struct EnrollRequest {
    pub code: String,
    /// Standard base64 of the 32-byte Ed25519 public key.
    pub public_key: String,
    pub push_token: String,
    #[serde(default)]
    pub device_name: String,
}

/// What the device keeps: the id it signs its answers as.
#[derive(Debug, Serialize, Deserialize)]
pub struct Enrolled {
    pub device_id: String,
}

pub async fn handle(
    State(app): State<Arc<Webhooks>>,
    body: Bytes,
) -> Result<(StatusCode, Json<Enrolled>), PushEnrollError> {
    let request: EnrollRequest =
        serde_json::from_slice(&body).map_err(|e| PushEnrollError::Malformed(e.to_string()))?;
    let public_key = STANDARD
        .decode(request.public_key.trim())
        .ok()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .filter(|k| VerifyingKey::from_bytes(k).is_ok_and(|key| !key.is_weak()))
        .ok_or(PushEnrollError::BadPublicKey)?;
    let forwarded = rpc::EnrollDeviceRequest {
        code: request.code,
        public_key: public_key.to_vec(),
        push_token: request.push_token,
        device_name: request.device_name,
    };
    let mut reply: rpc::EnrollDeviceReply = call(
        &app.nats,
        subjects::RPC_CHALLENGE_ENROLL_DEVICE,
        &forwarded,
        app.rpc_timeout,
    )
    .await
    .map_err(|error| {
        tracing::warn!(%error, "no answer from the challenge service to a push enrolment");
        PushEnrollError::Unavailable
    })?;
    if let Some(error) = reply.error.take() {
        return Err(PushEnrollError::from_rpc(&error.code, error.message));
    }
    tracing::info!(device_id = %reply.device_id, user_id = %reply.user_id, "push device enrolled");
    Ok((
        StatusCode::CREATED,
        Json(Enrolled {
            device_id: reply.device_id,
        }),
    ))
}
