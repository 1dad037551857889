//! Rows and challenge-service records to the admin API's wire types.

use std::time::SystemTime;

use vigil_core::{AgentId, ProviderId};
use vigil_proto::{
    rpc,
    v1::{self as api, UsageModel},
};

use crate::{error::GatewayError, store};

pub fn usage_model_name(model: UsageModel) -> Option<&'static str> {
    match model {
        UsageModel::PerEnabledUser => Some("per_enabled_user"),
        UsageModel::PerAuthentication => Some("per_authentication"),
        UsageModel::Unspecified => None,
    }
}

pub fn provider(row: &store::ProviderRow) -> api::Provider {
    let model = match row.usage_model.as_str() {
        "per_enabled_user" => UsageModel::PerEnabledUser,
        _ => UsageModel::PerAuthentication,
    };
    api::Provider {
        id: ProviderId::from_uuid(row.id).to_string(),
        name: row.name.clone(),
        usage_model: model as i32,
        created_at: Some(vigil_proto::to_timestamp(SystemTime::from(row.created_at))),
        block_user_on_fraud: row.block_user_on_fraud,
        fraud_webhook_url: row.fraud_webhook_url.clone(),
        trusted_networks: row.trusted_networks.clone(),
        sms_cap_per_hour: u32::try_from(row.caps.sms_cap_per_hour).unwrap_or(0),
        voice_cap_per_hour: u32::try_from(row.caps.voice_cap_per_hour).unwrap_or(0),
        cap_prefix_digits: u32::try_from(row.caps.cap_prefix_digits).unwrap_or(0),
        has_webhook_secret: row.has_webhook_secret,
        sms_template: row.sms_template.clone(),
        voice_template: row.voice_template.clone(),
    }
}

pub fn agent(row: &store::AgentRow) -> api::Agent {
    let kind = match row.kind.as_str() {
        "rdp" => api::AgentKind::Rdp,
        "radius" => api::AgentKind::Radius,
        _ => api::AgentKind::App,
    };
    api::Agent {
        id: AgentId::from_uuid(row.id).to_string(),
        provider_id: ProviderId::from_uuid(row.provider_id).to_string(),
        name: row.name.clone(),
        kind: kind as i32,
        enabled: row.enabled,
        require_user_match: row.require_user_match,
        remember_minutes: u32::try_from(row.remember_minutes).unwrap_or(0),
        created_at: Some(vigil_proto::to_timestamp(SystemTime::from(row.created_at))),
    }
}

pub fn user(provider_id: &str, u: rpc::UserRecord) -> api::User {
    api::User {
        id: u.user_id,
        provider_id: provider_id.to_owned(),
        username: u.username,
        display_name: u.display_name,
        status: u.status,
        factors: u
            .factors
            .into_iter()
            .map(|f| api::FactorInfo {
                factor: f.factor,
                destination: f.masked_destination,
            })
            .collect(),
        phone: u.phone,
        email: u.email,
        default_factor: u.default_factor,
        has_pin: u.has_pin,
        bypass_until: u.bypass_until,
        bypass_remaining: u.bypass_remaining,
        locked_until: u.locked_until,
    }
}

pub fn parse_provider(id: &str) -> Result<ProviderId, GatewayError> {
    ProviderId::parse(id).map_err(|e| GatewayError::InvalidArgument(format!("provider_id: {e}")))
}

pub fn parse_agent(id: &str) -> Result<AgentId, GatewayError> {
    AgentId::parse(id).map_err(|e| GatewayError::InvalidArgument(format!("agent_id: {e}")))
}
