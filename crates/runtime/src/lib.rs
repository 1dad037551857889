//! The shared frame of a Vigil service binary: `main` reads its config,
//! initialises telemetry, connects, serves health, and runs until SIGTERM.

pub mod batch;
pub mod config;
pub mod connect;
pub mod health;
pub mod metrics;
pub mod otlp;
pub mod retention;
pub mod shutdown;
pub mod telemetry;

pub use batch::{BatchError, BatchOptions, Batcher, RunBatch};
pub use config::{ConfigError, load_config, load_config_from};
pub use connect::{
    ConnectError, acquire, connect_batch_pool, connect_deferred_commit_batch_pool, connect_nats, connect_postgres,
};
pub use health::{HealthState, serve_health};
pub use shutdown::shutdown_on_signal;

/// `VIGIL_MIGRATE_ONLY=1`: migrate the service's database and exit, so a
/// Kubernetes Job can run migrations before new replicas start.
pub fn migrate_only() -> bool {
    std::env::var("VIGIL_MIGRATE_ONLY").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}
