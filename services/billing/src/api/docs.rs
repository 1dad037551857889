//! The OpenAPI document and the dashboard page, both embedded in the binary.

use axum::{
    http::header,
    response::{IntoResponse, Response},
};

/// The checked-in OpenAPI document, served as is.
pub const OPENAPI: &str = include_str!("../../openapi.json");
const DASHBOARD: &str = include_str!("dashboard.html");

/// `GET /v1/openapi.json`
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// `GET /dashboard`: the page reads the provider and token from the URL's
/// fragment (never sent to a server) or a form, and calls the API itself.
pub async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'none'; frame-ancestors 'none'",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        DASHBOARD,
    )
        .into_response()
}
