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
    axum::serve(without_delay(listener), router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// `listener` with TCP_NODELAY on every connection it accepts (axum leaves
/// Nagle's algorithm on): a response written in more than one piece would
/// otherwise wait for the client's delayed ACK, up to 40 ms on Linux.
pub fn without_delay(
    listener: TcpListener,
) -> impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr> {
    use axum::serve::ListenerExt;
    listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set on an accepted connection");
        }
    })
}
