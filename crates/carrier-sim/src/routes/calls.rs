//! The Twilio-compatible Calls API.

use axum::extract::rejection::{FormRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::{Form, Json};
use chrono::Utc;
use serde::Deserialize;
use vigil_twilio::CallResource;

use super::messages::{admit_api, counted};
use crate::control::{CallEntry, FaultApi};
use crate::error::TwilioFailure;
use crate::state::SimState;
use crate::{ids, phone, voice};

/// Form of `POST .../Calls.json`; all optional so a missing field gets
/// Twilio's specific error code.
#[derive(Debug, Deserialize)]
pub struct CreateCallForm {
    #[serde(rename = "To")]
    to: Option<String>,
    #[serde(rename = "From")]
    from: Option<String>,
    #[serde(rename = "Url")]
    url: Option<String>,
    #[serde(rename = "StatusCallback")]
    status_callback: Option<String>,
    #[serde(rename = "Timeout")]
    timeout: Option<String>,
}

/// `POST /2010-04-01/Accounts/{AccountSid}/Calls.json`
pub async fn create(
    State(state): State<SimState>,
    uri: Uri,
    headers: HeaderMap,
    account: Result<Path<String>, PathRejection>,
    form: Result<Form<CreateCallForm>, FormRejection>,
) -> Response {
    let account = account.ok().map(|Path(sid)| sid);
    let result = admit_api(&state, FaultApi::Calls, &uri, &headers, account.as_deref()).and_then(|()| {
        let Form(form) = form.map_err(|rej| TwilioFailure::generic(rej.status(), rej.body_text()))?;
        place(&state, form)
    });
    counted(&state, result)
}

fn place(state: &SimState, form: CreateCallForm) -> Result<(StatusCode, Json<CallResource>), TwilioFailure> {
    let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let to = non_empty(form.to).ok_or_else(|| TwilioFailure::bad_request(21201, "No 'To' number is specified"))?;
    let from =
        non_empty(form.from).ok_or_else(|| TwilioFailure::bad_request(21213, "No 'From' number is specified"))?;
    let url = non_empty(form.url).ok_or_else(|| TwilioFailure::bad_request(21205, "Url parameter is required"))?;
    if !phone::is_e164(&to) {
        return Err(TwilioFailure::bad_request(
            21217,
            format!("Phone number {to} does not appear to be valid"),
        ));
    }
    let http_url = |u: &str| url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
    if !http_url(&url) {
        return Err(TwilioFailure::bad_request(
            21205,
            format!("Url is not a valid URL: {url}"),
        ));
    }
    let status_callback = non_empty(form.status_callback);
    if let Some(cb) = status_callback.as_deref().filter(|cb| !http_url(cb)) {
        return Err(TwilioFailure::bad_request(
            21609,
            format!("Invalid StatusCallback URL: {cb}"),
        ));
    }
    if let Some(t) = non_empty(form.timeout) {
        if !t.parse::<u32>().is_ok_and(|t| (1..=600).contains(&t)) {
            return Err(TwilioFailure::bad_request(21216, format!("Invalid Timeout: {t}")));
        }
    }

    let resource = CallResource {
        sid: ids::call_sid(),
        account_sid: state.config().account_sid.clone(),
        to: to.clone(),
        from: from.clone(),
        status: "queued".to_owned(),
        duration: None,
        date_created: Utc::now().to_rfc2822(),
    };
    tracing::info!(sid = %resource.sid, %to, %from, "call placed");
    state.place_call(CallEntry {
        sid: resource.sid.clone(),
        from: from.clone(),
        to: to.clone(),
        status: "queued".to_owned(),
        duration_seconds: 0,
        heard: Vec::new(),
        digits_sent: None,
        twiml_status: None,
        gather_status: None,
        status_callback_status: None,
    });
    voice::spawn(
        state.clone(),
        voice::Call {
            sid: resource.sid.clone(),
            to,
            from,
            url,
            status_callback,
        },
    );
    Ok((StatusCode::CREATED, Json(resource)))
}
