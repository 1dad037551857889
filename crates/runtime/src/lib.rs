//! The shared frame of a Vigil service binary: `main` reads its config,
//! initialises telemetry, connects, serves health, and runs until SIGTERM.

pub mod config;
pub mod connect;
pub mod health;
pub mod shutdown;
pub mod telemetry;

pub use config::{ConfigError, load_config, load_config_from};
pub use connect::{ConnectError, connect_nats, connect_postgres};
pub use health::{HealthState, serve_health};
pub use shutdown::shutdown_on_signal;
