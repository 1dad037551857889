//! The operator API: providers, admin tokens, agents, users, and "why".
//! Every call is authorised here first; a provider admin token reaches its
//! own provider only.

mod agents;
mod audit;
mod convert;
mod directory;
mod import;
mod providers;
mod radius_clients;
mod users;
mod webhooks;

use std::sync::Arc;

use tonic::{Request, Response, Status};
use vigil_proto::v1::{self as api, admin_server::Admin};

use crate::{
    app::Gateway,
    auth::{AdminScope, require_admin},
    error::GatewayError,
};

pub struct AdminApi(pub Arc<Gateway>);

impl AdminApi {
    async fn scope<T>(&self, request: &Request<T>) -> Result<AdminScope, GatewayError> {
        require_admin(request.metadata(), &self.0).await
    }
}

/// Runs one admin call: authorise, then the body, errors mapped once.
macro_rules! admin_call {
    ($self:ident, $request:ident, |$scope:ident, $req:ident| $body:expr) => {{
        let $scope = $self.scope(&$request).await?;
        let $req = $request.into_inner();
        let result: Result<_, GatewayError> = $body.await;
        result.map(Response::new).map_err(Status::from)
    }};
}

#[tonic::async_trait]
impl Admin for AdminApi {
    async fn create_provider(
        &self,
        request: Request<api::CreateProviderRequest>,
    ) -> Result<Response<api::Provider>, Status> {
        admin_call!(self, request, |scope, req| providers::create(&self.0, scope, req))
    }

    async fn get_provider(&self, request: Request<api::GetProviderRequest>) -> Result<Response<api::Provider>, Status> {
        admin_call!(self, request, |scope, req| providers::get(&self.0, scope, req))
    }

    async fn list_providers(
        &self,
        request: Request<api::ListProvidersRequest>,
    ) -> Result<Response<api::ListProvidersResponse>, Status> {
        admin_call!(self, request, |scope, req| providers::list(&self.0, scope, req))
    }

    async fn update_provider(
        &self,
        request: Request<api::UpdateProviderRequest>,
    ) -> Result<Response<api::Provider>, Status> {
        admin_call!(self, request, |scope, req| providers::update(&self.0, scope, req))
    }

    async fn create_admin_token(
        &self,
        request: Request<api::CreateAdminTokenRequest>,
    ) -> Result<Response<api::CreateAdminTokenResponse>, Status> {
        admin_call!(self, request, |scope, req| providers::create_admin_token(
            &self.0, scope, req
        ))
    }

    async fn create_agent(
        &self,
        request: Request<api::CreateAgentRequest>,
    ) -> Result<Response<api::CreateAgentResponse>, Status> {
        admin_call!(self, request, |scope, req| agents::create(&self.0, scope, req))
    }

    async fn create_activation(
        &self,
        request: Request<api::CreateActivationRequest>,
    ) -> Result<Response<api::ActivationCredentials>, Status> {
        admin_call!(self, request, |scope, req| agents::create_activation(
            &self.0, scope, req
        ))
    }

    async fn list_agents(
        &self,
        request: Request<api::ListAgentsRequest>,
    ) -> Result<Response<api::ListAgentsResponse>, Status> {
        admin_call!(self, request, |scope, req| agents::list(&self.0, scope, req))
    }

    async fn update_agent(&self, request: Request<api::UpdateAgentRequest>) -> Result<Response<api::Agent>, Status> {
        let result = admin_call!(self, request, |scope, req| agents::update(&self.0, scope, req));
        // A RADIUS client follows its agent's enabled flag and policy at once.
        self.0.radius_changed.notify_one();
        result
    }

    async fn delete_agent(
        &self,
        request: Request<api::DeleteAgentRequest>,
    ) -> Result<Response<api::DeleteAgentResponse>, Status> {
        let result = admin_call!(self, request, |scope, req| agents::delete(&self.0, scope, req));
        self.0.radius_changed.notify_one();
        result
    }

    async fn create_user(&self, request: Request<api::CreateUserRequest>) -> Result<Response<api::User>, Status> {
        admin_call!(self, request, |scope, req| users::create(&self.0, scope, req))
    }

