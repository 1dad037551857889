//! A provider with an operator admin client and one RDP agent: the starting
//! point of most end-to-end tests.

use vigil_proto::v1::{
    AgentKind, AuditEntry, AuditKind, CreateAgentRequest, CreateProviderRequest, CreateUserRequest, Decision,
    EnrollFactorRequest, EnrollFactorResponse, Factor, ListAuditRequest, Reason, UsageModel,
};

use crate::{Admin, AgentClient, Stack, admin_client, agent_client};

pub struct Tenant {
    pub admin: Admin,
    pub provider_id: String,
    pub agent: AgentClient,
}

impl Tenant {
    /// A `per_authentication` provider named `name` with an RDP agent.
    pub async fn create(stack: &Stack, name: &str) -> anyhow::Result<Tenant> {
        let mut admin = admin_client(&stack.grpc_url, &stack.admin_token).await?;
        let provider = admin
            .create_provider(CreateProviderRequest {
                name: name.into(),
                usage_model: UsageModel::PerAuthentication as i32,
            })
            .await?
            .into_inner();
        let agent = admin
            .create_agent(CreateAgentRequest {
                provider_id: provider.id.clone(),
                name: format!("{name} RDP"),
                kind: AgentKind::Rdp as i32,
            })
            .await?
            .into_inner();
        Ok(Tenant {
            agent: agent_client(&stack.grpc_url, &agent.agent_id, &agent.agent_key).await?,
            admin,
            provider_id: provider.id,
        })
    }

    /// A user of this provider with SMS and voice on `phone`.
    pub async fn add_user(&mut self, username: &str, phone: &str) -> anyhow::Result<()> {
        self.admin
            .create_user(CreateUserRequest {
                provider_id: self.provider_id.clone(),
                username: username.into(),
                display_name: username.into(),
                sms_phone: phone.into(),
            })
            .await?;
        Ok(())
    }

    /// Enrols `factor` for `user`: what the admin is shown once (seed, URI,
    /// backup codes or push enrolment code).
    pub async fn enroll(&mut self, user: &str, factor: Factor) -> anyhow::Result<EnrollFactorResponse> {
        let enrolled = self
            .admin
            .enroll_factor(EnrollFactorRequest {
                provider_id: self.provider_id.clone(),
                user: user.into(),
                factor: factor as i32,
            })
            .await?;
        Ok(enrolled.into_inner())
    }

    /// The authentication audit records of one challenge, oldest first:
    /// what was done, decided and why.
    pub async fn audited(&mut self, challenge_id: &str) -> anyhow::Result<Vec<(String, Decision, Reason)>> {
        let mut entries: Vec<AuditEntry> = self
            .admin
            .list_audit(ListAuditRequest {
                provider_id: self.provider_id.clone(),
                kind: AuditKind::Authentication as i32,
                page_size: 500,
                ..Default::default()
            })
            .await?
            .into_inner()
            .entries
            .into_iter()
            .filter(|e| e.target == challenge_id)
            .collect();
        entries.reverse();
        Ok(entries
            .into_iter()
            .map(|e| (e.action.clone(), e.decision(), e.reason()))
            .collect())
    }
}
