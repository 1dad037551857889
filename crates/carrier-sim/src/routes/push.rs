//! An FCM-style HTTP v1 send endpoint, delivering to simulated devices.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::control::{DeviceAction, FaultApi, PushEntry};
use crate::state::SimState;
use crate::{ids, push};

#[derive(Deserialize)]
struct SendRequest {
    message: Message,
}

#[derive(Deserialize)]
struct Message {
    token: String,
    #[serde(default)]
    data: BTreeMap<String, String>,
}

/// FCM's error body: `{"error": {"code", "message", "status"}}`.
fn fcm_error(code: StatusCode, status: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code.as_u16(), "message": message, "status": status}});
    (code, Json(body)).into_response()
}

/// `POST /v1/projects/{project}/messages:send`
pub async fn send(
    State(state): State<SimState>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let response = handle(&state, &project, &headers, &body);
    if !response.status().is_success() {
        state.record_failure();
    }
    response
}

fn handle(state: &SimState, project: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    if let Some(status) = state.take_fault(FaultApi::Push) {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return fcm_error(code, "UNAVAILABLE", "Simulated failure injected via /sim/faults");
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !bool::from(bearer.as_bytes().ct_eq(state.config().push_token.as_bytes())) {
        return fcm_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
        );
    }
    let request: SendRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return fcm_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", &e.to_string()),
    };
    let Some(device_id) = state.device_for_token(&request.message.token) else {
        let body = json!({"error": {
            "code": 404,
            "message": "Requested entity was not found.",
            "status": "NOT_FOUND",
            "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}],
        }});
        return (StatusCode::NOT_FOUND, Json(body)).into_response();
    };
    let name = format!("projects/{project}/messages/{}", ids::random_hex(8));
    let data = request.message.data;
    let delivery = data.get("delivery_id").cloned().unwrap_or_default();
    let taken = state.with_device(&device_id, |d| {
        if let Some(status) = d.failing.get(&delivery) {
            return Err(*status);
        }
        let step = d.next_step();
        if step.action == DeviceAction::PushError {
            let status = step.status.filter(|s| (500..=599).contains(s)).unwrap_or(503);
            d.failing.insert(delivery.clone(), status);
            return Err(status);
        }
        d.pushes.push(PushEntry {
            name: name.clone(),
            data: data.clone(),
            answer: None,
            answer_status: None,
        });
        Ok((d.pushes.len() - 1, step))
    });
    let (index, step) = match taken {
        None => return fcm_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Requested entity was not found."),
        Some(Err(status)) => {
            tracing::info!(%device_id, status, "push refused by the device's script");
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return fcm_error(code, "UNAVAILABLE", "The service is currently unavailable.");
        }
        Some(Ok(taken)) => taken,
    };
    state.count_push();
    tracing::info!(%device_id, %name, "push accepted");
    push::spawn(state.clone(), device_id, index, step, data);
    (StatusCode::OK, Json(json!({ "name": name }))).into_response()
}
