//! The billing service: consumes provider, user and usage events exactly
//! once into a usage ledger, closes monthly statements, and answers
//! dashboards over HTTP (JSON, CSV, an OpenAPI document and a dashboard page).
//!
//! `main` is a thin shell around [`run`]; tests run the same function
//! in-process with their own listener, shutdown token and clock.

mod api;
mod app;
mod calendar;
mod config;
mod consumers;
mod error;
mod ledger;
mod metering;
mod rates;
mod statements;
mod tokens;

pub use api::OPENAPI;
pub use app::{run, run_with_clock};
pub use config::Config;
pub use error::RunError;

/// Every `(method, path)` the HTTP API serves, besides `/healthz` and `/readyz`.
pub fn routes() -> Vec<(&'static str, &'static str)> {
    api::routes()
}
