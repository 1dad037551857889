//! The durable consumers that feed the ledger. The bus framework runs each
//! handler in a transaction that also records the envelope id, and acks only
//! after commit; the ledger's own keys make a replay a no-op besides.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use vigil_bus::{ConsumerSpec, Event, Handler, HandlerError, Received, envelope, streams::stream_for, subjects};
use vigil_core::{ChallengeId, DeliveryId, ProviderId, UserId};
use vigil_proto::{
    events::{
        AuthenticationKind, AuthenticationUsage, Channel, Envelope, ProviderCreated, TelephonyUsage, UserCreated,
        UserDeleted, UserStatusChanged,
    },
    from_timestamp, v1,
};

use crate::{
    error::RunError,
    ledger::{self, AuthKind, Authentication, NewProvider, Telephony, UsageModel, UserChange, UserStatus},
};

pub const PROVIDERS_DURABLE: &str = "billing-providers";
pub const USAGE_DURABLE: &str = "billing-usage";
pub const USERS_DURABLE: &str = "billing-users";
/// Every usage event, so a new kind is dead-lettered (visible) rather than
/// never delivered until billing learns it.
const USAGE_FILTER: &str = "vigil.usage.>";
const USERS_FILTER: &str = "vigil.user.>";

/// `vigil.provider.created` → `providers`.
pub fn providers_spec() -> Result<ConsumerSpec, RunError> {
    spec(PROVIDERS_DURABLE, subjects::PROVIDER_CREATED)
}

/// `vigil.usage.>` → `usage_ledger`.
pub fn usage_spec() -> Result<ConsumerSpec, RunError> {
    spec(USAGE_DURABLE, USAGE_FILTER)
}

/// `vigil.user.>` → `usage_ledger` (user status history).
pub fn users_spec() -> Result<ConsumerSpec, RunError> {
    spec(USERS_DURABLE, USERS_FILTER)
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
    /// One authentication per login: at load, one ledger insert per batch
    /// instead of one per event.
    const HANDLES_BATCHES: bool = true;

    async fn handle_batch(&self, tx: &mut PgConnection, events: &[Received<'_>]) -> Result<(), HandlerError> {
        let mut authentications = Vec::with_capacity(events.len());
        for event in events {
            if event.envelope.r#type == AuthenticationUsage::TYPE {
                authentications.push(authentication(event.envelope)?);
            } else {
                // Telephony (a few per SMS or call) and the unknown: one by one.
                self.handle(&mut *tx, *event).await?;
            }
        }
        let recorded = ledger::record_authentications(tx, &authentications).await?;
        let duplicates = authentications.len() as u64 - recorded;
        if duplicates > 0 {
            tracing::debug!(duplicates, "usage already in the ledger");
        }
        count_ledger_n("authentication", true, recorded);
        count_ledger_n("authentication", false, duplicates);
        Ok(())
    }

    async fn handle(&self, tx: &mut PgConnection, event: Received<'_>) -> Result<(), HandlerError> {
        let envelope = event.envelope;
        let (kind, recorded) = match envelope.r#type.as_str() {
            AuthenticationUsage::TYPE => (
                "authentication",
                ledger::record_authentication(tx, &authentication(envelope)?).await?,
            ),
            TelephonyUsage::TYPE => ("telephony", ledger::record_telephony(tx, &telephony(envelope)?).await?),
            other => {
                return Err(HandlerError::Reject(format!(
                    "billing does not know usage events of type `{other}` (subject {})",
                    event.subject
                )));
            }
        };
        if !recorded {
            tracing::debug!(event_id = %envelope.id, "usage already in the ledger");
        }
        count_ledger(kind, recorded);
        Ok(())
    }
}

pub struct UserEvents;

impl Handler for UserEvents {
    async fn handle(&self, tx: &mut PgConnection, event: Received<'_>) -> Result<(), HandlerError> {
        let change = user_change(event.envelope).map_err(|error| match error {
            HandlerError::Reject(why) => HandlerError::Reject(format!("{why} (subject {})", event.subject)),
            retry => retry,
        })?;
        let recorded = ledger::record_user_change(tx, &change).await?;
        if !recorded {
            tracing::debug!(event_id = %change.event_id, "user event already in the ledger");
        }
        count_ledger("user_change", recorded);
        Ok(())
    }
}

/// Counts a ledger write: `metered`, or `duplicate` when the event id was
/// already there (the ledger's own guard, behind the consumer's).
fn count_ledger(kind: &'static str, recorded: bool) {
    count_ledger_n(kind, recorded, 1);
}

