//! Connecting to the auth gateway and authenticating calls to it.

use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, Endpoint};
use vigil_proto::v1::{admin_client::AdminClient, auth_gateway_client::AuthGatewayClient};

use crate::Global;

/// Metadata key that names the calling agent.
const AGENT_ID_HEADER: &str = "x-vigil-agent-id";
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

/// An agent API client and the agent credentials its calls carry.
pub struct Agent {
    pub client: AuthGatewayClient<Channel>,
    agent_id: AsciiMetadataValue,
    key: SecretString,
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
        let agent_id = AsciiMetadataValue::try_from(agent_id)
            .map_err(|_| anyhow::anyhow!("agent id {agent_id:?} contains characters not allowed in gRPC metadata"))?;
        Ok(Agent {
            client: AuthGatewayClient::new(channel(url).await?),
            agent_id,
            key,
        })
    }

    pub fn request<T>(&self, message: T) -> anyhow::Result<tonic::Request<T>> {
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        metadata.insert(AGENT_ID_HEADER, self.agent_id.clone());
        insert_bearer(metadata, &self.key)?;
        Ok(request)
    }
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
