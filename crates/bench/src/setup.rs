//! The benchmark's own provider, agents and users, made through the admin
//! API so it runs against any deployment; names carry a run id so runs never
//! collide.

use anyhow::Context;
use futures::{StreamExt, TryStreamExt, stream};
use vigil_agent_auth::AgentCredential;
use vigil_e2e::{Admin, AgentClient, admin_client, agent_client};
use vigil_otp::OtpSecret;
use vigil_proto::v1::{
    AgentKind, CreateAgentRequest, CreateProviderRequest, CreateUserRequest, EnrollFactorRequest, Factor,
    UpdateProviderRequest, UsageModel,
};

pub struct Tenant {
    pub admin: Admin,
    pub provider_id: String,
    /// Requests go round robin over these, so none goes over its rate limit.
    pub agents: Vec<AgentClient>,
    /// Short random id in every name this run creates.
    pub run_id: String,
    gateway: String,
    setup_concurrency: usize,
}

/// A user the scenarios log in as.
pub struct NewUser {
    pub username: String,
    pub phone: String,
    pub seed: Option<OtpSecret>,
}

impl Tenant {
    /// A provider with `agents` agents whose calls share `connections` HTTP/2
    /// connections.
    pub async fn create(
        gateway: &str,
        token: &str,
        connections: usize,
        agents: usize,
        setup_concurrency: usize,
    ) -> anyhow::Result<Self> {
        let run_id = format!("{:06x}", rand::random_range(0..0x100_0000u32));
        let mut admin = admin_client(gateway, token).await?;
        let provider = admin
            .create_provider(CreateProviderRequest {
                name: format!("vigil-bench {run_id}"),
                usage_model: UsageModel::PerAuthentication as i32,
            })
            .await
            .context("creating the benchmark's provider (is the admin token right?)")?
            .into_inner();
        // The toll-fraud caps (100 SMS per prefix and hour by default) would
        // refuse the sms scenario's load; the bench's own provider has none.
        admin
            .update_provider(UpdateProviderRequest {
                provider_id: provider.id.clone(),
                sms_cap_per_hour: Some(0),
                voice_cap_per_hour: Some(0),
                ..Default::default()
            })
            .await
            .context("lifting the benchmark provider's delivery caps")?;
        let mut tenant = Self {
            admin,
            provider_id: provider.id,
            agents: Vec::new(),
            run_id,
            gateway: gateway.to_owned(),
            setup_concurrency: setup_concurrency.max(1),
        };
        let credentials: Vec<AgentCredential> = stream::iter(0..agents.max(1))
            .map(|i| {
                let mut admin = tenant.admin.clone();
                let provider_id = tenant.provider_id.clone();
                async move {
                    let agent = admin
                        .create_agent(CreateAgentRequest {
                            provider_id,
                            name: format!("vigil-bench app {i}"),
                            kind: AgentKind::App as i32,
                        })
                        .await
                        .context("creating an agent")?
                        .into_inner();
                    anyhow::Ok(AgentCredential {
                        agent_id: agent.agent_id,
                        key: agent.agent_key,
                    })
                }
            })
            .buffer_unordered(tenant.setup_concurrency)
            .try_collect()
            .await?;
        let mut channels = Vec::new();
        for credential in credentials {
            // The first `connections` agents open a connection each; the
            // others sign their calls on those.
            let agent = match channels.get(tenant.agents.len() % connections.max(1)) {
                Some(raw) if channels.len() >= connections.max(1) => AgentClient {
                    raw: Clone::clone(raw),
                    credential,
                },
                _ => {
                    let agent = agent_client(gateway, &credential.agent_id, &credential.key).await?;
                    channels.push(agent.raw.clone());
                    agent
                }
            };
            tenant.agents.push(agent);
        }
        Ok(tenant)
    }

    pub fn gateway(&self) -> &str {
        &self.gateway
    }

    /// `count` users named `{prefix}-{run}-{n}`, each with a phone of its own
    /// (so SMS inboxes never mix) and, with `totp`, an enrolled TOTP seed.
    pub async fn create_users(&self, prefix: &str, count: usize, totp: bool) -> anyhow::Result<Vec<NewUser>> {
        // +1555 numbers: fictional, and unique per run and scenario.
        let base: u64 = rand::random_range(0..900) * 10_000;
        stream::iter(0..count)
            .map(|n| {
                let mut admin = self.admin.clone();
                let provider_id = self.provider_id.clone();
                let username = format!("{prefix}-{}-{n}", self.run_id);
                let phone = format!("+1555{:07}", base + n as u64);
                async move {
                    admin
                        .create_user(CreateUserRequest {
                            provider_id: provider_id.clone(),
                            username: username.clone(),
                            display_name: username.clone(),
                            sms_phone: phone.clone(),
                        })
                        .await
                        .with_context(|| format!("creating user {username}"))?;
                    let seed = if totp {
                        let enrolled = admin
                            .enroll_factor(EnrollFactorRequest {
                                provider_id,
                                user: username.clone(),
                                factor: Factor::Totp as i32,
                            })
                            .await
                            .with_context(|| format!("enrolling TOTP for {username}"))?
                            .into_inner();
                        Some(OtpSecret::from_base32(&enrolled.secret_base32).context("the enrolled TOTP seed")?)
                    } else {
                        None
                    };
                    anyhow::Ok(NewUser { username, phone, seed })
                }
            })
            .buffer_unordered(self.setup_concurrency)
            .try_collect()
            .await
    }

    /// The agent for the `n`th request: round robin over the connections.
    pub fn agent(&self, n: u64) -> AgentClient {
        let i = usize::try_from(n % self.agents.len().max(1) as u64).unwrap_or(0);
        self.agents
            .get(i)
            .cloned()
            .unwrap_or_else(|| unreachable!("at least one agent"))
    }
}
