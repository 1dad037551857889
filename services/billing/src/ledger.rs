//! The billing tables: providers as billing knows them, and the usage ledger.
//! Every write is idempotent, so replaying an event never changes a total.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool, Row};
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

    fn from_column(text: &str) -> Result<Self, sqlx::Error> {
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

/// One billable authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    /// The envelope id: a second delivery of the same event is a no-op.
    pub event_id: Uuid,
    pub provider_id: String,
    pub user_id: String,
    pub challenge_id: String,
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

/// Adds an authentication to the ledger; `false` if this event was recorded before.
pub async fn record_authentication(conn: &mut PgConnection, usage: &Authentication) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO usage_ledger (event_id, provider_id, kind, user_id, challenge_id, occurred_at) \
         VALUES ($1, $2, 'authentication', $3, $4, $5) \
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(usage.event_id)
    .bind(&usage.provider_id)
    .bind(&usage.user_id)
    .bind(&usage.challenge_id)
    .bind(usage.occurred_at)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// A provider's usage over a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageSummary {
    /// `None` while usage has arrived but the provider event has not.
    pub usage_model: Option<UsageModel>,
    pub authentications: i64,
}

/// Usage of `provider_id` in `[from, to)`; `None` if billing has never heard
/// of the provider (neither its creation nor any usage).
pub async fn usage(
    pool: &PgPool,
    provider_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Option<UsageSummary>, sqlx::Error> {
    // One statement, so existence and count come from one snapshot.
    let row = sqlx::query(
        "SELECT \
           (SELECT usage_model FROM providers WHERE provider_id = $1) AS usage_model, \
           EXISTS (SELECT 1 FROM providers WHERE provider_id = $1) \
             OR EXISTS (SELECT 1 FROM usage_ledger WHERE provider_id = $1) AS known, \
           (SELECT count(*) FROM usage_ledger \
             WHERE provider_id = $1 AND kind = 'authentication' \
               AND occurred_at >= $2 AND occurred_at < $3) AS authentications",
    )
    .bind(provider_id)
    .bind(from)
    .bind(to)
    .fetch_one(pool)
    .await?;
    if !row.try_get::<bool, _>("known")? {
        return Ok(None);
    }
    let usage_model = row
        .try_get::<Option<String>, _>("usage_model")?
        .as_deref()
        .map(UsageModel::from_column)
        .transpose()?;
    Ok(Some(UsageSummary {
        usage_model,
        authentications: row.try_get("authentications")?,
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
}
