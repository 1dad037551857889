//! The service's errors: [`ApiError`] is mapped once to an HTTP status and
//! the one JSON error shape; [`RunError`] is why the service could not run.

use std::error::Error as StdError;

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header::WWW_AUTHENTICATE},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use vigil_core::IdError;

/// Why a request failed. Bad input is always a 4xx; only [`ApiError::Internal`] is a 5xx.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("provider id must look like prv_<32 hex digits>: {0}")]
    InvalidProviderId(#[source] IdError),
    #[error("`{field}` must be an RFC 3339 time, such as 2025-03-01T00:00:00Z")]
    InvalidTime { field: &'static str },
    #[error("`from` must be earlier than `to`")]
    InvalidRange,
    #[error("malformed query string: {0}")]
    InvalidQuery(String),
    #[error("`granularity` must be one of hour, day, month")]
    InvalidGranularity,
    #[error("`limit` must be a whole number from 1 to {max}")]
    InvalidPageSize { max: u32 },
    #[error("`cursor` is not one this API returned")]
    InvalidCursor,
    #[error("`period` must be a month written YYYY-MM, such as 2025-03")]
    InvalidPeriod,
    #[error("token id must be the 32 hex digits shown when the token was created")]
    InvalidTokenId,
    #[error("the range holds {buckets} buckets; at most {max} are served: narrow the range or coarsen the granularity")]
    RangeTooLarge { buckets: usize, max: usize },
    #[error("invalid request body: {0}")]
    InvalidBody(String),
    #[error(transparent)]
    InvalidRates(#[from] crate::rates::RatesError),
    #[error("this token may not read provider {0}")]
    Forbidden(String),
    #[error("only the operator token may do this")]
    OperatorOnly,
    #[error("billing knows no provider {0}")]
    ProviderNotFound(String),
    #[error("no rates are set for provider {0}")]
    RatesNotSet(String),
    #[error("provider {provider_id} has no closed statement for {period}")]
    StatementNotFound { provider_id: String, period: String },
    #[error("provider {0} has no live token with that id")]
    TokenNotFound(String),
    #[error("the provider is billed in {0}; its currency cannot change")]
    CurrencyChange(String),
    #[error("no such route")]
    NotFound,
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    #[error("internal error")]
    Internal(#[source] Box<dyn StdError + Send + Sync>),
}

impl ApiError {
    pub fn internal(error: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::Internal(error.into())
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::InvalidProviderId(_) => (StatusCode::BAD_REQUEST, "invalid_provider_id"),
            Self::InvalidTime { .. } => (StatusCode::BAD_REQUEST, "invalid_time"),
            Self::InvalidRange => (StatusCode::BAD_REQUEST, "invalid_range"),
            Self::InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            Self::InvalidGranularity => (StatusCode::BAD_REQUEST, "invalid_granularity"),
            Self::InvalidPageSize { .. } => (StatusCode::BAD_REQUEST, "invalid_page_size"),
            Self::InvalidCursor => (StatusCode::BAD_REQUEST, "invalid_cursor"),
            Self::InvalidPeriod => (StatusCode::BAD_REQUEST, "invalid_period"),
            Self::InvalidTokenId => (StatusCode::BAD_REQUEST, "invalid_token_id"),
            Self::RangeTooLarge { .. } => (StatusCode::BAD_REQUEST, "range_too_large"),
            Self::InvalidBody(_) => (StatusCode::BAD_REQUEST, "invalid_body"),
            Self::InvalidRates(_) => (StatusCode::BAD_REQUEST, "invalid_rates"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::OperatorOnly => (StatusCode::FORBIDDEN, "operator_only"),
            Self::ProviderNotFound(_) => (StatusCode::NOT_FOUND, "provider_not_found"),
            Self::RatesNotSet(_) => (StatusCode::NOT_FOUND, "rates_not_set"),
            Self::StatementNotFound { .. } => (StatusCode::NOT_FOUND, "statement_not_found"),
            Self::TokenNotFound(_) => (StatusCode::NOT_FOUND, "token_not_found"),
            Self::CurrencyChange(_) => (StatusCode::CONFLICT, "currency_change"),
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        Self::internal(error)
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let Self::Internal(_) = &self {
            // The caller sees only "internal"; the operator gets the whole chain.
            tracing::error!(error = %chain(&self), "request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message: self.to_string(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Why the service stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] vigil_runtime::ConfigError),
    #[error(transparent)]
    Connect(#[from] vigil_runtime::ConnectError),
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("bus set-up failed")]
    Bus(#[from] vigil_bus::BusError),
    #[error("no stream captures `{0}`")]
    NoStream(&'static str),
    #[error("HTTP server failed")]
    Serve(#[source] std::io::Error),
    #[error("{0} stopped before shutdown was requested")]
    Stopped(&'static str),
    #[error("{0} panicked")]
    Panicked(&'static str, #[source] tokio::task::JoinError),
}

/// `error: cause: cause…`, for logs.
pub fn chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_say_nothing_to_the_caller() {
        let error = ApiError::internal(sqlx::Error::PoolTimedOut);
        assert_eq!(error.to_string(), "internal error");
        assert!(chain(&error).contains("pool timed out"));
        assert_eq!(error.into_response().status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn unauthorized_names_the_scheme() {
        let response = ApiError::Unauthorized.into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()),
            Some("Bearer")
        );
    }
}
