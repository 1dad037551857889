//! `vigil radius-clients …`: the NPS servers, RD Gateways and VPN
//! concentrators allowed to ask Vigil over RADIUS (admin token).

use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};
use vigil_proto::v1::{
    CreateRadiusClientRequest, DeleteRadiusClientRequest, ListRadiusClientsRequest, RadiusClient, RadiusMode,
};

use crate::{
    Global,
    gateway::{Admin, rpc_error},
    output::{self, emit, fields},
};

#[derive(Subcommand)]
pub enum RadiusClientsCommand {
    /// Register a RADIUS client: its address or network, shared secret and mode.
    Create {
        /// Provider id (`prv_…`).
        #[arg(long)]
        provider: String,
        /// Display name, e.g. the NPS host.
        #[arg(long)]
        name: String,
        /// The client's address or network (`192.0.2.10`, `10.1.0.0/16`): packets from
        /// anywhere else are dropped.
        #[arg(long)]
        source: String,
        /// The shared secret, at least 16 characters; stored encrypted, never shown again.
        #[arg(long, env = "VIGIL_RADIUS_SECRET", hide_env_values = true)]
        secret: String,
        /// How logins are decided.
        #[arg(long, value_enum)]
        mode: ModeArg,
        /// An agent of kind radius whose policy the logins follow; a new one when left out.
        #[arg(long)]
        agent: Option<String>,
        /// Second-factor mode: seconds to wait for the user (5 to 100), below the client's
        /// own RADIUS timeout [default: 60].
        #[arg(long)]
        timeout_seconds: Option<u32>,
    },
    /// List a provider's RADIUS clients (never their secrets).
    List {
        /// Provider id (`prv_…`).
        #[arg(long)]
        provider: String,
    },
    /// Remove a RADIUS client; its packets are dropped at once.
    Delete {
        /// RADIUS client id (`rcl_…`).
        id: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ModeArg {
    /// The client checked the password; Vigil runs the user's push or voice factor.
    SecondFactor,
    /// Access-Challenge: the user types the code sent to them.
    Challenge,
    /// The password field holds the directory password followed by a 6-digit code.
    PasswordCode,
}

impl From<ModeArg> for RadiusMode {
    fn from(mode: ModeArg) -> Self {
        match mode {
            ModeArg::SecondFactor => RadiusMode::SecondFactor,
            ModeArg::Challenge => RadiusMode::Challenge,
            ModeArg::PasswordCode => RadiusMode::PasswordCode,
        }
    }
}

fn mode_name(mode: i32) -> String {
    match RadiusMode::try_from(mode).unwrap_or_default() {
        RadiusMode::SecondFactor => "second-factor".into(),
        RadiusMode::Challenge => "challenge".into(),
        RadiusMode::PasswordCode => "password-code".into(),
        RadiusMode::Unspecified => format!("UNKNOWN({mode})"),
    }
}

fn client_json(c: &RadiusClient) -> Value {
    json!({
        "id": c.id, "provider_id": c.provider_id, "agent_id": c.agent_id, "name": c.name,
        "source": c.source_cidr, "mode": mode_name(c.mode), "timeout_seconds": c.timeout_seconds,
        "created_at": output::time(c.created_at.as_ref()),
    })
}

fn client_text(c: &RadiusClient) -> String {
    format!(
        "RADIUS client {}\n{}",
        c.id,
        fields(&[
            ("name", c.name.clone()),
            ("source", c.source_cidr.clone()),
            ("mode", mode_name(c.mode)),
            ("timeout", format!("{} s", c.timeout_seconds)),
            ("agent", c.agent_id.clone()),
            ("created at", output::time(c.created_at.as_ref()).unwrap_or_default()),
        ])
    )
}

pub async fn run(global: &Global, command: RadiusClientsCommand) -> anyhow::Result<ExitCode> {
    let admin = Admin::connect(global).await?;
    let mut client = admin.client.clone();
    match command {
        RadiusClientsCommand::Create {
            provider,
            name,
            source,
            secret,
            mode,
            agent,
            timeout_seconds,
        } => {
            let request = CreateRadiusClientRequest {
                provider_id: provider,
                agent_id: agent.unwrap_or_default(),
                name,
                source_cidr: source,
                shared_secret: secret,
                mode: RadiusMode::from(mode) as i32,
                timeout_seconds: timeout_seconds.unwrap_or(0),
            };
            let created = client
                .create_radius_client(admin.request(request)?)
                .await
                .map_err(rpc_error("CreateRadiusClient"))?
                .into_inner();
            emit(global, &client_json(&created), || client_text(&created));
        }
        RadiusClientsCommand::List { provider } => {
            let listed = client
                .list_radius_clients(admin.request(ListRadiusClientsRequest { provider_id: provider })?)
                .await
                .map_err(rpc_error("ListRadiusClients"))?
                .into_inner();
            let value = json!({"clients": listed.clients.iter().map(client_json).collect::<Vec<_>>()});
            emit(global, &value, || {
                if listed.clients.is_empty() {
                    return "no RADIUS clients\n".into();
                }
                listed
                    .clients
                    .iter()
                    .map(|c| format!("{}  {:<18} {:<14} {}\n", c.id, c.source_cidr, mode_name(c.mode), c.name))
                    .collect()
            });
        }
        RadiusClientsCommand::Delete { id } => {
            client
                .delete_radius_client(admin.request(DeleteRadiusClientRequest {
                    radius_client_id: id.clone(),
                })?)
                .await
                .map_err(rpc_error("DeleteRadiusClient"))?;
            emit(global, &json!({"deleted": id}), || {
                format!("deleted RADIUS client {id}\n")
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}
