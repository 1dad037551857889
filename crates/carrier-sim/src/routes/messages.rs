//! The Twilio-compatible Messages API.

use axum::extract::rejection::{FormRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use chrono::Utc;
use serde::Deserialize;
use vigil_twilio::MessageResource;

use crate::control::FaultApi;
use crate::error::TwilioFailure;
use crate::state::SimState;
use crate::{auth, delivery, ids, phone, segments};

/// Twilio's limit on a (concatenated) message body, in characters.
const MAX_BODY_CHARS: usize = 1600;

/// Form of `POST .../Messages.json`. Every field is optional here so that a
/// missing one gets Twilio's specific error code instead of a generic 400.
#[derive(Debug, Deserialize)]
pub struct CreateMessageForm {
    #[serde(rename = "To")]
    to: Option<String>,
    #[serde(rename = "From")]
    from: Option<String>,
    #[serde(rename = "Body")]
    body: Option<String>,
    #[serde(rename = "StatusCallback")]
    status_callback: Option<String>,
}

/// `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`
pub async fn create(
    State(state): State<SimState>,
    uri: Uri,
    headers: HeaderMap,
    account: Result<Path<String>, PathRejection>,
    form: Result<Form<CreateMessageForm>, FormRejection>,
) -> Response {
    let account = account.ok().map(|Path(sid)| sid);
    let result = create_message(&state, &uri, &headers, account.as_deref(), form);
    counted(&state, result)
}

/// `GET /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json`
pub async fn fetch(
    State(state): State<SimState>,
    uri: Uri,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let (account, file) = path.ok().map(|Path(p)| p).unzip();
    let result = admit(&state, &uri, &headers, account.as_deref()).and_then(|()| {
        file.as_deref()
            .and_then(|f| f.strip_suffix(".json"))
            .and_then(|sid| state.message(sid))
            .map(Json)
            .ok_or_else(|| TwilioFailure::not_found(uri.path()))
    });
    counted(&state, result)
}

/// Renders a result, counting failures in `/sim/stats`.
pub(super) fn counted<T: IntoResponse>(state: &SimState, result: Result<T, TwilioFailure>) -> Response {
    if let Err(err) = &result {
        state.record_failure();
        tracing::info!(error = %err, "messages API request failed");
    }
    result.into_response()
}

/// Checks shared by every Messages API call: injected faults first (the
/// "carrier" is down whoever asks), then credentials, then the account.
fn admit(state: &SimState, uri: &Uri, headers: &HeaderMap, account: Option<&str>) -> Result<(), TwilioFailure> {
    admit_api(state, FaultApi::Messages, uri, headers, account)
}

/// [`admit`] for the API `api`, whose injected faults apply.
pub(super) fn admit_api(
    state: &SimState,
    api: FaultApi,
    uri: &Uri,
    headers: &HeaderMap,
    account: Option<&str>,
) -> Result<(), TwilioFailure> {
    if let Some(status) = state.take_fault(api) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Err(TwilioFailure::generic(
            status,
            "Simulated failure injected via /sim/faults",
        ));
    }
    auth::check(headers, state.config())?;
    if account == Some(state.config().account_sid.as_str()) {
        Ok(())
    } else {
        Err(TwilioFailure::not_found(uri.path()))
    }
}

fn create_message(
    state: &SimState,
    uri: &Uri,
    headers: &HeaderMap,
    account: Option<&str>,
    form: Result<Form<CreateMessageForm>, FormRejection>,
) -> Result<(StatusCode, Json<MessageResource>), TwilioFailure> {
    admit(state, uri, headers, account)?;
    let Form(form) = form.map_err(|rej| TwilioFailure::generic(rej.status(), rej.body_text()))?;
    let msg = validate(form)?;

    let now = Utc::now();
    let segments = segments::count(&msg.body);
    let resource = MessageResource {
        sid: ids::message_sid(),
        account_sid: state.config().account_sid.clone(),
        to: msg.to,
        from: msg.from,
        body: msg.body,
        status: "queued".to_owned(),
        num_segments: segments.to_string(),
        date_created: now.to_rfc2822(),
        error_code: None,
        error_message: None,
    };
    tracing::info!(sid = %resource.sid, to = %resource.to, from = %resource.from, segments, "message accepted");
    // Bodies hold one-time codes: only at debug, where a developer running
    // the local stack wants to read them.
    tracing::debug!(sid = %resource.sid, body = %resource.body, "message body");

    state.accept(resource.clone(), segments, now);
    delivery::spawn(state.clone(), resource.sid.clone(), msg.status_callback);
    Ok((StatusCode::CREATED, Json(resource)))
}

struct ValidMessage {
    to: String,
    from: String,
    body: String,
    status_callback: Option<String>,
}

/// Applies Twilio's checks, in Twilio's order, with Twilio's error codes.
fn validate(form: CreateMessageForm) -> Result<ValidMessage, TwilioFailure> {
    let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let to = non_empty(form.to).ok_or_else(|| TwilioFailure::bad_request(21604, "A 'To' phone number is required."))?;
    let from =
        non_empty(form.from).ok_or_else(|| TwilioFailure::bad_request(21603, "A 'From' phone number is required."))?;
    let body = non_empty(form.body).ok_or_else(|| TwilioFailure::bad_request(21602, "Message body is required."))?;
    if !phone::is_e164(&to) {
        return Err(TwilioFailure::bad_request(
            21211,
            format!("Invalid 'To' Phone Number: {to}"),
        ));
    }
    if body.chars().count() > MAX_BODY_CHARS {
        return Err(TwilioFailure::bad_request(
            21617,
            "The concatenated message body exceeds the 1600 character limit.",
        ));
    }
    let status_callback = non_empty(form.status_callback);
    if let Some(url) = &status_callback {
        let valid = url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !valid {
            return Err(TwilioFailure::bad_request(
                21609,
                format!("Invalid StatusCallback URL: {url}"),
            ));
        }
    }
    Ok(ValidMessage {
        to,
        from,
        body,
        status_callback,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(to: Option<&str>, from: Option<&str>, body: Option<&str>, cb: Option<&str>) -> CreateMessageForm {
        CreateMessageForm {
            to: to.map(str::to_owned),
            from: from.map(str::to_owned),
            body: body.map(str::to_owned),
            status_callback: cb.map(str::to_owned),
        }
    }

    fn code(result: Result<ValidMessage, TwilioFailure>) -> Option<i64> {
        result.err().map(|e| e.0.code)
    }

    #[test]
    fn validation_codes() {
        let ok = Some("+15551234567");
        assert_eq!(code(validate(form(None, ok, Some("hi"), None))), Some(21604));
        assert_eq!(code(validate(form(ok, Some(""), Some("hi"), None))), Some(21603));
        assert_eq!(code(validate(form(ok, ok, None, None))), Some(21602));
        assert_eq!(code(validate(form(Some("555"), ok, Some("hi"), None))), Some(21211));
        let long = "a".repeat(1601);
        assert_eq!(code(validate(form(ok, ok, Some(&long), None))), Some(21617));
        assert_eq!(code(validate(form(ok, ok, Some("hi"), Some("ftp://x")))), Some(21609));
        assert_eq!(
            code(validate(form(ok, ok, Some("hi"), Some("http://127.0.0.1:9/cb")))),
            None
        );
    }
}
