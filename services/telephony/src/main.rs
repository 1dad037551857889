//! `vigil-telephony`: reads its configuration from `VIGIL_*` variables and
//! runs until SIGTERM or Ctrl-C.

use anyhow::Context;
use vigil_telephony::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = vigil_runtime::telemetry::init("telephony");
    let config = Config::load().context("loading configuration")?;
    let listener = tokio::net::TcpListener::bind(&config.http_addr)
        .await
        .with_context(|| format!("binding {}", config.http_addr))?;
    let shutdown = vigil_runtime::shutdown_on_signal();
    vigil_telephony::run(config, listener, shutdown).await
}
