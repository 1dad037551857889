//! What a provider used over a period, from the ledger: authentications,
//! telephony, and the users enabled at any moment in the period.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::ledger::UserStatus;

/// Usage over one half-open period `[from, to)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Quantities {
    /// Challenges issued: what `per_authentication` bills.
    pub billable_authentications: i64,
    /// Trusted-network passes, bypasses, remembered devices: recorded, not billed.
    pub non_billable_authentications: i64,
    pub sms_segments: i64,
    pub voice_seconds: i64,
    /// Per call, per started minute.
    pub voice_minutes: i64,
    /// Users enabled at any moment in the period: what `per_enabled_user` bills.
    pub enabled_users: i64,
}

/// The authentication and telephony sums of `[from, to)`.
async fn event_sums(
    conn: &mut PgConnection,
    provider_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Quantities, sqlx::Error> {
    let row = sqlx::query(
        "SELECT \
           count(*) FILTER (WHERE kind = 'authentication' AND billable) AS billable, \
           count(*) FILTER (WHERE kind = 'authentication' AND NOT billable) AS other, \
           COALESCE(sum(sms_segments), 0)::bigint AS sms, \
           COALESCE(sum(voice_seconds), 0)::bigint AS secs, \
           COALESCE(sum(voice_minutes), 0)::bigint AS mins \
         FROM usage_ledger \
         WHERE provider_id = $1 AND kind IN ('authentication', 'telephony') \
           AND occurred_at >= $2 AND occurred_at < $3",
    )
    .bind(provider_id)
    .bind(from)
    .bind(to)
    .fetch_one(conn)
    .await?;
    Ok(Quantities {
        billable_authentications: row.try_get("billable")?,
        non_billable_authentications: row.try_get("other")?,
        sms_segments: row.try_get("sms")?,
        voice_seconds: row.try_get("secs")?,
        voice_minutes: row.try_get("mins")?,
        enabled_users: 0,
    })
}

/// Everything used in `[from, to)`.
pub async fn quantities(
    conn: &mut PgConnection,
    provider_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Quantities, sqlx::Error> {
    let mut quantities = event_sums(conn, provider_id, from, to).await?;
    let history = UserHistory::load(conn, provider_id, to).await?;
    quantities.enabled_users = i64::try_from(history.enabled_in(from, to).len()).unwrap_or(i64::MAX);
    Ok(quantities)
}

/// One status event of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEvent {
    pub at: DateTime<Utc>,
    /// Orders events of the same instant (UUIDv7: by creation).
    pub event_id: Uuid,
    pub status: UserStatus,
    pub previous: Option<UserStatus>,
}

/// Every user's status events, in time order.
#[derive(Debug, Clone, Default)]
pub struct UserHistory {
    users: BTreeMap<String, Vec<StatusEvent>>,
}

impl UserHistory {
    /// The provider's user events before `until`.
    pub async fn load(conn: &mut PgConnection, provider_id: &str, until: DateTime<Utc>) -> Result<Self, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT user_id, occurred_at, event_id, user_status, previous_status FROM usage_ledger \
             WHERE provider_id = $1 AND kind = 'user' AND occurred_at < $2 \
             ORDER BY user_id, occurred_at, event_id",
        )
        .bind(provider_id)
        .bind(until)
        .fetch_all(conn)
        .await?;
        let mut history = Self::default();
        for row in rows {
            let previous: Option<String> = row.try_get("previous_status")?;
            history.push(
                row.try_get("user_id")?,
                StatusEvent {
                    at: row.try_get("occurred_at")?,
                    event_id: row.try_get("event_id")?,
                    status: UserStatus::from_column(row.try_get("user_status")?)?,
                    previous: previous.as_deref().map(UserStatus::from_column).transpose()?,
                },
            );
        }
        Ok(history)
    }

    /// Adds an event (kept sorted).
    pub fn push(&mut self, user_id: String, event: StatusEvent) {
        let events = self.users.entry(user_id).or_default();
        let at = events.partition_point(|e| (e.at, e.event_id) <= (event.at, event.event_id));
        events.insert(at, event);
    }

    /// Users enabled at any moment of `[from, to)`, by id.
    pub fn enabled_in(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> BTreeSet<&str> {
        self.users
            .iter()
            .filter(|(_, events)| enabled_in(events, from, to))
            .map(|(user, _)| user.as_str())
            .collect()
    }
}

/// Whether a user with these (sorted) events was enabled at some instant of
/// `[from, to)`. An event takes effect at its own instant; before a user's
/// first event they did not exist, unless that event names the status it
/// replaced (`previous`), which then held just before it.
fn enabled_in(events: &[StatusEvent], from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
    if from >= to {
        return false;
    }
    // Status at `from`: the last event at or before it.
    let first_inside = events.partition_point(|e| e.at <= from);
    let at_start = first_inside.checked_sub(1).and_then(|i| events.get(i));
    if at_start.is_some_and(|e| e.status == UserStatus::Enabled) {
        return true;
    }
    let inside = events.get(first_inside..).unwrap_or_default();
    inside.iter().take_while(|e| e.at < to).any(|e| {
        // Enabled from this event on, or enabled up to it (which, strictly
        // after `from`, is a moment inside the period).
        e.status == UserStatus::Enabled || e.previous == Some(UserStatus::Enabled)
    })
}

/// A series bucket: `(aligned start, start, end)` (see [`series`]).
pub type BucketRange = (DateTime<Utc>, DateTime<Utc>, DateTime<Utc>);

/// One bucket of a usage series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    #[serde(flatten)]
    pub quantities: Quantities,
}

