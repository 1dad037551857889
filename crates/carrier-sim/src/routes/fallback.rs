//! JSON answers for requests no route matches, in the error shape of the API
//! the caller was aiming at.

use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use vigil_twilio::API_VERSION;

use crate::error::{ControlError, TwilioFailure};

fn is_twilio_path(uri: &Uri) -> bool {
    uri.path()
        .strip_prefix('/')
        .is_some_and(|p| p.split('/').next() == Some(API_VERSION))
}

pub async fn not_found(method: Method, uri: Uri) -> Response {
    if is_twilio_path(&uri) {
        TwilioFailure::not_found(uri.path()).into_response()
    } else {
        ControlError::NotFound(format!("no route for {method} {}", uri.path())).into_response()
    }
}

pub async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let message = format!("method {method} is not allowed on {}", uri.path());
    if is_twilio_path(&uri) {
        TwilioFailure::generic(StatusCode::METHOD_NOT_ALLOWED, message).into_response()
    } else {
        ControlError::MethodNotAllowed(message).into_response()
    }
}
