//! Connecting to the auth gateway and authenticating calls to it.

use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, Endpoint};
use vigil_agent_auth::AgentCredential;
use vigil_proto::v1::{
    admin_client::AdminClient, agent_registration_client::AgentRegistrationClient,
    auth_gateway_client::AuthGatewayClient,
};

use crate::Global;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Generous: the gateway itself answers within its own RPC deadline.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

async fn channel(url: &str) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("invalid gateway URL {url:?}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT);
    endpoint.connect().await.with_context(|| {
        format!("cannot connect to the gateway at {url} (is it running? `scripts/dev up` starts the local stack)")
    })
}

/// An admin API client and the credentials its calls carry.
pub struct Admin {
    pub client: AdminClient<Channel>,
    token: SecretString,
}

impl Admin {
    pub async fn connect(global: &Global) -> anyhow::Result<Admin> {
        let Some(token) = global.admin_token.clone() else {
            bail!("no admin token: pass --admin-token or set VIGIL_ADMIN_TOKEN (`scripts/dev env` prints it)");
        };
        Ok(Admin {
            client: AdminClient::new(channel(&global.gateway).await?),
            token,
        })
    }

    pub fn request<T>(&self, message: T) -> anyhow::Result<tonic::Request<T>> {
        let mut request = tonic::Request::new(message);
        insert_bearer(request.metadata_mut(), &self.token)?;
        Ok(request)
    }
}

/// An agent API client; every call is signed with the agent key.
pub struct Agent {
    pub client: AuthGatewayClient<Channel>,
    credential: AgentCredential,
}

impl Agent {
    pub async fn connect(global: &Global) -> anyhow::Result<Agent> {
        let (Some(id), Some(key)) = (global.agent_id.as_deref(), global.agent_key.clone()) else {
            bail!(
                "no agent credentials: pass --agent-id and --agent-key or set VIGIL_AGENT_ID and VIGIL_AGENT_KEY \
                 (`vigil admin create-agent` makes them)"
            );
        };
        Agent::with_credentials(&global.gateway, id, key).await
    }

    pub async fn with_credentials(url: &str, agent_id: &str, key: SecretString) -> anyhow::Result<Agent> {
        if AsciiMetadataValue::try_from(agent_id).is_err() {
            bail!("agent id {agent_id:?} contains characters not allowed in gRPC metadata");
        }
        Ok(Agent {
            client: AuthGatewayClient::new(channel(url).await?),
            credential: AgentCredential {
                agent_id: agent_id.to_owned(),
                key: key.expose_secret().to_owned(),
            },
        })
    }

    /// `message` signed for the gRPC `method` (see `vigil_agent_auth`).
    pub fn request<T: prost::Message>(&self, method: &str, message: T) -> anyhow::Result<tonic::Request<T>> {
        Ok(self.credential.sign(method, message))
    }
}

/// Connects to the unauthenticated registration service.
pub async fn registration(global: &Global) -> anyhow::Result<AgentRegistrationClient<Channel>> {
    Ok(AgentRegistrationClient::new(channel(&global.gateway).await?))
}

fn insert_bearer(metadata: &mut MetadataMap, token: &SecretString) -> anyhow::Result<()> {
    let mut value = AsciiMetadataValue::try_from(format!("Bearer {}", token.expose_secret()))
        // Never echo the token itself, not even in an error.
        .map_err(|_| anyhow::anyhow!("the token contains characters not allowed in gRPC metadata"))?;
    // Keeps the value out of any debug output of the request.
    value.set_sensitive(true);
    metadata.insert("authorization", value);
    Ok(())
}

/// Attaches the RPC name to a gRPC error so the message says which call failed.
pub fn rpc_error(rpc: &'static str) -> impl FnOnce(tonic::Status) -> anyhow::Error {
    move |status| anyhow::Error::new(status).context(rpc)
}
