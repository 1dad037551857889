//! `vigil admin …`: the operator API (providers, agents, users).

use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};
use vigil_proto::v1::{
    AgentKind, CreateAdminTokenRequest, CreateAgentRequest, CreateAgentResponse, CreateProviderRequest,
    CreateUserRequest, GetProviderRequest, Provider, UsageModel, User,
};

use crate::Global;
use crate::gateway::{Admin, rpc_error};
use crate::output::{self, emit, fields};

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create a provider (a tenant); its usage model is fixed for good.
    CreateProvider {
        /// Display name of the provider.
        #[arg(long)]
        name: String,
        /// How the provider is billed.
        #[arg(long, value_enum)]
        usage_model: UsageModelArg,
    },
    /// Show a provider.
    GetProvider {
        /// Provider id (`prv_…`).
        id: String,
    },
    /// Register an agent and print its key, which is shown only this once.
    CreateAgent {
        /// Provider id the agent is bound to.
        #[arg(long)]
        provider: String,
        /// Display name of the agent, e.g. the host it runs on.
        #[arg(long)]
        name: String,
        /// What kind of login front end it is.
        #[arg(long, value_enum)]
        kind: AgentKindArg,
    },
    /// Create a user with an SMS factor.
    CreateUser {
        /// Provider id the user belongs to.
        #[arg(long)]
        provider: String,
        /// Login name, as the agent will send it (compared case-insensitively).
        #[arg(long)]
        username: String,
        /// Full name shown to operators.
        #[arg(long)]
        display_name: Option<String>,
        /// Phone number for SMS codes, E.164 (e.g. +15551234567).
        #[arg(long)]
        phone: String,
    },
    /// A provider admin token (operator token only): it reaches that provider alone.
    /// Printed once; Vigil keeps only a keyed hash.
    CreateAdminToken {
        /// Provider id (`prv_…`).
        #[arg(long)]
        provider: String,
        /// What the token is for, e.g. `helpdesk`.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// The audit log: every admin change and every login decision, newest first.
    Audit(crate::audit::AuditArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum UsageModelArg {
    #[value(alias = "per_authentication")]
    PerAuthentication,
    #[value(alias = "per_enabled_user")]
    PerEnabledUser,
}

impl From<UsageModelArg> for UsageModel {
    fn from(arg: UsageModelArg) -> Self {
        match arg {
            UsageModelArg::PerAuthentication => UsageModel::PerAuthentication,
            UsageModelArg::PerEnabledUser => UsageModel::PerEnabledUser,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum AgentKindArg {
    Rdp,
    Radius,
    App,
}

impl From<AgentKindArg> for AgentKind {
    fn from(arg: AgentKindArg) -> Self {
        match arg {
            AgentKindArg::Rdp => AgentKind::Rdp,
            AgentKindArg::Radius => AgentKind::Radius,
            AgentKindArg::App => AgentKind::App,
        }
    }
}

pub async fn run(global: &Global, command: AdminCommand) -> anyhow::Result<ExitCode> {
    let mut admin = Admin::connect(global).await?;
    match command {
        AdminCommand::CreateProvider { name, usage_model } => {
            let provider = create_provider(&mut admin, name, usage_model.into()).await?;
            emit(global, &provider_json(&provider), || provider_text(&provider));
        }
        AdminCommand::GetProvider { id } => {
            let request = admin.request(GetProviderRequest { provider_id: id })?;
            let provider = admin
                .client
                .get_provider(request)
                .await
                .map_err(rpc_error("GetProvider"))?
                .into_inner();
            emit(global, &provider_json(&provider), || provider_text(&provider));
        }
        AdminCommand::CreateAgent { provider, name, kind } => {
            let agent = create_agent(&mut admin, provider, name, kind.into()).await?;
            emit(
                global,
                &json!({ "agent_id": agent.agent_id, "agent_key": agent.agent_key }),
                || {
                    format!(
                        "agent {id}\n{rows}\nThe agent key is shown only this once: Vigil keeps only its hash. \
                         Store it now; to use it with `vigil agent`:\n  export VIGIL_AGENT_ID={id}\n  \
                         export VIGIL_AGENT_KEY={key}\n",
                        id = agent.agent_id,
                        key = agent.agent_key,
                        rows = fields(&[
                            ("agent id", agent.agent_id.clone()),
                            ("agent key", agent.agent_key.clone())
                        ]),
                    )
                },
            );
        }
        AdminCommand::CreateUser {
            provider,
            username,
            display_name,
            phone,
        } => {
            let user = create_user(&mut admin, provider, username, display_name.unwrap_or_default(), phone).await?;
            emit(global, &user_json(&user), || user_text(&user));
        }
        AdminCommand::CreateAdminToken { provider, description } => {
            let request = admin.request(CreateAdminTokenRequest {
                provider_id: provider,
                description,
            })?;
            let created = admin
                .client
                .create_admin_token(request)
                .await
                .map_err(rpc_error("CreateAdminToken"))?
                .into_inner();
            emit(
                global,
                &json!({ "token_id": created.token_id, "token": created.token }),
                || {
                    format!(
                        "admin token {id}\nThe token is shown only this once. To use it:\n  export VIGIL_ADMIN_TOKEN={token}\n",
                        id = created.token_id,
                        token = created.token
                    )
                },
            );
        }
        AdminCommand::Audit(args) => crate::audit::run(global, &admin, args).await?,
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn create_provider(admin: &mut Admin, name: String, usage_model: UsageModel) -> anyhow::Result<Provider> {
    let request = admin.request(CreateProviderRequest {
        name,
        usage_model: usage_model as i32,
    })?;
    Ok(admin
        .client
        .create_provider(request)
        .await
        .map_err(rpc_error("CreateProvider"))?
        .into_inner())
}

pub async fn create_agent(
    admin: &mut Admin,
    provider_id: String,
    name: String,
    kind: AgentKind,
) -> anyhow::Result<CreateAgentResponse> {
    let request = admin.request(CreateAgentRequest {
        provider_id,
        name,
        kind: kind as i32,
    })?;
    Ok(admin
        .client
        .create_agent(request)
        .await
        .map_err(rpc_error("CreateAgent"))?
        .into_inner())
}

pub async fn create_user(
    admin: &mut Admin,
    provider_id: String,
    username: String,
    display_name: String,
    sms_phone: String,
) -> anyhow::Result<User> {
    let request = admin.request(CreateUserRequest {
        provider_id,
        username,
        display_name,
        sms_phone,
    })?;
    Ok(admin
        .client
        .create_user(request)
        .await
        .map_err(rpc_error("CreateUser"))?
        .into_inner())
}

pub fn provider_json(p: &Provider) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "usage_model": output::usage_model(p.usage_model),
        "created_at": output::time(p.created_at.as_ref()),
        "sms_cap_per_hour": p.sms_cap_per_hour,
        "voice_cap_per_hour": p.voice_cap_per_hour,
        "cap_prefix_digits": p.cap_prefix_digits,
    })
}

pub fn provider_text(p: &Provider) -> String {
    format!(
        "provider {}\n{}",
        p.id,
        fields(&[
            ("name", p.name.clone()),
            ("usage model", output::usage_model(p.usage_model)),
            ("created at", output::time(p.created_at.as_ref()).unwrap_or_default()),
        ])
    )
}

pub fn user_json(u: &User) -> Value {
    json!({
        "id": u.id,
        "provider_id": u.provider_id,
        "username": u.username,
        "display_name": u.display_name,
        "status": output::user_status(u.status),
        "factors": u.factors.iter().map(|f| json!({
            "factor": output::factor(f.factor),
            "destination": f.destination,
        })).collect::<Vec<_>>(),
    })
}

pub fn user_text(u: &User) -> String {
    let factors = u
        .factors
        .iter()
        .map(|f| {
            format!("{} {}", output::factor(f.factor), f.destination)
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "user {}\n{}",
        u.id,
        fields(&[
            ("username", u.username.clone()),
            ("display name", u.display_name.clone()),
            ("provider", u.provider_id.clone()),
            ("status", output::user_status(u.status)),
            ("factors", factors),
        ])
    )
}
