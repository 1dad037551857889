//! Control routes for simulated phones' voice behaviour and devices.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::Rng as _;

use super::control::{json, path};
use crate::control::{
    AnswerNow, Answered, CallEntry, DeviceBehaviour, DeviceCreated, DeviceEnrolled, DeviceStep, EnrollDevice,
    PushEntry, Screen, VoiceBehaviour,
};
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
        Device::new(key, created.token.clone(), behaviour),
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

/// Where and with which code to enrol, from the QR payload or the fields.
fn enrolment_target(req: &EnrollDevice) -> Result<(String, String)> {
    if let Some(payload) = req.payload.as_deref() {
        let uri =
            url::Url::parse(payload).map_err(|e| ControlError::BadRequest(format!("payload is not a URI: {e}")))?;
        let field = |name: &str| {
            uri.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
                .ok_or_else(|| ControlError::BadRequest(format!("payload has no {name:?}")))
        };
        return Ok((field("url")?, field("code")?));
    }
    match (&req.url, &req.code) {
        (Some(url), Some(code)) => Ok((url.clone(), code.clone())),
        _ => Err(ControlError::BadRequest(
            "give the QR payload, or both url and code".to_owned(),
        )),
    }
}

/// `POST /sim/devices/enroll`: a simulated phone enrols with Vigil from an
/// enrolment code, with a fresh key pair and push token, as the app would.
pub async fn enroll_device(
    State(state): State<SimState>,
    req: std::result::Result<Json<EnrollDevice>, JsonRejection>,
) -> Result<Json<DeviceEnrolled>> {
    let req = json(req)?;
    let (url, code) = enrolment_target(&req)?;
    let secret: [u8; 32] = rand::rng().random();
    let key = ed25519_dalek::SigningKey::from_bytes(&secret);
    let token = format!("sim-token-{}", ids::random_hex(16));
    let public_key = STANDARD.encode(key.verifying_key().to_bytes());
    let body = serde_json::json!({
        "code": code,
        "public_key": public_key,
        "push_token": token,
        "device_name": req.device_name.clone().unwrap_or_else(|| "Simulated phone".to_owned()),
    });
    let response = state
        .http()
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| ControlError::BadGateway(format!("enrolment URL {url} failed: {e}")))?;
    let status = response.status();
    let answer: serde_json::Value = response.json().await.unwrap_or_default();
    let text = |field: &str| answer.get(field).and_then(|v| v.as_str()).map(str::to_owned);
    let device_id = text("device_id").filter(|_| status.is_success());
    if let Some(device_id) = &device_id {
        let behaviour = req.behaviour.unwrap_or_default();
        state.add_device(device_id.clone(), Device::new(key, token.clone(), behaviour));
        tracing::info!(%device_id, "device enrolled with Vigil");
    } else {
        tracing::info!(status = status.as_u16(), error = ?text("error"), "Vigil refused the enrolment");
    }
    Ok(Json(DeviceEnrolled {
        enrolled: device_id.is_some(),
        status: status.as_u16(),
        device_id,
        error: text("error"),
        token,
        public_key,
    }))
}

/// `PUT /sim/screens/{challenge_id}`: the number the sign-in screen shows,
/// which simulated users pick (or avoid) on their device.
pub async fn show_screen(
    State(state): State<SimState>,
    challenge_id: std::result::Result<Path<String>, PathRejection>,
    req: std::result::Result<Json<Screen>, JsonRejection>,
) -> Result<Json<Screen>> {
    let challenge_id = path(challenge_id)?;
    let screen = json(req)?;
    state.show_screen(&challenge_id, screen.number);
    Ok(Json(screen))
}

/// `POST /sim/devices/{device_id}/answer`: the device answers a push it
/// received, now (late, or a second time).
pub async fn answer_now(
    State(state): State<SimState>,
    device_id: std::result::Result<Path<String>, PathRejection>,
    req: std::result::Result<Json<AnswerNow>, JsonRejection>,
) -> Result<Json<Answered>> {
    let device_id = path(device_id)?;
    let req = json(req)?;
    let pushes = state
        .with_device(&device_id, |d| d.pushes.clone())
        .ok_or_else(|| ControlError::NotFound(format!("no device {device_id}")))?;
    let index = req.index.unwrap_or(pushes.len().saturating_sub(1));
    let push = pushes
        .get(index)
        .ok_or_else(|| ControlError::NotFound(format!("device {device_id} has no push {index}")))?;
    let step = DeviceStep {
        action: req.action,
        pick: req.pick,
        status: None,
    };
    let status = crate::push::answer(&state, &device_id, index, &step, &push.data).await;
    Ok(Json(Answered { status }))
}
