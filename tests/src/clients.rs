use std::time::Duration;

use anyhow::Context;
use tonic::{
    Request, Response, Status,
    metadata::MetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};
use vigil_agent_auth::{AgentCredential, methods};
use vigil_proto::v1::{
    self as api, admin_client::AdminClient, agent_registration_client::AgentRegistrationClient,
    auth_gateway_client::AuthGatewayClient,
};

/// Adds the admin bearer token to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, tonic::Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

pub type Admin = AdminClient<InterceptedService<Channel, Bearer>>;

pub async fn channel(url: &str) -> anyhow::Result<Channel> {
    Channel::from_shared(url.to_owned())?
        .connect()
        .await
        .context("connecting to the gateway")
}

pub async fn admin_client(url: &str, token: &str) -> anyhow::Result<Admin> {
    let bearer = Bearer(format!("Bearer {token}").parse()?);
    Ok(AdminClient::with_interceptor(channel(url).await?, bearer))
}

pub async fn registration_client(url: &str) -> anyhow::Result<AgentRegistrationClient<Channel>> {
    Ok(AgentRegistrationClient::new(channel(url).await?))
}

/// An agent that signs every call, as real agents do.
#[derive(Clone)]
pub struct AgentClient {
    pub raw: AuthGatewayClient<Channel>,
    pub credential: AgentCredential,
}

impl AgentClient {
    pub async fn preauth(&mut self, m: api::PreauthRequest) -> Result<Response<api::PreauthResponse>, Status> {
        self.raw.preauth(self.credential.sign(methods::PREAUTH, m)).await
    }

    pub async fn authenticate(
        &mut self,
        m: api::AuthenticateRequest,
    ) -> Result<Response<api::AuthenticateResponse>, Status> {
        self.raw
            .authenticate(self.credential.sign(methods::AUTHENTICATE, m))
            .await
    }

    pub async fn get_auth_status(&mut self, m: api::GetAuthStatusRequest) -> Result<Response<api::AuthStatus>, Status> {
        self.raw
            .get_auth_status(self.credential.sign(methods::GET_AUTH_STATUS, m))
            .await
    }

    /// Every state of the challenge until the stream ends.
    pub async fn watch_auth(&mut self, m: api::WatchAuthRequest) -> Result<Vec<api::AuthStatus>, Status> {
        let mut stream = self
            .raw
            .watch_auth(self.credential.sign(methods::WATCH_AUTH, m))
            .await?
            .into_inner();
        let mut states = Vec::new();
        while let Some(state) = stream.message().await? {
            states.push(state);
        }
        Ok(states)
    }

    pub async fn verify_passcode(
        &mut self,
        m: api::VerifyPasscodeRequest,
    ) -> Result<Response<api::VerifyPasscodeResponse>, Status> {
        self.raw
            .verify_passcode(self.credential.sign(methods::VERIFY_PASSCODE, m))
            .await
    }
}

impl AgentClient {
    /// Polls the challenge until it ends: its final state and reason.
    pub async fn final_state(&self, challenge_id: &str) -> anyhow::Result<(api::ChallengeState, api::Reason)> {
        vigil_testkit::wait_until(Duration::from_secs(20), "the challenge's final state", || {
            let mut agent = self.clone();
            let challenge_id = challenge_id.to_owned();
            async move {
                let s = agent
                    .get_auth_status(api::GetAuthStatusRequest { challenge_id })
                    .await?
                    .into_inner();
                let done = !matches!(s.state(), api::ChallengeState::Pending | api::ChallengeState::Delivered);
                anyhow::Ok(done.then(|| (s.state(), s.reason())))
            }
        })
        .await
    }
}

pub async fn agent_client(url: &str, agent_id: &str, key: &str) -> anyhow::Result<AgentClient> {
    Ok(AgentClient {
        raw: AuthGatewayClient::new(channel(url).await?),
        credential: AgentCredential {
            agent_id: agent_id.to_owned(),
            key: key.to_owned(),
        },
    })
}
