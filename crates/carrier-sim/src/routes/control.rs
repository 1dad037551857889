//! The `/sim` control API used by tests and developers. Unauthenticated: the
//! simulator is meant to listen on localhost only.

use axum::Json;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use vigil_twilio::{API_VERSION, InboundSms};

use crate::control::{ClearedInbox, Faults, InboxEntry, ReplyRequest, ReplyResponse, Stats};
use crate::error::ControlError;
use crate::state::SimState;
use crate::{ids, phone, segments, webhook};

type Result<T> = std::result::Result<T, ControlError>;

pub(super) fn path<T>(extracted: std::result::Result<Path<T>, PathRejection>) -> Result<T> {
    extracted
        .map(|Path(value)| value)
        .map_err(|rej| ControlError::Rejected(rej.status(), rej.body_text()))
}

pub(super) fn json<T>(extracted: std::result::Result<Json<T>, JsonRejection>) -> Result<T> {
    extracted
        .map(|Json(value)| value)
        .map_err(|rej| ControlError::Rejected(rej.status(), rej.body_text()))
}

/// Longest an inbox read may wait for a message.
const MAX_INBOX_WAIT_MS: u64 = 30_000;

/// `?wait_ms=N&after=SID` on an inbox read: wait up to N ms for a message
/// newer than SID (for any message, without `after`).
#[derive(Debug, Default, serde::Deserialize)]
pub struct InboxWait {
    #[serde(default)]
    wait_ms: u64,
    after: Option<String>,
}

/// `GET /sim/inbox/{number}`: messages sent to `number`, oldest first.
pub async fn inbox(
    State(state): State<SimState>,
    number: std::result::Result<Path<String>, PathRejection>,
    wait: std::result::Result<Query<InboxWait>, QueryRejection>,
) -> Result<Json<Vec<InboxEntry>>> {
    let number = path(number)?;
    let Query(wait) = wait.map_err(|rej| ControlError::Rejected(rej.status(), rej.body_text()))?;
    if wait.wait_ms == 0 {
        return Ok(Json(state.inbox(&number)));
    }
    let patience = Duration::from_millis(wait.wait_ms.min(MAX_INBOX_WAIT_MS));
    Ok(Json(state.inbox_after(&number, wait.after.as_deref(), patience).await))
}

/// `DELETE /sim/inbox/{number}`
pub async fn clear_inbox(
    State(state): State<SimState>,
    number: std::result::Result<Path<String>, PathRejection>,
) -> Result<Json<ClearedInbox>> {
    let cleared = state.clear_inbox(&path(number)?);
    Ok(Json(ClearedInbox { cleared }))
}

/// `POST /sim/phones/{number}/reply`: the phone at `number` sends an SMS,
/// which the simulator delivers to the inbound-SMS webhook, signed.
pub async fn reply(
    State(state): State<SimState>,
    number: std::result::Result<Path<String>, PathRejection>,
    req: std::result::Result<Json<ReplyRequest>, JsonRejection>,
) -> Result<Json<ReplyResponse>> {
    let number = path(number)?;
    let req = json(req)?;
    let cfg = state.config();
    let Some(url) = cfg.inbound_sms_url.as_deref() else {
        return Err(ControlError::Conflict(
            "no inbound SMS webhook is configured (set VIGIL_SIM_INBOUND_SMS_URL)".to_owned(),
        ));
    };
    if !phone::is_e164(&number) {
        return Err(ControlError::BadRequest(format!(
            "phone number {number:?} is not E.164 (+ then 8-15 digits)"
        )));
    }
    let to = match req.to.filter(|t| !t.is_empty()) {
        Some(to) => to,
        None => state.latest_sender(&number).ok_or_else(|| {
            ControlError::Conflict(format!(
                "nothing to reply to: the inbox of {number} is empty; pass \"to\" to choose the recipient"
            ))
        })?,
    };

    let sid = ids::message_sid();
    let inbound = InboundSms {
        message_sid: sid.clone(),
        account_sid: cfg.account_sid.clone(),
        from: number,
        to,
        num_segments: segments::count(&req.body).to_string(),
        body: req.body,
    };
    let mut params = inbound.to_params();
    // Extra fields real Twilio posts; receivers must sign-check them too.
    params.extend([
        ("SmsMessageSid".to_owned(), sid.clone()),
        ("SmsSid".to_owned(), sid.clone()),
        ("NumMedia".to_owned(), "0".to_owned()),
        ("ApiVersion".to_owned(), API_VERSION.to_owned()),
    ]);

    let status = webhook::post_signed(state.http(), &cfg.auth_token, url, &params)
        .await
        .map_err(|err| ControlError::BadGateway(format!("inbound SMS webhook {url} failed: {err}")))?;
    tracing::info!(%sid, from = %inbound.from, to = %inbound.to, webhook_status = %status, "phone replied");
    Ok(Json(ReplyResponse {
        message_sid: sid,
        webhook_status: status.as_u16(),
    }))
}

/// `POST /sim/faults`: fail the next N Messages API calls.
pub async fn set_faults(
    State(state): State<SimState>,
    req: std::result::Result<Json<Faults>, JsonRejection>,
) -> Result<Json<Faults>> {
    let faults = json(req)?;
    if !(400..=599).contains(&faults.status) {
        return Err(ControlError::BadRequest(format!(
            "status must be an HTTP error status (400-599), got {}",
            faults.status
        )));
    }
    state.set_faults(faults.clone());
    tracing::info!(fail_next = faults.fail_next, status = faults.status, "faults armed");
    Ok(Json(faults))
}

/// `GET /sim/stats`
pub async fn stats(State(state): State<SimState>) -> Json<Stats> {
    Json(state.stats())
}
