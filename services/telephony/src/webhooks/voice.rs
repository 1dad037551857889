//! The voice call flow, served to the carrier as TwiML:
//!
//! - `POST /v1/carrier/twilio/voice/{delivery_id}`: the call was answered;
//!   speak the sentence and gather digits.
//! - `POST .../{delivery_id}/gather`: the digits. `#` alone approves (press-
//!   pound mode), digits then `#` are a PIN (PIN mode), `0#` reports fraud.
//! - `POST .../{delivery_id}/status`: the call ended. Anything but a call
//!   that was answered with input fails the delivery with the reason.
//!
//! Each is signed by the carrier that placed the call. The delivery id in
//! the path finds the call even before its SID is committed. Digits are
//! forwarded, never logged or stored: the challenge service checks PINs.

use std::sync::Arc;

use axum::{
    extract::{Path, RawForm, State, rejection::RawFormRejection},
    http::{HeaderMap, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use sqlx::{PgConnection, Postgres, Transaction};
use vigil_core::DeliveryId;
use vigil_twilio::twiml::{self, Gather};

use super::{Webhooks, form};
use crate::{
    config::VOICE_PATH,
    db::{self, Callback},
    error::WebhookError,
    model::{Answer, Channel, Delivery, DeliveryState, VoiceMode},
    usage,
};

/// Longest PIN the gather collects.
const MAX_PIN_DIGITS: u32 = 12;

const PRESS_POUND_PROMPT: &str =
    "To approve the sign-in, press pound. If you did not try to sign in, press zero, then pound.";
const PIN_PROMPT: &str = "Enter your PIN, then press pound. If you did not try to sign in, press zero, then pound.";
const GOODBYE: &str = "Thank you. Goodbye.";
const FRAUD_NOTED: &str = "Thank you. The sign-in has been reported as fraud. Goodbye.";
const NOT_VALID: &str = "That was not a valid answer. Goodbye.";
const NO_LONGER_VALID: &str = "This sign-in request is no longer valid. Goodbye.";

/// Why a call ended without an answer, as published in `DeliveryStatus.error`.
pub mod reason {
    pub const NO_INPUT: &str = "no-input";
    pub const INVALID_INPUT: &str = "invalid-input";
    pub const HANGUP: &str = "hangup-before-input";
    pub const EXPIRED: &str = "expired";
}

/// A verified voice callback, its delivery locked in `tx`.
struct CallRequest {
    tx: Transaction<'static, Postgres>,
    delivery: Delivery,
    params: form::Params,
}

async fn verified(
    app: &Webhooks,
    delivery_id: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: Result<RawForm, RawFormRejection>,
) -> Result<CallRequest, WebhookError> {
    let unknown = || WebhookError::UnknownCall(delivery_id.to_owned());
    let id = DeliveryId::parse(delivery_id).map_err(|_| unknown())?;
    let mut tx = app.pool.begin().await?;
    let delivery = db::lock_delivery(&mut tx, id)
        .await?
        .filter(|d| d.channel == Channel::Voice)
        .ok_or_else(unknown)?;
    // Only the carrier that placed the call may drive it.
    let token = app.token_of(&delivery.carrier).ok_or(WebhookError::BadSignature)?;
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let url = format!("{}{path}", app.public_base);
    let params = form::verified(token, &url, headers, body)?;
    Ok(CallRequest { tx, delivery, params })
}

fn twiml(response: &twiml::Response) -> Response {
    ([(header::CONTENT_TYPE, "text/xml")], response.render()).into_response()
}

fn say_goodbye(text: &str) -> twiml::Response {
    twiml::Response::new().say(text).hangup()
}

async fn callback(
    tx: &mut PgConnection,
    delivery: &Delivery,
    kind: &str,
    call_sid: Option<&str>,
    status: &str,
    detail: Option<&str>,
) -> Result<(), sqlx::Error> {
    db::record_callback(
        tx,
        &Callback {
            delivery: Some(delivery.id),
            carrier: &delivery.carrier,
            kind,
            carrier_ref: call_sid,
            status,
            detail,
        },
    )
    .await
}

/// The call was answered: greet and gather.
pub async fn answered(
    State(app): State<Arc<Webhooks>>,
    Path(delivery_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<RawForm, RawFormRejection>,
) -> Result<Response, WebhookError> {
    let CallRequest {
        mut tx,
        delivery,
        params,
    } = verified(&app, &delivery_id, &uri, &headers, body).await?;
    let status = params.get("CallStatus").unwrap_or("in-progress");
    callback(&mut tx, &delivery, "call_answered", params.get("CallSid"), status, None).await?;
    let response = if delivery.answered_at.is_some() || delivery.expired_at(app.clock.now()) {
        say_goodbye(NO_LONGER_VALID)
    } else {
        let mode = delivery.voice_mode.unwrap_or(VoiceMode::PressPound);
        let speak = delivery.speak.as_deref().filter(|s| !s.trim().is_empty());
        let prompt = match mode {
            VoiceMode::PressPound => PRESS_POUND_PROMPT,
            VoiceMode::Pin => PIN_PROMPT,
        };
        let mut response = twiml::Response::new();
        if let Some(speak) = speak {
            response = response.say(speak);
        }
        response
            .gather(&Gather {
                action: format!("{}{VOICE_PATH}/{}/gather", app.public_base, delivery.id),
                // Press-pound needs room for `0` before the `#`.
                num_digits: match mode {
                    VoiceMode::PressPound => 2,
                    VoiceMode::Pin => MAX_PIN_DIGITS,
                },
                finish_on_key: "#".to_owned(),
                timeout: app.gather_timeout_seconds,
                prompt: prompt.to_owned(),
            })
            // Reached only when the gather hears nothing and gives up.
            .say(NOT_VALID)
            .hangup()
    };
    tx.commit().await?;
    tracing::info!(delivery_id = %delivery.id, challenge_id = %delivery.challenge_id, "call answered; gathering");
    Ok(twiml(&response))
}

/// What the keys pressed mean in `mode`; `Err` with the failure reason.
/// `finished`: the caller ended input with `#` (Twilio's `FinishedOnKey`).
pub fn interpret(mode: VoiceMode, digits: &str, finished: bool) -> Result<Answer, &'static str> {
    if !finished {
        return Err(if digits.is_empty() {
            reason::NO_INPUT
        } else {
            reason::INVALID_INPUT
        });
    }
    match (mode, digits) {
        (_, "0") => Ok(Answer::Fraud),
        (VoiceMode::PressPound, "") => Ok(Answer::Approve),
        (VoiceMode::Pin, pin) if !pin.is_empty() && pin.bytes().all(|b| b.is_ascii_digit()) => Ok(Answer::Pin),
        _ => Err(reason::INVALID_INPUT),
    }
}

/// The gather's digits: forward what the user did.
pub async fn gather(
    State(app): State<Arc<Webhooks>>,
    Path(delivery_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<RawForm, RawFormRejection>,
) -> Result<Response, WebhookError> {
    let CallRequest {
        mut tx,
        delivery,
        params,
    } = verified(&app, &delivery_id, &uri, &headers, body).await?;
    let call_sid = params.get("CallSid");
    let digits = params.get("Digits").unwrap_or_default();
    let finished = params.get("FinishedOnKey") == Some("#");

    if delivery.answered_at.is_some() {
        // The carrier repeating a gather it already delivered.
        callback(&mut tx, &delivery, "call_gather", call_sid, "duplicate", None).await?;
        tx.commit().await?;
        return Ok(twiml(&say_goodbye(GOODBYE)));
    }
    if delivery.expired_at(app.clock.now()) {
        db::set_last_error(&mut tx, delivery.id, reason::EXPIRED).await?;
        callback(&mut tx, &delivery, "call_gather", call_sid, reason::EXPIRED, None).await?;
        tx.commit().await?;
        return Ok(twiml(&say_goodbye(NO_LONGER_VALID)));
    }
    let mode = delivery.voice_mode.unwrap_or(VoiceMode::PressPound);
    let answer = match interpret(mode, digits, finished) {
        Ok(answer) => answer,
        Err(why) => {
            db::set_last_error(&mut tx, delivery.id, why).await?;
            callback(&mut tx, &delivery, "call_gather", call_sid, why, None).await?;
            tx.commit().await?;
            tracing::info!(delivery_id = %delivery.id, reason = why, "call gathered no usable answer");
            return Ok(twiml(&say_goodbye(NOT_VALID)));
        }
    };
    db::record_answer(&mut tx, delivery.id, answer, None).await?;
    callback(&mut tx, &delivery, "call_gather", call_sid, answer.as_str(), None).await?;
    let body = if answer == Answer::Pin { digits } else { "" };
    let event = delivery.answer_event(answer, &delivery.destination, body, 0);
    app.outbox.enqueue(&mut tx, &delivery.provider_id, &event).await?;
    tx.commit().await?;
    app.outbox.notify();
    tracing::info!(
        delivery_id = %delivery.id,
        challenge_id = %delivery.challenge_id,
        answer = answer.as_str(),
        "call answered by keypad"
    );
    Ok(twiml(&say_goodbye(if answer == Answer::Fraud {
        FRAUD_NOTED
    } else {
        GOODBYE
    })))
}

/// The call's status: on the final one, report usage and the outcome.
pub async fn status(
    State(app): State<Arc<Webhooks>>,
    Path(delivery_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<RawForm, RawFormRejection>,
) -> Result<StatusCode, WebhookError> {
    let CallRequest {
        mut tx,
        mut delivery,
        params,
    } = verified(&app, &delivery_id, &uri, &headers, body).await?;
    let call_status = params.require("CallStatus")?;
    let seconds = match params.get("CallDuration").filter(|d| !d.is_empty()) {
        None => 0,
        Some(d) => d.parse::<u32>().map_err(|_| WebhookError::InvalidField {
            field: "CallDuration",
            reason: "not a whole number of seconds".into(),
        })?,
    };
    let detail = format!("{seconds}s");
    callback(
        &mut tx,
        &delivery,
        "call_status",
        params.get("CallSid"),
        call_status,
        Some(&detail),
    )
    .await?;
    let outcome = match call_status {
        "completed" if delivery.answered_at.is_some() => Ok(()),
        "completed" => Err(delivery.last_error.as_deref().unwrap_or(reason::HANGUP).to_owned()),
        // The carrier's own words for why the call never connected.
        "busy" | "no-answer" | "failed" | "canceled" => Err(call_status.to_owned()),
        _ => {
            tx.commit().await?;
            return Ok(StatusCode::NO_CONTENT);
        }
    };
    usage::report(&mut tx, &app.outbox, &delivery, &delivery.carrier, 0, seconds)
        .await
        .map_err(|e| match e {
            usage::UsageError::Database(e) => WebhookError::Database(e),
            usage::UsageError::Outbox(e) => WebhookError::Outbox(e),
        })?;
    if delivery.state == DeliveryState::Queued {
        // The call ended before the commit that records its acceptance: the
        // carrier calling back shows it took the call, so announce that
        // first and keep `sent` before the outcome.
        let sid = params.get("CallSid").filter(|s| !s.is_empty());
        match sid {
            Some(sid) => db::record_sent(&mut tx, delivery.id, &delivery.carrier.clone(), sid).await?,
            None => db::set_state(&mut tx, delivery.id, DeliveryState::Sent, None, 0).await?,
        }
        delivery.carrier_ref = sid.map(str::to_owned).or(delivery.carrier_ref);
        let event = delivery.status_event(DeliveryState::Sent, None);
        app.outbox.enqueue(&mut tx, &delivery.provider_id, &event).await?;
        crate::metrics::delivery_state(&delivery, DeliveryState::Sent);
        delivery.state = DeliveryState::Sent;
    }
    let (next, error) = match &outcome {
        Ok(()) => (DeliveryState::Delivered, None),
        Err(why) => (DeliveryState::Failed, Some(why.as_str())),
    };
    if delivery.state.advances_to(next) {
        db::set_state(&mut tx, delivery.id, next, error, 0).await?;
        let event = delivery.status_event(next, error);
        app.outbox.enqueue(&mut tx, &delivery.provider_id, &event).await?;
        crate::metrics::delivery_state(&delivery, next);
    }
    tx.commit().await?;
    app.outbox.notify();
    tracing::info!(
        delivery_id = %delivery.id,
        challenge_id = %delivery.challenge_id,
        call_status,
        seconds,
        error,
        "call ended"
    );
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn press_pound_mode() {
        let m = VoiceMode::PressPound;
        assert_eq!(interpret(m, "", true), Ok(Answer::Approve));
        assert_eq!(interpret(m, "0", true), Ok(Answer::Fraud));
        assert_eq!(interpret(m, "", false), Err(reason::NO_INPUT));
        assert_eq!(
            interpret(m, "0", false),
            Err(reason::INVALID_INPUT),
            "fraud needs the #"
        );
        assert_eq!(interpret(m, "5", true), Err(reason::INVALID_INPUT));
    }

    #[test]
    fn pin_mode() {
        let m = VoiceMode::Pin;
        assert_eq!(interpret(m, "1234", true), Ok(Answer::Pin));
        assert_eq!(interpret(m, "0", true), Ok(Answer::Fraud));
        assert_eq!(interpret(m, "", true), Err(reason::INVALID_INPUT));
        assert_eq!(interpret(m, "12*4", true), Err(reason::INVALID_INPUT));
        assert_eq!(
            interpret(m, "1234", false),
            Err(reason::INVALID_INPUT),
            "a PIN ends with #"
        );
        assert_eq!(interpret(m, "", false), Err(reason::NO_INPUT));
    }
}
