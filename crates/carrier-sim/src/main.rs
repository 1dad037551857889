//! `vigil-carrier-sim`: the carrier simulator as a standalone process.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use tracing_subscriber::EnvFilter;
use vigil_carrier_sim::{DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, DEFAULT_PUSH_TOKEN, SimConfig};

#[derive(Debug, Parser)]
#[command(
    name = "vigil-carrier-sim",
    version,
    about = "Twilio-style carrier simulator for Vigil"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "VIGIL_SIM_ADDR", default_value = "127.0.0.1:4010")]
    addr: SocketAddr,
    /// Account SID the Messages API accepts.
    #[arg(long, env = "VIGIL_SIM_ACCOUNT_SID", default_value = DEFAULT_ACCOUNT_SID)]
    account_sid: String,
    /// Auth token for basic auth and webhook signatures.
    #[arg(long, env = "VIGIL_SIM_AUTH_TOKEN", default_value = DEFAULT_AUTH_TOKEN, hide_env_values = true)]
    auth_token: String,
    /// Vigil's inbound-SMS webhook, where simulated phone replies are posted.
    #[arg(long, env = "VIGIL_SIM_INBOUND_SMS_URL")]
    inbound_sms_url: Option<String>,
    /// Delay before each status transition (sent, then delivered), in ms.
    #[arg(long, env = "VIGIL_SIM_STATUS_DELAY_MS", default_value_t = 50)]
    status_delay_ms: u64,
    /// Bearer token the FCM-style push endpoint accepts.
    #[arg(long, env = "VIGIL_SIM_PUSH_TOKEN", default_value = DEFAULT_PUSH_TOKEN, hide_env_values = true)]
    push_token: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        // No colour codes when logs go to a file or a log collector.
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let args = Args::parse();
    let cfg = SimConfig {
        account_sid: args.account_sid,
        auth_token: args.auth_token,
        inbound_sms_url: args.inbound_sms_url,
        status_delay: Duration::from_millis(args.status_delay_ms),
        push_token: args.push_token,
    };
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding {}", args.addr))?;
    vigil_carrier_sim::serve(listener, cfg, shutdown_signal()).await
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received, draining");
}
