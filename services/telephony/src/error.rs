//! Why a webhook request failed, mapped to an HTTP status once, here.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use vigil_bus::BusError;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Not from the carrier, or altered on the way.
    #[error("missing or invalid X-Twilio-Signature")]
    BadSignature,
    /// A required form field is absent or empty.
    #[error("form field `{0}` is required")]
    MissingField(&'static str),
    /// A form field holds a value the service cannot accept.
    #[error("form field `{field}` is invalid: {reason}")]
    InvalidField { field: &'static str, reason: String },
    /// The body could not be read as a form (wrong content type, ...).
    #[error("{message}")]
    Unreadable { status: StatusCode, message: String },
    /// A callback about a message this service never sent.
    #[error("no delivery has carrier reference {0}")]
    UnknownMessage(String),
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("could not queue event")]
    Outbox(#[from] BusError),
}

impl WebhookError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadSignature => StatusCode::FORBIDDEN,
            Self::MissingField(_) | Self::InvalidField { .. } => StatusCode::BAD_REQUEST,
            Self::Unreadable { status, .. } => *status,
            Self::UnknownMessage(_) => StatusCode::NOT_FOUND,
            Self::Database(_) | Self::Outbox(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            // The cause stays in the log; the caller learns nothing internal.
            tracing::error!(error = ?self, "webhook failed");
            return (status, "internal error").into_response();
        }
        tracing::warn!(status = status.as_u16(), error = %self, "webhook refused");
        (status, self.to_string()).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_each_error_to_its_status() {
        assert_eq!(WebhookError::BadSignature.status(), StatusCode::FORBIDDEN);
        assert_eq!(WebhookError::MissingField("From").status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            WebhookError::UnknownMessage("SM1".into()).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            WebhookError::Database(sqlx::Error::PoolTimedOut).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