/// Usage per bucket. `unit` is PostgreSQL's `date_trunc` unit, and each
/// bucket is `(aligned start, start, end)`: the aligned start is the
/// truncated instant, start and end the bucket clipped to the range.
pub async fn series(
    conn: &mut PgConnection,
    provider_id: &str,
    unit: &str,
    buckets: &[BucketRange],
) -> Result<Vec<Bucket>, sqlx::Error> {
    let (Some(first), Some(last)) = (buckets.first(), buckets.last()) else {
        return Ok(Vec::new());
    };
    let (from, to) = (first.1, last.2);
    let rows = sqlx::query(
        "SELECT date_trunc($4, occurred_at, 'UTC') AS bucket, \
           count(*) FILTER (WHERE kind = 'authentication' AND billable) AS billable, \
           count(*) FILTER (WHERE kind = 'authentication' AND NOT billable) AS other, \
           COALESCE(sum(sms_segments), 0)::bigint AS sms, \
           COALESCE(sum(voice_seconds), 0)::bigint AS secs, \
           COALESCE(sum(voice_minutes), 0)::bigint AS mins \
         FROM usage_ledger \
         WHERE provider_id = $1 AND kind IN ('authentication', 'telephony') \
           AND occurred_at >= $2 AND occurred_at < $3 \
         GROUP BY 1",
    )
    .bind(provider_id)
    .bind(from)
    .bind(to)
    .bind(unit)
    .fetch_all(&mut *conn)
    .await?;
    let mut sums = BTreeMap::new();
    for row in rows {
        let bucket: DateTime<Utc> = row.try_get("bucket")?;
        sums.insert(
            bucket,
            Quantities {
                billable_authentications: row.try_get("billable")?,
                non_billable_authentications: row.try_get("other")?,
                sms_segments: row.try_get("sms")?,
                voice_seconds: row.try_get("secs")?,
                voice_minutes: row.try_get("mins")?,
                enabled_users: 0,
            },
        );
    }
    let history = UserHistory::load(conn, provider_id, to).await?;
    Ok(buckets
        .iter()
        .map(|&(aligned, start, end)| {
            let mut quantities = sums.remove(&aligned).unwrap_or_default();
            quantities.enabled_users = i64::try_from(history.enabled_in(start, end).len()).unwrap_or(i64::MAX);
            Bucket { start, end, quantities }
        })
        .collect())
}

/// Per-user usage over `[from, to)`: authentications, and whether the user
/// was enabled at any moment in it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UserUsage {
    pub user_id: String,
    pub billable_authentications: i64,
    pub non_billable_authentications: i64,
    pub enabled: bool,
}

/// Every user with authentications or enabled in `[from, to)`, by id.
pub async fn per_user(
    conn: &mut PgConnection,
    provider_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<UserUsage>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT user_id, count(*) FILTER (WHERE billable) AS billable, count(*) FILTER (WHERE NOT billable) AS other \
         FROM usage_ledger WHERE provider_id = $1 AND kind = 'authentication' \
           AND occurred_at >= $2 AND occurred_at < $3 GROUP BY user_id",
    )
    .bind(provider_id)
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?;
    let mut users: BTreeMap<String, UserUsage> = BTreeMap::new();
    for row in rows {
        let user_id: String = row.try_get("user_id")?;
        users.insert(
            user_id.clone(),
            UserUsage {
                user_id,
                billable_authentications: row.try_get("billable")?,
                non_billable_authentications: row.try_get("other")?,
                enabled: false,
            },
        );
    }
    let history = UserHistory::load(conn, provider_id, to).await?;
    for user in history.enabled_in(from, to) {
        users
            .entry(user.to_owned())
            .or_insert_with(|| UserUsage {
                user_id: user.to_owned(),
                ..UserUsage::default()
            })
            .enabled = true;
    }
    Ok(users.into_values().collect())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, d, 0, 0, 0).single().unwrap_or_default()
    }

    fn event(d: u32, status: UserStatus, previous: Option<UserStatus>) -> StatusEvent {
        StatusEvent {
            at: day(d),
            event_id: Uuid::now_v7(),
            status,
            previous,
        }
    }

    use UserStatus::*;

    #[test]
    fn enabled_at_any_moment_counts() {
        // Enabled on the 5th, disabled on the 10th.
        let events = [event(5, Enabled, None), event(10, Disabled, Some(Enabled))];
        assert!(!enabled_in(&events, day(1), day(5)), "before creation");
        assert!(enabled_in(&events, day(1), day(6)));
        assert!(enabled_in(&events, day(9), day(10)));
        assert!(!enabled_in(&events, day(10), day(20)), "disabled from the 10th on");
        assert!(enabled_in(&events, day(7), day(8)), "enabled throughout");
    }

    #[test]
    fn a_missing_history_is_read_from_previous() {
        // Only a disable on the 10th is known, saying the user was enabled before.
        let events = [event(10, Disabled, Some(Enabled))];
        assert!(enabled_in(&events, day(1), day(11)));
        assert!(
            !enabled_in(&events, day(10), day(11)),
            "disabled at the period's first instant"
        );
        assert!(!enabled_in(&events, day(11), day(12)));
    }

    #[test]
    fn blocked_and_deleted_users_are_not_enabled() {
        let events = [
            event(1, Disabled, None),
            event(3, BlockedForFraud, Some(Disabled)),
            event(5, Deleted, None),
        ];
        assert!(!enabled_in(&events, day(1), day(20)));
        let mut history = UserHistory::default();
        history.push("usr_b".into(), event(2, Enabled, None));
        history.push("usr_b".into(), event(1, Disabled, None));
        history.push("usr_a".into(), event(1, Deleted, None));
        assert_eq!(history.enabled_in(day(1), day(2)).len(), 0);
        assert_eq!(
            history.enabled_in(day(1), day(3)).into_iter().collect::<Vec<_>>(),
            ["usr_b"]
        );
    }
}
