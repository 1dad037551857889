//! The billing tables' writes and the provider lookups: providers as billing
//! knows them, and the usage ledger. Every write is idempotent (keyed by the
//! envelope id), so replaying an event never changes a total.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor, Row};
use uuid::Uuid;

/// How a provider is billed; fixed when the provider is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageModel {
    PerEnabledUser,
    PerAuthentication,
}

impl UsageModel {
    /// The stored (and JSON) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PerEnabledUser => "per_enabled_user",
            Self::PerAuthentication => "per_authentication",
        }
    }

    pub fn from_column(text: &str) -> Result<Self, sqlx::Error> {
        match text {
            "per_enabled_user" => Ok(Self::PerEnabledUser),
            "per_authentication" => Ok(Self::PerAuthentication),
            other => Err(sqlx::Error::Decode(
                format!("unknown usage model {other:?} in providers").into(),
            )),
        }
    }
}

/// A provider as announced by `vigil.provider.created`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProvider {
    /// Canonical `prv_…` form.
    pub provider_id: String,
    pub name: String,
    pub usage_model: UsageModel,
    /// `None` when the event carried no time: the database's clock is used.
    pub created_at: Option<DateTime<Utc>>,
}

/// How an authentication was settled; only [`AuthKind::Challenge`] is billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    Challenge,
    TrustedNetwork,
    Bypass,
    Remembered,
}

impl AuthKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Challenge => "challenge",
            Self::TrustedNetwork => "trusted_network",
            Self::Bypass => "bypass",
            Self::Remembered => "remembered",
        }
    }

    /// The billing definition: a challenge issued to a user, nothing else.
    pub fn billable(self) -> bool {
        self == Self::Challenge
    }
}

/// One authentication (billable or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    /// The envelope id: a second delivery of the same event is a no-op.
    pub event_id: Uuid,
    pub provider_id: String,
    pub user_id: String,
    pub challenge_id: String,
    pub kind: AuthKind,
    pub factor: String,
    pub occurred_at: DateTime<Utc>,
}

/// The cost side of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Telephony {
    pub event_id: Uuid,
    pub provider_id: String,
    pub delivery_id: String,
    pub challenge_id: String,
    pub channel: String,
    pub destination_country: String,
    pub carrier: String,
    pub sms_segments: i64,
    pub voice_seconds: i64,
    pub occurred_at: DateTime<Utc>,
}

impl Telephony {
    /// Calls are billed per started minute.
    pub fn voice_minutes(&self) -> i64 {
        (self.voice_seconds + 59) / 60
    }
}

/// A user's status from an event on: what "enabled in a period" is derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Enabled,
    Disabled,
    BlockedForFraud,
    Deleted,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "enabled",
            Self::Disabled => "disabled",
            Self::BlockedForFraud => "blocked_for_fraud",
            Self::Deleted => "deleted",
        }
    }

    pub fn from_column(text: &str) -> Result<Self, sqlx::Error> {
        match text {
            "enabled" => Ok(Self::Enabled),
            "disabled" => Ok(Self::Disabled),
            "blocked_for_fraud" => Ok(Self::BlockedForFraud),
            "deleted" => Ok(Self::Deleted),
            other => Err(sqlx::Error::Decode(format!("unknown user status {other:?}").into())),
        }
    }
}

/// `vigil.user.created` / `status_changed` / `deleted`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserChange {
    pub event_id: Uuid,
    pub provider_id: String,
    pub user_id: String,
    /// `created`, `status_changed` or `deleted`.
    pub event: &'static str,
    pub status: UserStatus,
    /// The status just before, when the event says so.
    pub previous: Option<UserStatus>,
    pub occurred_at: DateTime<Utc>,
}

/// Records a provider; `false` if it was known already. The first
/// announcement wins: a provider's usage model never changes.
pub async fn insert_provider(conn: &mut PgConnection, provider: &NewProvider) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO providers (provider_id, name, usage_model, created_at) \
         VALUES ($1, $2, $3, COALESCE($4, now())) \
         ON CONFLICT (provider_id) DO NOTHING",
    )
    .bind(&provider.provider_id)
    .bind(&provider.name)
    .bind(provider.usage_model.as_str())
    .bind(provider.created_at)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Adds one authentication; `false` if this event was recorded before.
pub async fn record_authentication(conn: &mut PgConnection, usage: &Authentication) -> Result<bool, sqlx::Error> {
    Ok(record_authentications(conn, std::slice::from_ref(usage)).await? == 1)
}

