//! Agent registration with one-time activation credentials. The operator
//! generates a login and password (valid 10 minutes, usable once, stored as
//! an argon2id hash); the agent trades them for its own key, shown once.
//! Expired, reused, replaced and wrong credentials get distinct errors, and
//! every attempt is audited.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rand::{Rng, distr::Alphanumeric};
use secrecy::ExposeSecret;
use tonic::{Request, Response, Status};
use vigil_core::{AgentId, ProviderId};
use vigil_proto::v1::{self as api, agent_registration_server::AgentRegistration};

use crate::{app::Gateway, audit, auth::new_agent_key, error::GatewayError, store};

pub struct Registration(pub Arc<Gateway>);

pub fn agent_kind(kind: i32) -> Result<&'static str, GatewayError> {
    match api::AgentKind::try_from(kind).unwrap_or(api::AgentKind::Unspecified) {
        api::AgentKind::Rdp => Ok("rdp"),
        api::AgentKind::Radius => Ok("radius"),
        api::AgentKind::App => Ok("app"),
        api::AgentKind::Unspecified => Err(GatewayError::InvalidArgument("kind must be rdp, radius or app".into())),
    }
}

pub fn agent_name(name: &str) -> Result<&str, GatewayError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(GatewayError::InvalidArgument("name must be 1 to 200 characters".into()));
    }
    Ok(name)
}

fn random(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// New activation credentials for `provider`; the previous unused ones stop working.
pub async fn create_activation(
    gateway: &Gateway,
    provider: uuid::Uuid,
    actor: &str,
) -> Result<api::ActivationCredentials, GatewayError> {
    let login = format!("act_{}", random(16).to_lowercase());
    let password = random(24);
    let hash = gateway
        .passwords
        .hash(&mut rand::rng(), password.as_bytes())
        .map_err(|e| GatewayError::Secret(e.to_string()))?;
    let now = gateway.clock.now();
    let expires_at = now + gateway.activation_ttl;
    let mut tx = gateway.pool.begin().await?;
    store::replace_activation(&mut tx, provider, &login, hash.as_str(), now, expires_at).await?;
    let target = format!("activation:{login}");
    audit::record(
        &mut tx,
        audit::Event::ok(provider, "activation_created", actor, &target),
        now,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(provider_id = %ProviderId::from_uuid(provider), login, "activation credentials created");
    Ok(api::ActivationCredentials {
        login,
        password,
        expires_at: Some(vigil_proto::to_timestamp(expires_at.into())),
    })
}

/// Why credentials that verified cannot be used, checked in this order.
fn unusable(row: &store::ActivationRow, now: DateTime<Utc>) -> Option<(&'static str, &'static str)> {
    if row.used_at.is_some() {
        Some((
            "activation_used",
            "these activation credentials were already used; generate new ones",
        ))
    } else if row.revoked_at.is_some() {
        Some((
            "activation_replaced",
            "newer activation credentials replaced these; use the latest ones",
        ))
    } else if now >= row.expires_at {
        Some((
            "activation_expired",
            "these activation credentials expired (they last 10 minutes); generate new ones",
        ))
    } else {
        None
    }
}

impl Registration {
    async fn register(
        &self,
        req: api::RegisterAgentRequest,
        source: &str,
    ) -> Result<api::RegisterAgentResponse, GatewayError> {
        let kind = agent_kind(req.kind)?;
        let name = agent_name(&req.name)?.to_owned();
        let gateway = &self.0;
        let now = gateway.clock.now();
        let mut tx = gateway.pool.begin().await?;
        // Locked: two agents racing with the same credentials cannot both win.
        let row = store::get_activation(&mut tx, req.login.trim()).await?;
        let verified = match &row {
            Some(row) => gateway
                .passwords
                .verify(req.password.as_bytes(), &row.password_hash)
                .map_err(|e| GatewayError::Secret(e.to_string()))?,
            None => {
                // Same work for an unknown login, so timing does not tell logins apart.
                gateway.passwords.verify_dummy(req.password.as_bytes());
                false
            }
        };
        let provider = row.as_ref().map(|r| r.provider_id);
        let actor = format!("activation:{}", req.login.trim());
        // An attempt by whoever holds (or guesses) these credentials; the
        // password itself is never written.
        let attempt = |outcome| audit::Event {
            provider_id: provider,
            event: "agent_registration",
            outcome,
            actor: &actor,
            source,
            ..Default::default()
        };
        let Some(row) = row.filter(|_| verified) else {
            audit::record(&mut tx, attempt("activation_invalid"), now).await?;
            tx.commit().await?;
            return Err(GatewayError::Unauthenticated);
        };
        if let Some((code, message)) = unusable(&row, now) {
            audit::record(&mut tx, attempt(code), now).await?;
            tx.commit().await?;
            return Err(GatewayError::FailedPrecondition(format!("{code}: {message}")));
        }
        let agent_id = AgentId::new();
        let (key, key_hash, key_ciphertext) = new_agent_key(gateway, agent_id)?;
        store::insert_agent(
            &mut tx,
            store::NewAgent {
                id: agent_id.as_uuid(),
                provider_id: row.provider_id,
                name: &name,
                kind,
                key_hash: &key_hash,
                key_ciphertext: &key_ciphertext,
                now,
            },
        )
        .await?;
        store::use_activation(&mut tx, &row.login, agent_id.as_uuid(), now).await?;
        let (target, detail) = (agent_id.to_string(), format!("name={name:?} kind={kind}"));
        let registered = audit::Event {
            target: &target,
            detail: &detail,
            ..attempt("ok")
        };
        audit::record(&mut tx, registered, now).await?;
        tx.commit().await?;
        tracing::info!(%agent_id, kind, "agent registered with activation credentials");
        Ok(api::RegisterAgentResponse {
            agent_id: agent_id.to_string(),
            provider_id: ProviderId::from_uuid(row.provider_id).to_string(),
            agent_key: key.expose_secret().to_owned(),
        })
    }
}

#[tonic::async_trait]
impl AgentRegistration for Registration {
    async fn register(
        &self,
        request: Request<api::RegisterAgentRequest>,
    ) -> Result<Response<api::RegisterAgentResponse>, Status> {
        let source = request.remote_addr().map(|a| a.ip().to_string()).unwrap_or_default();
        match Registration::register(self, request.into_inner(), &source).await {
            Ok(response) => Ok(Response::new(response)),
            Err(GatewayError::Unauthenticated) => Err(Status::unauthenticated(
                "activation_invalid: wrong activation login or password",
            )),
            Err(other) => Err(other.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn row(now: DateTime<Utc>) -> store::ActivationRow {
        store::ActivationRow {
            login: "act_x".into(),
            provider_id: uuid::Uuid::now_v7(),
            password_hash: String::new(),
            expires_at: now + Duration::minutes(10),
            used_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn unusable_credentials_say_why() {
        let now = Utc::now();
        assert_eq!(unusable(&row(now), now), None);
        let expired = store::ActivationRow {
            expires_at: now,
            ..row(now)
        };
        assert_eq!(unusable(&expired, now).map(|u| u.0), Some("activation_expired"));
        let used = store::ActivationRow {
            used_at: Some(now),
            expires_at: now - Duration::minutes(1),
            ..row(now)
        };
        assert_eq!(unusable(&used, now).map(|u| u.0), Some("activation_used"));
        let replaced = store::ActivationRow {
            revoked_at: Some(now),
            ..row(now)
        };
        assert_eq!(unusable(&replaced, now).map(|u| u.0), Some("activation_replaced"));
    }
}
