//! The two durable consumers that feed the ledger. The bus framework runs
//! each handler in a transaction that also records the envelope id, and acks
//! only after commit; the ledger's own keys make a replay a no-op besides.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use vigil_bus::{ConsumerSpec, Event, Handler, HandlerError, Received, envelope, streams::stream_for, subjects};
use vigil_core::{ChallengeId, ProviderId, UserId};
use vigil_proto::{
    events::{AuthenticationUsage, Envelope, ProviderCreated},
    from_timestamp, v1,
};

use crate::{
    error::RunError,
    ledger::{self, Authentication, NewProvider, UsageModel},
};

pub const PROVIDERS_DURABLE: &str = "billing-providers";
pub const USAGE_DURABLE: &str = "billing-usage";
/// Every usage event, so a new kind is dead-lettered (visible) rather than
/// never delivered until billing learns it.
const USAGE_FILTER: &str = "vigil.usage.>";

/// `vigil.provider.created` → `providers`.
pub fn providers_spec() -> Result<ConsumerSpec, RunError> {
    spec(PROVIDERS_DURABLE, subjects::PROVIDER_CREATED)
}

/// `vigil.usage.>` → `usage_ledger`.
pub fn usage_spec() -> Result<ConsumerSpec, RunError> {
    spec(USAGE_DURABLE, USAGE_FILTER)
}

/// The stream comes from the bus's one declaration, never a second copy.
fn spec(durable: &str, filter: &'static str) -> Result<ConsumerSpec, RunError> {
    let stream = stream_for(filter).ok_or(RunError::NoStream(filter))?;
    Ok(ConsumerSpec::new(durable, stream, filter))
}

pub struct ProviderEvents;

impl Handler for ProviderEvents {
    async fn handle(&self, tx: &mut PgConnection, event: Received<'_>) -> Result<(), HandlerError> {
        let provider = new_provider(event.envelope)?;
        if ledger::insert_provider(tx, &provider).await? {
            tracing::info!(provider_id = %provider.provider_id, usage_model = provider.usage_model.as_str(), "provider recorded");
        } else {
            tracing::debug!(provider_id = %provider.provider_id, "provider already known; first announcement kept");
        }
        Ok(())
    }
}

pub struct UsageEvents;

impl Handler for UsageEvents {
    async fn handle(&self, tx: &mut PgConnection, event: Received<'_>) -> Result<(), HandlerError> {
        let envelope = event.envelope;
        match envelope.r#type.as_str() {
            AuthenticationUsage::TYPE => {
                let usage = authentication(envelope)?;
                if !ledger::record_authentication(tx, &usage).await? {
                    tracing::debug!(event_id = %usage.event_id, "authentication already in the ledger");
                }
                Ok(())
            }
            other => Err(HandlerError::Reject(format!(
                "billing does not know usage events of type `{other}` (subject {})",
                event.subject
            ))),
        }
    }
}

fn new_provider(envelope: &Envelope) -> Result<NewProvider, HandlerError> {
    let event: ProviderCreated = envelope::unwrap(envelope)?;
    let provider_id = canonical_provider_id(&event.provider_id)?;
    // The envelope names the provider too; a disagreement is a producer bug
    // that must not silently create the wrong tenant.
    if !envelope.provider_id.is_empty() && canonical_provider_id(&envelope.provider_id)? != provider_id {
        return Err(HandlerError::Reject(format!(
            "envelope is for provider {} but the event creates {provider_id}",
            envelope.provider_id
        )));
    }
    let usage_model = match v1::UsageModel::try_from(event.usage_model) {
        Ok(v1::UsageModel::PerEnabledUser) => UsageModel::PerEnabledUser,
        Ok(v1::UsageModel::PerAuthentication) => UsageModel::PerAuthentication,
        Ok(v1::UsageModel::Unspecified) | Err(_) => {
            return Err(HandlerError::Reject(format!(
                "provider {provider_id} has no valid usage model ({})",
                event.usage_model
            )));
        }
    };
    Ok(NewProvider {
        provider_id,
        name: event.name,
        usage_model,
        created_at: from_timestamp(envelope.time.as_ref()).map(utc),
    })
}

fn authentication(envelope: &Envelope) -> Result<Authentication, HandlerError> {
    let event: AuthenticationUsage = envelope::unwrap(envelope)?;
    let occurred_at = from_timestamp(event.occurred_at.as_ref())
        .or_else(|| from_timestamp(envelope.time.as_ref()))
        .map(utc)
        .ok_or_else(|| HandlerError::Reject("authentication usage carries no time".into()))?;
    let user_id =
        UserId::parse(&event.user_id).map_err(|e| HandlerError::Reject(format!("user id {:?}: {e}", event.user_id)))?;
    let challenge_id = ChallengeId::parse(&event.challenge_id)
        .map_err(|e| HandlerError::Reject(format!("challenge id {:?}: {e}", event.challenge_id)))?;
    Ok(Authentication {
        event_id: envelope::envelope_id(envelope)?,
        provider_id: canonical_provider_id(&envelope.provider_id)?,
        user_id: user_id.to_string(),
        challenge_id: challenge_id.to_string(),
        occurred_at,
    })
}