    async fn get_user(&self, request: Request<api::GetUserRequest>) -> Result<Response<api::User>, Status> {
        admin_call!(self, request, |scope, req| users::get(&self.0, scope, req))
    }

    async fn update_user(&self, request: Request<api::UpdateUserRequest>) -> Result<Response<api::User>, Status> {
        admin_call!(self, request, |scope, req| users::update(&self.0, scope, req))
    }

    async fn delete_user(
        &self,
        request: Request<api::DeleteUserRequest>,
    ) -> Result<Response<api::DeleteUserResponse>, Status> {
        admin_call!(self, request, |scope, req| users::delete(&self.0, scope, req))
    }

    async fn list_users(
        &self,
        request: Request<api::ListUsersRequest>,
    ) -> Result<Response<api::ListUsersResponse>, Status> {
        admin_call!(self, request, |scope, req| users::list(&self.0, scope, req))
    }

    async fn import_users(
        &self,
        request: Request<api::ImportUsersRequest>,
    ) -> Result<Response<api::ImportUsersResponse>, Status> {
        admin_call!(self, request, |scope, req| import::csv(&self.0, scope, req))
    }

    async fn enroll_factor(
        &self,
        request: Request<api::EnrollFactorRequest>,
    ) -> Result<Response<api::EnrollFactorResponse>, Status> {
        admin_call!(self, request, |scope, req| users::enroll_factor(&self.0, scope, req))
    }

    async fn resync_hotp(&self, request: Request<api::ResyncHotpRequest>) -> Result<Response<api::User>, Status> {
        admin_call!(self, request, |scope, req| users::resync_hotp(&self.0, scope, req))
    }

    async fn explain_login(
        &self,
        request: Request<api::ExplainLoginRequest>,
    ) -> Result<Response<api::LoginExplanation>, Status> {
        admin_call!(self, request, |scope, req| users::explain(&self.0, scope, req))
    }

    async fn create_radius_client(
        &self,
        request: Request<api::CreateRadiusClientRequest>,
    ) -> Result<Response<api::RadiusClient>, Status> {
        admin_call!(self, request, |scope, req| radius_clients::create(&self.0, scope, req))
    }

    async fn list_radius_clients(
        &self,
        request: Request<api::ListRadiusClientsRequest>,
    ) -> Result<Response<api::ListRadiusClientsResponse>, Status> {
        admin_call!(self, request, |scope, req| radius_clients::list(&self.0, scope, req))
    }

    async fn delete_radius_client(
        &self,
        request: Request<api::DeleteRadiusClientRequest>,
    ) -> Result<Response<api::DeleteRadiusClientResponse>, Status> {
        admin_call!(self, request, |scope, req| radius_clients::delete(&self.0, scope, req))
    }

    async fn list_audit(
        &self,
        request: Request<api::ListAuditRequest>,
    ) -> Result<Response<api::ListAuditResponse>, Status> {
        admin_call!(self, request, |scope, req| audit::list(&self.0, scope, req))
    }

    async fn import_ldap(
        &self,
        request: Request<api::ImportLdapRequest>,
    ) -> Result<Response<api::ImportUsersResponse>, Status> {
        admin_call!(self, request, |scope, req| import::ldap(&self.0, scope, req))
    }

    async fn rotate_webhook_secret(
        &self,
        request: Request<api::RotateWebhookSecretRequest>,
    ) -> Result<Response<api::WebhookSecret>, Status> {
        admin_call!(self, request, |scope, req| webhooks::rotate_secret(&self.0, scope, req))
    }

    async fn list_webhook_deliveries(
        &self,
        request: Request<api::ListWebhookDeliveriesRequest>,
    ) -> Result<Response<api::ListWebhookDeliveriesResponse>, Status> {
        admin_call!(self, request, |scope, req| webhooks::list_deliveries(
            &self.0, scope, req
        ))
    }

    async fn set_directory(
        &self,
        request: Request<api::SetDirectoryRequest>,
    ) -> Result<Response<api::Directory>, Status> {
        admin_call!(self, request, |scope, req| directory::set(&self.0, scope, req))
    }

    async fn get_directory(
        &self,
        request: Request<api::GetDirectoryRequest>,
    ) -> Result<Response<api::Directory>, Status> {
        admin_call!(self, request, |scope, req| directory::get(&self.0, scope, req))
    }
}
