//! The simulator's two error shapes: Twilio's error JSON on the Messages API,
//! and a plain `{ "error", "status" }` body on the control API.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use thiserror::Error;
use vigil_twilio::ApiError;

use crate::control::ControlErrorBody;

/// A Messages API failure, rendered exactly like Twilio's.
#[derive(Debug, Error)]
#[error("HTTP {} code {}: {}", .0.status, .0.code, .0.message)]
pub struct TwilioFailure(pub ApiError);

impl TwilioFailure {
    pub fn new(status: StatusCode, code: i64, message: impl Into<String>) -> Self {
        Self(ApiError::new(status.as_u16(), code, message))
    }

    /// Failure without a more specific Twilio code. Twilio's generic codes
    /// are 20000 + status (20404, 20429, 20500, 20503, ...).
    pub fn generic(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(status, 20_000 + i64::from(status.as_u16()), message)
    }

    pub fn unauthenticated() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, 20003, "Authenticate")
    }

    pub fn not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            20404,
            format!("The requested resource {path} was not found"),
        )
    }

    pub fn bad_request(code: i64, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for TwilioFailure {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, Json(self.0)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Twilio API\""),
            );
        }
        resp
    }
}

/// A control-API failure.
#[derive(Debug, Error)]
pub enum ControlError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    /// The webhook the simulator called could not be reached.
    #[error("{0}")]
    BadGateway(String),
    /// An extractor refused the request (bad JSON, wrong content type, ...).
    #[error("{1}")]
    Rejected(StatusCode, String),
}

impl ControlError {
    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::Rejected(status, _) => *status,
        }
    }
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ControlErrorBody {
            error: self.to_string(),
            status: status.as_u16(),
        };
        (status, Json(body)).into_response()
    }
}