/// Canonical text of a provider id, so the API's lookups match whatever
/// casing the producer used.
fn canonical_provider_id(text: &str) -> Result<String, HandlerError> {
    ProviderId::parse(text)
        .map(|id| id.to_string())
        .map_err(|e| HandlerError::Reject(format!("provider id {text:?}: {e}")))
}

fn utc(time: SystemTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(time)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use vigil_bus::envelope::wrap;

    use super::*;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).single().unwrap_or_default()
    }

    fn usage_event(occurred_at: Option<DateTime<Utc>>) -> AuthenticationUsage {
        AuthenticationUsage {
            challenge_id: ChallengeId::new().to_string(),
            user_id: UserId::new().to_string(),
            factor: v1::Factor::Sms as i32,
            occurred_at: occurred_at.map(|t| vigil_proto::to_timestamp(t.into())),
            kind: vigil_proto::events::AuthenticationKind::Challenge as i32,
            billable: true,
        }
    }

    fn is_reject<T: std::fmt::Debug>(result: Result<T, HandlerError>) -> bool {
        matches!(result, Err(HandlerError::Reject(_)))
    }

    #[test]
    fn provider_created_becomes_a_provider_row() -> Result<(), HandlerError> {
        let id = ProviderId::new().to_string();
        let event = ProviderCreated {
            provider_id: id.to_uppercase().replacen("PRV", "prv", 1),
            name: "Acme".into(),
            usage_model: v1::UsageModel::PerAuthentication as i32,
        };
        let provider = new_provider(&wrap(&id, &event, at(2025, 3, 1).into()))?;
        assert_eq!(provider.provider_id, id, "stored in canonical form");
        assert_eq!(provider.usage_model, UsageModel::PerAuthentication);
        assert_eq!(provider.created_at, Some(at(2025, 3, 1)));
        Ok(())
    }

    #[test]
    fn refuses_providers_it_cannot_bill() {
        let id = ProviderId::new().to_string();
        let event = |provider_id: &str, usage_model: i32| ProviderCreated {
            provider_id: provider_id.into(),
            name: "Acme".into(),
            usage_model,
        };
        let now = SystemTime::now();
        let per_auth = v1::UsageModel::PerAuthentication as i32;
        assert!(is_reject(new_provider(&wrap(&id, &event(&id, 0), now))));
        assert!(is_reject(new_provider(&wrap(&id, &event(&id, 99), now))));
        assert!(is_reject(new_provider(&wrap(&id, &event("acme", per_auth), now))));
        let other = ProviderId::new().to_string();
        assert!(is_reject(new_provider(&wrap(&other, &event(&id, per_auth), now))));
        // A usage payload on the provider subject is not a provider.
        assert!(is_reject(new_provider(&wrap(&id, &usage_event(None), now))));
    }

    #[test]
    fn occurred_at_falls_back_to_the_envelope_time() -> Result<(), HandlerError> {
        let id = ProviderId::new().to_string();
        let from_payload = wrap(&id, &usage_event(Some(at(2025, 2, 1))), at(2025, 3, 1).into());
        assert_eq!(authentication(&from_payload)?.occurred_at, at(2025, 2, 1));
        let from_envelope = wrap(&id, &usage_event(None), at(2025, 3, 1).into());
        let usage = authentication(&from_envelope)?;
        assert_eq!(usage.occurred_at, at(2025, 3, 1));
        assert_eq!(usage.event_id.to_string(), from_envelope.id);
        assert_eq!(usage.provider_id, id);

        let mut timeless = from_envelope;
        timeless.time = None;
        assert!(is_reject(authentication(&timeless)));
        Ok(())
    }

    #[test]
    fn refuses_usage_without_valid_ids() {
        let now = SystemTime::now();
        let id = ProviderId::new().to_string();
        assert!(is_reject(authentication(&wrap("acme", &usage_event(None), now))));
        let mut event = usage_event(None);
        event.user_id = "alice".into();
        assert!(is_reject(authentication(&wrap(&id, &event, now))));
        let mut event = usage_event(None);
        event.challenge_id = String::new();
        assert!(is_reject(authentication(&wrap(&id, &event, now))));
    }

    #[test]
    fn consumers_read_the_declared_streams() -> Result<(), RunError> {
        assert_eq!(providers_spec()?.stream, "VIGIL_PROVIDER");
        let usage = usage_spec()?;
        assert_eq!(
            (usage.stream, usage.filter_subject.as_str()),
            ("VIGIL_USAGE", "vigil.usage.>")
        );
        Ok(())
    }
}
