//! `vigil manage …` and `vigil doctor`: activation, registration, user and
//! agent policy, CSV import, and "why was this login (not) challenged?".

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};
use vigil_proto::v1::{
    CreateActivationRequest, ExplainLoginRequest, ImportUsersRequest, ImportUsersResponse, RegisterAgentRequest,
    UpdateAgentRequest, UpdateProviderRequest, UpdateUserRequest, UserStatus,
};

use crate::{
    Global,
    admin::{AgentKindArg, user_json, user_text},
    gateway::{Admin, registration, rpc_error},
    output::{self, emit, fields},
};

#[derive(Subcommand)]
pub enum ManageCommand {
    /// One-time activation credentials for an agent (valid 10 minutes, usable once).
    CreateActivation {
        #[arg(long)]
        provider: String,
    },
    /// Register this machine's agent with activation credentials; prints its key once.
    Register {
        #[arg(long)]
        login: String,
        #[arg(long, env = "VIGIL_ACTIVATION_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        kind: AgentKindArg,
    },
    /// Change an agent's policy or disable it (a disabled agent is refused at once).
    UpdateAgent {
        agent_id: String,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
        /// Let unknown users through (audited) instead of denying them.
        #[arg(long)]
        allow_unknown_users: Option<bool>,
        /// Skip the second factor for N minutes after an approval from the same address.
        #[arg(long)]
        remember_minutes: Option<u32>,
    },
    /// Set a provider's trusted networks (CIDR; repeat the flag; none clears them).
    TrustedNetworks {
        #[arg(long)]
        provider: String,
        #[arg(long = "network")]
        networks: Vec<String>,
    },
    /// Enable, disable, unblock, unlock or bypass a user, or change contact details.
    UpdateUser {
        #[arg(long)]
        provider: String,
        /// User id or username.
        user: String,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
        #[arg(long)]
        unlock: bool,
        /// One-time bypass lasting this many minutes ...
        #[arg(long)]
        bypass_minutes: Option<u32>,
        /// ... for this many logins.
        #[arg(long)]
        bypass_count: Option<u32>,
        #[arg(long)]
        phone: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long, env = "VIGIL_USER_PIN", hide_env_values = true)]
        pin: Option<String>,
    },
    /// Import users from a CSV file (username,display_name,phone,email,default_method).
    ImportUsers {
        #[arg(long)]
        provider: String,
        file: std::path::PathBuf,
    },
}

