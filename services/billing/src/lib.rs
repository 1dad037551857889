//! The billing service: consumes provider and usage events exactly once into
//! a usage ledger, and answers dashboards' usage questions over HTTP.
//!
//! `main` is a thin shell around [`run`]; tests run the same function
//! in-process with their own listener, shutdown token and clock.

mod api;
mod app;
mod config;
mod consumers;
mod error;
mod ledger;

pub use app::{run, run_with_clock};
pub use config::Config;
pub use error::RunError;