fn count_ledger_n(kind: &'static str, recorded: bool, n: u64) {
    if n == 0 {
        return;
    }
    let result = if recorded { "metered" } else { "duplicate" };
    metrics::counter!("vigil_billing_ledger_events_total", "kind" => kind, "result" => result).increment(n);
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

/// The event's own time, else the envelope's.
fn occurred_at(
    event_time: Option<&prost_types::Timestamp>,
    envelope: &Envelope,
    what: &str,
) -> Result<DateTime<Utc>, HandlerError> {
    from_timestamp(event_time)
        .or_else(|| from_timestamp(envelope.time.as_ref()))
        .map(utc)
        .ok_or_else(|| HandlerError::Reject(format!("{what} carries no time")))
}

fn authentication(envelope: &Envelope) -> Result<Authentication, HandlerError> {
    let event: AuthenticationUsage = envelope::unwrap(envelope)?;
    let occurred_at = occurred_at(event.occurred_at.as_ref(), envelope, "authentication usage")?;
    let user_id =
        UserId::parse(&event.user_id).map_err(|e| HandlerError::Reject(format!("user id {:?}: {e}", event.user_id)))?;
    let challenge_id = ChallengeId::parse(&event.challenge_id)
        .map_err(|e| HandlerError::Reject(format!("challenge id {:?}: {e}", event.challenge_id)))?;
    // Producers from before `kind` existed sent only issued challenges.
    let kind = match AuthenticationKind::try_from(event.kind) {
        Ok(AuthenticationKind::Challenge | AuthenticationKind::Unspecified) => AuthKind::Challenge,
        Ok(AuthenticationKind::TrustedNetwork) => AuthKind::TrustedNetwork,
        Ok(AuthenticationKind::Bypass) => AuthKind::Bypass,
        Ok(AuthenticationKind::Remembered) => AuthKind::Remembered,
        Err(_) => {
            return Err(HandlerError::Reject(format!(
                "unknown authentication kind {}",
                event.kind
            )));
        }
    };
    if event.billable != kind.billable() && event.kind != AuthenticationKind::Unspecified as i32 {
        // The kind decides (README, "Billing definition"); the flag is advisory.
        tracing::warn!(
            kind = kind.as_str(),
            billable = event.billable,
            "authentication's billable flag disagrees with its kind; the kind decides"
        );
    }
    let factor = v1::Factor::try_from(event.factor)
        .map(|f| f.as_str_name().trim_start_matches("FACTOR_").to_ascii_lowercase())
        .unwrap_or_else(|_| "unknown".into());
    Ok(Authentication {
        event_id: envelope::envelope_id(envelope)?,
        provider_id: canonical_provider_id(&envelope.provider_id)?,
        user_id: user_id.to_string(),
        challenge_id: challenge_id.to_string(),
        kind,
        factor,
        occurred_at,
    })
}

fn telephony(envelope: &Envelope) -> Result<Telephony, HandlerError> {
    let event: TelephonyUsage = envelope::unwrap(envelope)?;
    let occurred_at = occurred_at(event.occurred_at.as_ref(), envelope, "telephony usage")?;
    let delivery_id = DeliveryId::parse(&event.delivery_id)
        .map_err(|e| HandlerError::Reject(format!("delivery id {:?}: {e}", event.delivery_id)))?;
    // A delivery may belong to no challenge (a test message); keep what is valid.
    let challenge_id = ChallengeId::parse(&event.challenge_id)
        .map(|id| id.to_string())
        .unwrap_or_default();
    let channel = Channel::try_from(event.channel)
        .map(|c| c.as_str_name().trim_start_matches("CHANNEL_").to_ascii_lowercase())
        .unwrap_or_else(|_| "unknown".into());
    let country = event.destination_country.trim().to_ascii_uppercase();
    if !(country.is_empty() || (country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase()))) {
        return Err(HandlerError::Reject(format!(
            "destination country {:?} is not ISO 3166-1 alpha-2",
            event.destination_country
        )));
    }
    Ok(Telephony {
        event_id: envelope::envelope_id(envelope)?,
        provider_id: canonical_provider_id(&envelope.provider_id)?,
        delivery_id: delivery_id.to_string(),
        challenge_id,
        channel,
        destination_country: country,
        carrier: event.carrier,
        sms_segments: i64::from(event.sms_segments),
        voice_seconds: i64::from(event.voice_seconds),
        occurred_at,
    })
}

fn user_status(value: i32, what: &str) -> Result<Option<UserStatus>, HandlerError> {
    match v1::UserStatus::try_from(value) {
        Ok(v1::UserStatus::Enabled) => Ok(Some(UserStatus::Enabled)),
        Ok(v1::UserStatus::Disabled) => Ok(Some(UserStatus::Disabled)),
        Ok(v1::UserStatus::BlockedForFraud) => Ok(Some(UserStatus::BlockedForFraud)),
        Ok(v1::UserStatus::Unspecified) => Ok(None),
        Err(_) => Err(HandlerError::Reject(format!("{what}: unknown user status {value}"))),
    }
}

fn user_change(envelope: &Envelope) -> Result<UserChange, HandlerError> {
    let parse_user = |text: &str| {
        UserId::parse(text)
            .map(|id| id.to_string())
            .map_err(|e| HandlerError::Reject(format!("user id {text:?}: {e}")))
    };
    let (user_id, event, status, previous, time) = match envelope.r#type.as_str() {
        UserCreated::TYPE => {
            let e: UserCreated = envelope::unwrap(envelope)?;
            let status = user_status(e.status, "user created")?
                .ok_or_else(|| HandlerError::Reject("user created without a status".into()))?;
            (parse_user(&e.user_id)?, "created", status, None, e.occurred_at)
        }
        UserStatusChanged::TYPE => {
            let e: UserStatusChanged = envelope::unwrap(envelope)?;
            let status = user_status(e.status, "user status changed")?
                .ok_or_else(|| HandlerError::Reject("user status changed to no status".into()))?;
            let previous = user_status(e.previous, "user status changed")?;
            (
                parse_user(&e.user_id)?,
                "status_changed",
                status,
                previous,
                e.occurred_at,
            )
        }
        UserDeleted::TYPE => {
            let e: UserDeleted = envelope::unwrap(envelope)?;
            (
                parse_user(&e.user_id)?,
                "deleted",
                UserStatus::Deleted,
                None,
                e.occurred_at,
            )
        }
        other => {
            return Err(HandlerError::Reject(format!(
                "billing does not know user events of type `{other}`"
            )));
        }
    };
    Ok(UserChange {
        event_id: envelope::envelope_id(envelope)?,
        provider_id: canonical_provider_id(&envelope.provider_id)?,
        user_id,
        event,
        status,
        previous,
        occurred_at: occurred_at(time.as_ref(), envelope, "user event")?,
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
