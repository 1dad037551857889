//! `/healthz` (the process is alive), `/readyz` (it can do its work: the
//! database answers and the NATS connection is up) and `/metrics`.

use std::time::Duration;

use axum::{Router, extract::State, http::StatusCode, routing::get};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct HealthState {
    pub pool: PgPool,
    pub nats: async_nats::Client,
}

pub fn health_router(state: HealthState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
        .merge(crate::metrics::router())
}

async fn readyz(State(state): State<HealthState>) -> (StatusCode, String) {
    if state.nats.connection_state() != async_nats::connection::State::Connected {
        return (StatusCode::SERVICE_UNAVAILABLE, "nats: disconnected".into());
    }
    let db = tokio::time::timeout(Duration::from_secs(2), sqlx::query("SELECT 1").execute(&state.pool)).await;
    match db {
        Ok(Ok(_)) => (StatusCode::OK, "ok".into()),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("postgres: {e}")),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "postgres: timed out".into()),
    }
}

/// Serves `router` (health routes merged in by the caller, or alone) until shutdown.
pub async fn serve_health(listener: TcpListener, router: Router, shutdown: CancellationToken) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
