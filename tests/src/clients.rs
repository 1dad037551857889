use anyhow::Context;
use tonic::{
    Request,
    metadata::MetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};
use vigil_proto::v1::{admin_client::AdminClient, auth_gateway_client::AuthGatewayClient};

/// Adds fixed credentials to every call.
#[derive(Clone)]
pub struct Credentials {
    authorization: MetadataValue<tonic::metadata::Ascii>,
    agent_id: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Interceptor for Credentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        if let Some(agent) = &self.agent_id {
            request.metadata_mut().insert("x-vigil-agent-id", agent.clone());
        }
        Ok(request)
    }
}

pub type AgentClient = AuthGatewayClient<InterceptedService<Channel, Credentials>>;

async fn channel(url: &str) -> anyhow::Result<Channel> {
    Channel::from_shared(url.to_owned())?
        .connect()
        .await
        .context("connecting to the gateway")
}

pub async fn admin_client(
    url: &str,
    token: &str,
) -> anyhow::Result<AdminClient<InterceptedService<Channel, Credentials>>> {
    let credentials = Credentials {
        authorization: format!("Bearer {token}").parse()?,
        agent_id: None,
    };
    Ok(AdminClient::with_interceptor(channel(url).await?, credentials))
}

pub async fn agent_client(url: &str, agent_id: &str, key: &str) -> anyhow::Result<AgentClient> {
    let credentials = Credentials {
        authorization: format!("Bearer {key}").parse()?,
        agent_id: Some(agent_id.parse()?),
    };
    Ok(AuthGatewayClient::with_interceptor(channel(url).await?, credentials))
}
