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
    /// A voice callback for a delivery that does not exist or is no call.
    #[error("no call for delivery {0}")]
    UnknownCall(String),
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
            Self::UnknownMessage(_) | Self::UnknownCall(_) => StatusCode::NOT_FOUND,
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

/// Why a device's push answer was refused. Each has its own status so a
/// device can tell "try again" from "give up".
#[derive(Debug, thiserror::Error)]
pub enum PushAnswerError {
    #[error("body is not a push answer: {0}")]
    Malformed(String),
    #[error("missing or invalid device signature")]
    BadSignature,
    #[error("answer timestamp is too far from the server's time")]
    StaleTimestamp,
    #[error("no push delivery {0}")]
    UnknownDelivery(String),
    #[error("the sign-in request has expired")]
    Expired,
    #[error("this delivery was already answered differently")]
    AlreadyAnswered,
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("could not queue event")]
    Outbox(#[from] BusError),
}

impl PushAnswerError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::BadSignature | Self::StaleTimestamp => StatusCode::UNAUTHORIZED,
            Self::UnknownDelivery(_) => StatusCode::NOT_FOUND,
            Self::Expired => StatusCode::GONE,
            Self::AlreadyAnswered => StatusCode::CONFLICT,
            Self::Database(_) | Self::Outbox(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable code a device can branch on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::BadSignature => "bad_signature",
            Self::StaleTimestamp => "stale_timestamp",
            Self::UnknownDelivery(_) => "unknown_delivery",
            Self::Expired => "expired",
            Self::AlreadyAnswered => "already_answered",
            Self::Database(_) | Self::Outbox(_) => "internal",
        }
    }
}

impl IntoResponse for PushAnswerError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = if status.is_server_error() {
            tracing::error!(error = ?self, "push answer failed");
            "internal error".to_owned()
        } else {
            tracing::warn!(status = status.as_u16(), error = %self, "push answer refused");
            self.to_string()
        };
        let body = serde_json::json!({ "error": self.code(), "message": message });
        (status, axum::Json(body)).into_response()
    }
}

/// Why a device's push enrolment was refused. The code's three ways of
/// being wrong each have their own status and code, so the app can say
/// "ask for a new code" rather than "try again".
#[derive(Debug, thiserror::Error)]
pub enum PushEnrollError {
    #[error("body is not a push enrolment: {0}")]
    Malformed(String),
    #[error("public_key is not an Ed25519 public key (standard base64 of 32 bytes)")]
    BadPublicKey,
    #[error("the enrolment code is not valid")]
    CodeInvalid,
    #[error("the enrolment code has expired; ask for a new one")]
    CodeExpired,
    #[error("the enrolment code was already used")]
    CodeUsed,
    #[error("{0}")]
    Invalid(String),
    #[error("enrolment is unavailable right now; try again")]
    Unavailable,
}

impl PushEnrollError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Malformed(_) | Self::BadPublicKey | Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::CodeInvalid => StatusCode::NOT_FOUND,
            Self::CodeExpired => StatusCode::GONE,
            Self::CodeUsed => StatusCode::CONFLICT,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::BadPublicKey => "invalid_public_key",
            Self::CodeInvalid => "enrollment_code_invalid",
            Self::CodeExpired => "enrollment_code_expired",
            Self::CodeUsed => "enrollment_code_used",
            Self::Invalid(_) => "invalid_argument",
            Self::Unavailable => "unavailable",
        }
    }

    /// The challenge service's error code, as this endpoint reports it.
    pub fn from_rpc(code: &str, message: String) -> Self {
        match code {
            "enrollment_code_invalid" => Self::CodeInvalid,
            "enrollment_code_expired" => Self::CodeExpired,
            "enrollment_code_used" => Self::CodeUsed,
            "invalid_argument" => Self::Invalid(message),
            _ => Self::Unavailable,
        }
    }
}

impl IntoResponse for PushEnrollError {
    fn into_response(self) -> Response {
        let status = self.status();
        tracing::warn!(status = status.as_u16(), error = %self, "push enrolment refused");
        let body = serde_json::json!({ "error": self.code(), "message": self.to_string() });
        (status, axum::Json(body)).into_response()
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
        assert_eq!(PushAnswerError::BadSignature.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(PushAnswerError::StaleTimestamp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(PushAnswerError::Expired.status(), StatusCode::GONE);
        assert_eq!(PushAnswerError::AlreadyAnswered.status(), StatusCode::CONFLICT);
        assert_eq!(
            PushAnswerError::UnknownDelivery("x".into()).status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn enrolment_refusals_keep_the_challenge_services_codes() {
        for (code, status) in [
            ("enrollment_code_invalid", StatusCode::NOT_FOUND),
            ("enrollment_code_expired", StatusCode::GONE),
            ("enrollment_code_used", StatusCode::CONFLICT),
            ("invalid_argument", StatusCode::BAD_REQUEST),
        ] {
            let error = PushEnrollError::from_rpc(code, "m".into());
            assert_eq!((error.code(), error.status()), (code, status));
        }
        assert_eq!(
            PushEnrollError::from_rpc("internal", "m".into()).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
