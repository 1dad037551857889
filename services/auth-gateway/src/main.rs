use anyhow::Context;
use vigil_auth_gateway::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = vigil_runtime::telemetry::init("auth-gateway");
    let config: Config = vigil_runtime::load_config().context("loading configuration")?;
    let grpc = tokio::net::TcpListener::bind(&config.grpc_addr)
        .await
        .with_context(|| format!("binding {}", config.grpc_addr))?;
    let http = tokio::net::TcpListener::bind(&config.http_addr)
        .await
        .with_context(|| format!("binding {}", config.http_addr))?;
    let shutdown = vigil_runtime::shutdown_on_signal();
    vigil_auth_gateway::run(config, grpc, http, shutdown).await
}
