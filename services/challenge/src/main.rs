use anyhow::Context;
use vigil_challenge::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = vigil_runtime::telemetry::init("challenge");
    let config: Config = vigil_runtime::load_config().context("loading configuration")?;
    let listener = tokio::net::TcpListener::bind(&config.http_addr)
        .await
        .with_context(|| format!("binding {}", config.http_addr))?;
    let shutdown = vigil_runtime::shutdown_on_signal();
    vigil_challenge::run(config, listener, shutdown).await
}
