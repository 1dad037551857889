//! Control routes for simulated phones' voice behaviour and devices.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::Rng as _;

use super::control::{json, path};
use crate::control::{CallEntry, DeviceBehaviour, DeviceCreated, PushEntry, VoiceBehaviour};
use crate::error::ControlError;
use crate::ids;
use crate::phone;
use crate::state::{Device, SimState};

type Result<T> = std::result::Result<T, ControlError>;

/// `PUT /sim/phones/{number}/voice`: how the phone answers calls from now on.
pub async fn set_voice(
    State(state): State<SimState>,
    number: std::result::Result<Path<String>, PathRejection>,
    req: std::result::Result<Json<VoiceBehaviour>, JsonRejection>,
) -> Result<Json<VoiceBehaviour>> {
    let number = path(number)?;
    let behaviour = json(req)?;
    if !phone::is_e164(&number) {
        return Err(ControlError::BadRequest(format!(
            "phone number {number:?} is not E.164"
        )));
    }
    if let Some(bad) = behaviour
        .digits
        .chars()
        .find(|c| !(c.is_ascii_digit() || *c == '*' || *c == '#'))
    {
        return Err(ControlError::BadRequest(format!(
            "digits may hold 0-9, * and # only, got {bad:?}"
        )));
    }
    state.set_voice_behaviour(&number, behaviour.clone());
    tracing::info!(%number, action = ?behaviour.action, "voice behaviour set");
    Ok(Json(behaviour))
}

/// `GET /sim/phones/{number}/voice`
pub async fn voice(
    State(state): State<SimState>,
    number: std::result::Result<Path<String>, PathRejection>,
) -> Result<Json<VoiceBehaviour>> {
    Ok(Json(state.voice_behaviour(&path(number)?)))
}

/// `GET /sim/calls/{number}`: calls placed to `number`, oldest first.
pub async fn calls(
    State(state): State<SimState>,
    number: std::result::Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<CallEntry>>> {
    Ok(Json(state.calls_to(&path(number)?)))
}

/// `POST /sim/devices`: enrols a simulated device with a fresh Ed25519 key
/// pair. The body (a [`DeviceBehaviour`]) is optional.
pub async fn create_device(State(state): State<SimState>, body: Bytes) -> Result<Json<DeviceCreated>> {
    let behaviour = if body.iter().all(u8::is_ascii_whitespace) {
        DeviceBehaviour::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ControlError::BadRequest(format!("invalid device behaviour: {e}")))?
    };
    let secret: [u8; 32] = rand::rng().random();
    let key = ed25519_dalek::SigningKey::from_bytes(&secret);
    let created = DeviceCreated {
        device_id: format!("dev_sim_{}", ids::random_hex(8)),
        token: format!("sim-token-{}", ids::random_hex(16)),
        public_key: STANDARD.encode(key.verifying_key().to_bytes()),
    };
    state.add_device(
        created.device_id.clone(),
        Device {
            key,
            token: created.token.clone(),
            behaviour,
            pushes: Vec::new(),
        },
    );
    tracing::info!(device_id = %created.device_id, "device enrolled");
    Ok(Json(created))
}

/// `PUT /sim/devices/{device_id}/behaviour`
pub async fn set_device_behaviour(
    State(state): State<SimState>,
    device_id: std::result::Result<Path<String>, PathRejection>,
    req: std::result::Result<Json<DeviceBehaviour>, JsonRejection>,
) -> Result<Json<DeviceBehaviour>> {
    let device_id = path(device_id)?;
    let behaviour = json(req)?;
    state
        .with_device(&device_id, |d| d.behaviour = behaviour.clone())
        .ok_or_else(|| ControlError::NotFound(format!("no device {device_id}")))?;
    Ok(Json(behaviour))
}

/// `GET /sim/devices/{device_id}/pushes`: pushes the device got, oldest first.
pub async fn pushes(
    State(state): State<SimState>,
    device_id: std::result::Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<PushEntry>>> {
    let device_id = path(device_id)?;
    state
        .with_device(&device_id, |d| d.pushes.clone())
        .map(Json)
        .ok_or_else(|| ControlError::NotFound(format!("no device {device_id}")))
}