/// Adds authentications in one statement; returns how many were new (the
/// others were recorded before).
pub async fn record_authentications(conn: &mut PgConnection, usage: &[Authentication]) -> Result<u64, sqlx::Error> {
    if usage.is_empty() {
        return Ok(0);
    }
    let column = |f: fn(&Authentication) -> String| usage.iter().map(f).collect::<Vec<_>>();
    let inserted = sqlx::query(
        "INSERT INTO usage_ledger (event_id, provider_id, kind, user_id, challenge_id, occurred_at, \
           auth_kind, billable, factor) \
         SELECT e, p, 'authentication', u, c, o, k, b, f \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::bool[], \
           $8::text[]) AS t (e, p, u, c, o, k, b, f) \
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(usage.iter().map(|u| u.event_id).collect::<Vec<_>>())
    .bind(column(|u| u.provider_id.clone()))
    .bind(column(|u| u.user_id.clone()))
    .bind(column(|u| u.challenge_id.clone()))
    .bind(usage.iter().map(|u| u.occurred_at).collect::<Vec<_>>())
    .bind(column(|u| u.kind.as_str().to_owned()))
    .bind(usage.iter().map(|u| u.kind.billable()).collect::<Vec<_>>())
    .bind(column(|u| u.factor.clone()))
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted)
}

/// Adds a telephony cost line; `false` if this event was recorded before.
pub async fn record_telephony(conn: &mut PgConnection, usage: &Telephony) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO usage_ledger (event_id, provider_id, kind, challenge_id, occurred_at, delivery_id, \
           channel, destination_country, carrier, sms_segments, voice_seconds, voice_minutes, billable) \
         VALUES ($1, $2, 'telephony', $3, $4, $5, $6, $7, $8, $9, $10, $11, TRUE) \
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(usage.event_id)
    .bind(&usage.provider_id)
    .bind(&usage.challenge_id)
    .bind(usage.occurred_at)
    .bind(&usage.delivery_id)
    .bind(&usage.channel)
    .bind(&usage.destination_country)
    .bind(&usage.carrier)
    .bind(usage.sms_segments)
    .bind(usage.voice_seconds)
    .bind(usage.voice_minutes())
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Adds a user status event; `false` if this event was recorded before.
pub async fn record_user_change(conn: &mut PgConnection, change: &UserChange) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO usage_ledger (event_id, provider_id, kind, user_id, occurred_at, user_event, \
           user_status, previous_status) \
         VALUES ($1, $2, 'user', $3, $4, $5, $6, $7) \
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(change.event_id)
    .bind(&change.provider_id)
    .bind(&change.user_id)
    .bind(change.occurred_at)
    .bind(change.event)
    .bind(change.status.as_str())
    .bind(change.previous.map(UserStatus::as_str))
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// What billing knows of a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderInfo {
    /// `None` while usage has arrived but the provider event has not.
    pub usage_model: Option<UsageModel>,
    pub created_at: Option<DateTime<Utc>>,
}

/// `None` if billing has never heard of the provider (neither its creation nor any usage).
pub async fn provider<'e>(db: impl PgExecutor<'e>, provider_id: &str) -> Result<Option<ProviderInfo>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT \
           (SELECT usage_model FROM providers WHERE provider_id = $1) AS usage_model, \
           (SELECT created_at FROM providers WHERE provider_id = $1) AS created_at, \
           EXISTS (SELECT 1 FROM providers WHERE provider_id = $1) \
             OR EXISTS (SELECT 1 FROM usage_ledger WHERE provider_id = $1) AS known",
    )
    .bind(provider_id)
    .fetch_one(db)
    .await?;
    if !row.try_get::<bool, _>("known")? {
        return Ok(None);
    }
    let usage_model = row
        .try_get::<Option<String>, _>("usage_model")?
        .as_deref()
        .map(UsageModel::from_column)
        .transpose()?;
    Ok(Some(ProviderInfo {
        usage_model,
        created_at: row.try_get("created_at")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_model_spellings_agree() {
        for model in [UsageModel::PerEnabledUser, UsageModel::PerAuthentication] {
            assert_eq!(UsageModel::from_column(model.as_str()).ok(), Some(model));
            let json = serde_json::to_string(&model).ok();
            assert_eq!(json, Some(format!("\"{}\"", model.as_str())));
        }
        assert!(UsageModel::from_column("per_seat").is_err());
    }

    #[test]
    fn user_status_spellings_agree() {
        for status in [
            UserStatus::Enabled,
            UserStatus::Disabled,
            UserStatus::BlockedForFraud,
            UserStatus::Deleted,
        ] {
            assert_eq!(UserStatus::from_column(status.as_str()).ok(), Some(status));
        }
    }

    #[test]
    fn calls_are_billed_per_started_minute() {
        let call = |voice_seconds| Telephony {
            event_id: Uuid::nil(),
            provider_id: String::new(),
            delivery_id: String::new(),
            challenge_id: String::new(),
            channel: String::new(),
            destination_country: String::new(),
            carrier: String::new(),
            sms_segments: 0,
            voice_seconds,
            occurred_at: DateTime::<Utc>::default(),
        };
        assert_eq!(call(0).voice_minutes(), 0);
        assert_eq!(call(1).voice_minutes(), 1);
        assert_eq!(call(60).voice_minutes(), 1);
        assert_eq!(call(61).voice_minutes(), 2);
    }

    #[test]
    fn only_challenges_are_billable() {
        assert!(AuthKind::Challenge.billable());
        for kind in [AuthKind::TrustedNetwork, AuthKind::Bypass, AuthKind::Remembered] {
            assert!(!kind.billable());
        }
    }
}
