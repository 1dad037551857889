//! The HTTP JSON API for dashboards. Every `/v1/providers` route requires a
//! bearer token: the operator's, or a provider's read-only token (which sees
//! its own provider only). Every error has one shape,
//! `{"error": {"code", "message"}}`.

mod admin;
mod auth;
mod docs;
mod ledger;
mod params;
mod period;
mod statements;
mod usage;

use std::sync::Arc;

use axum::{
    Router, middleware,
    routing::{MethodRouter, delete, get, put},
};
use sqlx::PgPool;
use vigil_core::Clock;

pub use auth::ApiToken;
pub use docs::OPENAPI;

use crate::error::ApiError;

#[derive(Clone)]
pub struct ApiState {
    pub pool: PgPool,
    pub token: Arc<ApiToken>,
    /// Decides which month "the current month" is.
    pub clock: Arc<dyn Clock>,
}

/// Every authenticated route: `(method, path)`, and its handler. The
/// OpenAPI test checks each is documented.
fn authenticated() -> Vec<(&'static str, &'static str, MethodRouter<ApiState>)> {
    const P: &str = "/v1/providers/{provider_id}";
    vec![
        ("GET", const_format(P, "/usage"), get(usage::usage)),
        ("GET", const_format(P, "/usage/series"), get(usage::series)),
        ("GET", const_format(P, "/usage/users"), get(usage::users)),
        ("GET", const_format(P, "/estimate"), get(statements::estimate)),
        ("GET", const_format(P, "/statements"), get(statements::list)),
        ("GET", const_format(P, "/statements/{period}"), get(statements::detail)),
        ("GET", const_format(P, "/ledger"), get(ledger::page)),
        ("GET", const_format(P, "/ledger.csv"), get(ledger::csv)),
        ("GET", const_format(P, "/rates"), get(admin::get_rates)),
        ("PUT", const_format(P, "/rates"), put(admin::put_rates)),
        (
            "POST",
            const_format(P, "/tokens"),
            axum::routing::post(admin::create_token),
        ),
        (
            "DELETE",
            const_format(P, "/tokens/{token_id}"),
            delete(admin::revoke_token),
        ),
    ]
}

/// `P` + `suffix`, leaked once per route at start-up (a dozen short strings).
fn const_format(prefix: &str, suffix: &str) -> &'static str {
    Box::leak(format!("{prefix}{suffix}").into_boxed_str())
}

/// Routes without a token: the OpenAPI document and the dashboard page.
const PUBLIC: [(&str, &str); 2] = [("GET", "/v1/openapi.json"), ("GET", "/dashboard")];

/// Every `(method, path)` the API serves (besides the health probes).
pub fn routes() -> Vec<(&'static str, &'static str)> {
    let mut routes: Vec<_> = PUBLIC.to_vec();
    routes.extend(authenticated().into_iter().map(|(method, path, _)| (method, path)));
    routes
}

pub fn router(state: ApiState) -> Router {
    // Same-path routes share one MethodRouter.
    let mut by_path: Vec<(&'static str, MethodRouter<ApiState>)> = Vec::new();
    for (_, path, handler) in authenticated() {
        match by_path.iter_mut().find(|(p, _)| *p == path) {
            Some((_, existing)) => *existing = std::mem::take(existing).merge(handler),
            None => by_path.push((path, handler)),
        }
    }
    let mut protected = Router::new();
    for (path, handler) in by_path {
        protected = protected.route(path, handler.fallback(method_not_allowed));
    }
    let protected = protected
        // route_layer: unknown paths stay 404 rather than becoming 401.
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_token));
    Router::new()
        .route("/v1/openapi.json", get(docs::openapi))
        .route("/dashboard", get(docs::dashboard))
        .merge(protected)
        .with_state(state)
        .fallback(not_found)
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
