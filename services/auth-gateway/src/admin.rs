//! The operator API: providers, agents, users.

use std::{sync::Arc, time::SystemTime};

use tonic::{Request, Response, Status};
use uuid::Uuid;
use vigil_bus::rpc::call;
use vigil_core::{AgentId, ProviderId};
use vigil_proto::{
    events::ProviderCreated,
    rpc,
    v1::{self as api, UsageModel, admin_server::Admin},
};

use crate::{
    app::Gateway,
    auth::{new_agent_key, require_admin},
    error::{GatewayError, from_rpc},
    store,
};

pub struct AdminApi(pub Arc<Gateway>);

fn usage_model_name(model: UsageModel) -> Option<&'static str> {
    match model {
        UsageModel::PerEnabledUser => Some("per_enabled_user"),
        UsageModel::PerAuthentication => Some("per_authentication"),
        UsageModel::Unspecified => None,
    }
}

fn provider_to_api(row: &store::ProviderRow) -> api::Provider {
    let model = match row.usage_model.as_str() {
        "per_enabled_user" => UsageModel::PerEnabledUser,
        _ => UsageModel::PerAuthentication,
    };
    api::Provider {
        id: ProviderId::from_uuid(row.id).to_string(),
        name: row.name.clone(),
        usage_model: model as i32,
        created_at: Some(vigil_proto::to_timestamp(SystemTime::from(row.created_at))),
    }
}

fn parse_provider(id: &str) -> Result<ProviderId, GatewayError> {
    ProviderId::parse(id).map_err(|e| GatewayError::InvalidArgument(format!("provider_id: {e}")))
}

impl AdminApi {
    /// The provider must exist here before anything is created in it.
    async fn existing_provider(&self, id: &str) -> Result<store::ProviderRow, GatewayError> {
        let provider = parse_provider(id)?;
        let mut conn = self.0.pool.acquire().await?;
        store::get_provider(&mut conn, provider.as_uuid())
            .await?
            .ok_or_else(|| GatewayError::NotFound(format!("provider {provider} does not exist")))
    }
}

#[tonic::async_trait]
impl Admin for AdminApi {
    async fn create_provider(
        &self,
        request: Request<api::CreateProviderRequest>,
    ) -> Result<Response<api::Provider>, Status> {
        require_admin(request.metadata(), &self.0.admin_token)?;
        let req = request.into_inner();
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(GatewayError::InvalidArgument("name must be 1 to 200 characters".into()).into());
        }
        let model = UsageModel::try_from(req.usage_model).unwrap_or(UsageModel::Unspecified);
        let model_name = usage_model_name(model).ok_or_else(|| {
            GatewayError::InvalidArgument(
                "usage_model must be per_enabled_user or per_authentication; it cannot be changed later".into(),
            )
        })?;
        let row = store::ProviderRow {
            id: Uuid::now_v7(),
            name: name.to_owned(),
            usage_model: model_name.to_owned(),
            created_at: self.0.clock.now(),
        };
        let provider_id = ProviderId::from_uuid(row.id).to_string();
        let mut tx = self.0.pool.begin().await.map_err(GatewayError::from)?;
        store::insert_provider(&mut tx, &row)
            .await
            .map_err(GatewayError::from)?;
        let event = ProviderCreated {
            provider_id: provider_id.clone(),
            name: row.name.clone(),
            usage_model: model as i32,
        };
        self.0
            .outbox
            .enqueue(&mut tx, &provider_id, &event)
            .await
            .map_err(GatewayError::from)?;
        tx.commit().await.map_err(GatewayError::from)?;
        self.0.outbox.notify();
        tracing::info!(%provider_id, usage_model = model_name, "provider created");
        Ok(Response::new(provider_to_api(&row)))
    }

    async fn get_provider(&self, request: Request<api::GetProviderRequest>) -> Result<Response<api::Provider>, Status> {
        require_admin(request.metadata(), &self.0.admin_token)?;
        let row = self.existing_provider(&request.get_ref().provider_id).await?;
        Ok(Response::new(provider_to_api(&row)))
    }

    async fn create_agent(
        &self,
        request: Request<api::CreateAgentRequest>,
    ) -> Result<Response<api::CreateAgentResponse>, Status> {
        require_admin(request.metadata(), &self.0.admin_token)?;
        let req = request.into_inner();
        let provider = self.existing_provider(&req.provider_id).await?;
        let kind = match api::AgentKind::try_from(req.kind).unwrap_or(api::AgentKind::Unspecified) {
            api::AgentKind::Rdp => "rdp",
            api::AgentKind::Radius => "radius",
            api::AgentKind::App => "app",
            api::AgentKind::Unspecified => {
                return Err(GatewayError::InvalidArgument("kind must be rdp, radius or app".into()).into());
            }
        };
        let name = req.name.trim();
        if name.is_empty() {
            return Err(GatewayError::InvalidArgument("name must not be empty".into()).into());
        }
        let agent_id = AgentId::new();
        let (key, key_hash) = new_agent_key();
        let mut conn = self.0.pool.acquire().await.map_err(GatewayError::from)?;
        store::insert_agent(
            &mut conn,
            store::NewAgent {
                id: agent_id.as_uuid(),
                provider_id: provider.id,
                name,
                kind,
                key_hash: &key_hash,
                now: self.0.clock.now(),
            },
        )
        .await
        .map_err(GatewayError::from)?;
        tracing::info!(%agent_id, kind, "agent registered");
        Ok(Response::new(api::CreateAgentResponse {
            agent_id: agent_id.to_string(),
            agent_key: key,
        }))
    }

    async fn create_user(&self, request: Request<api::CreateUserRequest>) -> Result<Response<api::User>, Status> {
        require_admin(request.metadata(), &self.0.admin_token)?;
        let req = request.into_inner();
        let provider = self.existing_provider(&req.provider_id).await?;
        let provider_id = ProviderId::from_uuid(provider.id).to_string();
        let forwarded = rpc::CreateUserRequest {
            provider_id: provider_id.clone(),
            username: req.username,
            display_name: req.display_name.clone(),
            sms_phone: req.sms_phone,
        };
        let reply: rpc::CreateUserReply = call(
            &self.0.nats,
            vigil_bus::subjects::RPC_CHALLENGE_CREATE_USER,
            &forwarded,
            self.0.rpc_timeout,
        )
        .await
        .map_err(|e| GatewayError::Unavailable(e.to_string()))?;
        if let Some(error) = reply.error {
            return Err(from_rpc(error).into());
        }
        Ok(Response::new(api::User {
            id: reply.user_id,
            provider_id,
            username: forwarded.username.trim().to_lowercase(),
            display_name: req.display_name.trim().to_owned(),
            status: reply.status,
            factors: reply
                .factors
                .into_iter()
                .map(|f| api::FactorInfo {
                    factor: f.factor,
                    destination: f.masked_destination,
                })
                .collect(),
        }))
    }
}