pub async fn run(global: &Global, command: ManageCommand) -> anyhow::Result<ExitCode> {
    if let ManageCommand::Register {
        login,
        password,
        name,
        kind,
    } = command
    {
        let mut client = registration(global).await?;
        let registered = client
            .register(RegisterAgentRequest {
                login,
                password,
                name,
                kind: vigil_proto::v1::AgentKind::from(kind) as i32,
            })
            .await
            .map_err(rpc_error("Register"))?
            .into_inner();
        let value = json!({"agent_id": registered.agent_id, "provider_id": registered.provider_id, "agent_key": registered.agent_key});
        emit(global, &value, || {
            format!(
                "registered agent {id}\nThe agent key is shown only this once:\n  export VIGIL_AGENT_ID={id}\n  export VIGIL_AGENT_KEY={key}\n",
                id = registered.agent_id,
                key = registered.agent_key
            )
        });
        return Ok(ExitCode::SUCCESS);
    }
    let admin = Admin::connect(global).await?;
    let mut client = admin.client.clone();
    match command {
        ManageCommand::Register { .. } => unreachable!("handled above"),
        ManageCommand::CreateActivation { provider } => {
            let creds = client
                .create_activation(admin.request(CreateActivationRequest { provider_id: provider })?)
                .await
                .map_err(rpc_error("CreateActivation"))?
                .into_inner();
            let expires = output::time(creds.expires_at.as_ref()).unwrap_or_default();
            emit(
                global,
                &json!({"login": creds.login, "password": creds.password, "expires_at": expires}),
                || {
                    format!(
                        "activation credentials (usable once, until {expires}):\n{}",
                        fields(&[("login", creds.login.clone()), ("password", creds.password.clone())])
                    )
                },
            );
        }
        ManageCommand::UpdateAgent {
            agent_id,
            enable,
            disable,
            allow_unknown_users,
            remember_minutes,
        } => {
            let request = UpdateAgentRequest {
                agent_id,
                enabled: (enable || disable).then_some(enable),
                require_user_match: allow_unknown_users.map(|allow| !allow),
                remember_minutes,
            };
            let agent = client
                .update_agent(admin.request(request)?)
                .await
                .map_err(rpc_error("UpdateAgent"))?
                .into_inner();
            let value = json!({"id": agent.id, "enabled": agent.enabled, "require_user_match": agent.require_user_match, "remember_minutes": agent.remember_minutes});
            emit(global, &value, || format!("{}\n", output::pretty(&value)));
        }
        ManageCommand::TrustedNetworks { provider, networks } => {
            let request = UpdateProviderRequest {
                provider_id: provider,
                trusted_networks: networks,
                set_trusted_networks: true,
                ..Default::default()
            };
            let p = client
                .update_provider(admin.request(request)?)
                .await
                .map_err(rpc_error("UpdateProvider"))?
                .into_inner();
            let value = json!({"id": p.id, "trusted_networks": p.trusted_networks});
            emit(global, &value, || format!("{}\n", output::pretty(&value)));
        }
        ManageCommand::UpdateUser {
            provider,
            user,
            enable,
            disable,
            unlock,
            bypass_minutes,
            bypass_count,
            phone,
            email,
            pin,
        } => {
            let status = match (enable, disable) {
                (true, _) => Some(UserStatus::Enabled as i32),
                (_, true) => Some(UserStatus::Disabled as i32),
                _ => None,
            };
            let request = UpdateUserRequest {
                provider_id: provider,
                user,
                phone,
                email,
                pin,
                status,
                bypass_seconds: bypass_minutes.map(|m| m.saturating_mul(60)),
                bypass_count,
                unlock,
                ..Default::default()
            };
            let user = client
                .update_user(admin.request(request)?)
                .await
                .map_err(rpc_error("UpdateUser"))?
                .into_inner();
            emit(global, &user_json(&user), || user_text(&user));
        }
        ManageCommand::ImportUsers { provider, file } => {
            let csv = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let report = client
                .import_users(admin.request(ImportUsersRequest {
                    provider_id: provider,
                    csv,
                })?)
                .await
                .map_err(rpc_error("ImportUsers"))?
                .into_inner();
            import_report(global, &report);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints an import's counts and each rejected row with its reason.
pub fn import_report(global: &Global, report: &ImportUsersResponse) {
    let rows: Vec<Value> = report
        .rows
        .iter()
        .map(|r| json!({"line": r.line, "username": r.username, "outcome": r.outcome, "reason": r.reason}))
        .collect();
    let value = json!({"created": report.created, "updated": report.updated, "unchanged": report.unchanged, "rejected": report.rejected, "rows": rows});
    emit(global, &value, || {
        let mut text = format!(
            "created {}, updated {}, unchanged {}, rejected {}\n",
            report.created, report.updated, report.unchanged, report.rejected
        );
        for r in report.rows.iter().filter(|r| r.outcome == "rejected") {
            text.push_str(&format!("  line {}: {} rejected: {}\n", r.line, r.username, r.reason));
        }
        text
    });
}

/// `vigil doctor <user>`: what would happen for this agent and address, and why.
#[derive(clap::Args)]
pub struct DoctorArgs {
    /// Username (as the agent sends it).
    pub user: String,
    #[arg(long)]
    pub provider: String,
    /// The agent whose policy applies; strict defaults when left out.
    #[arg(long)]
    pub agent: Option<String>,
    #[arg(long)]
    pub client_ip: Option<String>,
}

pub async fn doctor(global: &Global, args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let admin = Admin::connect(global).await?;
    let mut client = admin.client.clone();
    let e = client
        .explain_login(admin.request(ExplainLoginRequest {
            provider_id: args.provider,
            username: args.user.clone(),
            agent_id: args.agent.unwrap_or_default(),
            client_ip: args.client_ip.unwrap_or_default(),
        })?)
        .await
        .map_err(rpc_error("ExplainLogin"))?
        .into_inner();
    let attempts: Vec<Value> = e
        .recent_attempts
        .iter()
        .map(|a| {
            json!({"at": output::time(a.at.as_ref()), "operation": a.operation, "agent_id": a.agent_id,
                   "client_ip": a.client_ip, "decision": output::decision(a.decision), "reason": output::reason(a.reason),
                   "challenge_id": a.challenge_id})
        })
        .collect();
    let value = json!({"decision": output::decision(e.decision), "reason": output::reason(e.reason), "message": e.message,
                       "considered": e.considered, "recent_attempts": attempts});
    emit(global, &value, || {
        let mut text = format!("{}: {}\n", args.user, output::verdict(e.decision, e.reason, &e.message));
        text.push_str("considered, in order:\n");
        for line in &e.considered {
            text.push_str(&format!("  - {line}\n"));
        }
        text.push_str("recent attempts:\n");
        for a in &e.recent_attempts {
            text.push_str(&format!(
                "  {} {:<12} {} from {} via {}\n",
                output::time(a.at.as_ref()).unwrap_or_default(),
                a.operation,
                output::verdict(a.decision, a.reason, ""),
                if a.client_ip.is_empty() { "-" } else { &a.client_ip },
                if a.agent_id.is_empty() { "-" } else { &a.agent_id },
            ));
        }
        text
    });
    Ok(ExitCode::SUCCESS)
}
