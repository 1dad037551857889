//! The HTTP JSON API for dashboards. Every `/v1` route requires the bearer
//! token; every error has one shape, `{"error": {"code", "message"}}`.

mod auth;
mod period;
mod usage;

use std::sync::Arc;

use axum::{Router, middleware, routing::get};
use sqlx::PgPool;
use vigil_core::Clock;

pub use auth::ApiToken;

use crate::error::ApiError;

#[derive(Clone)]
pub struct ApiState {
    pub pool: PgPool,
    pub token: Arc<ApiToken>,
    /// Decides which month "the current month" is.
    pub clock: Arc<dyn Clock>,
}

pub fn router(state: ApiState) -> Router {
    let v1 = Router::new()
        .route("/v1/providers/{provider_id}/usage", get(usage::usage))
        // route_layer: unknown paths stay 404 rather than becoming 401.
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_token))
        .with_state(state);
    v1.fallback(not_found)
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}
