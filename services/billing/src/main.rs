use anyhow::Context;
use vigil_billing::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = vigil_runtime::telemetry::init("billing");
    let config: Config = vigil_runtime::load_config().context("loading configuration")?;
    // Before binding, so a missing token is the error reported, not a port clash.
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(&config.http_addr)
        .await
        .with_context(|| format!("binding {}", config.http_addr))?;
    let shutdown = vigil_runtime::shutdown_on_signal();
    vigil_billing::run(config, listener, shutdown).await?;
    Ok(())
}
