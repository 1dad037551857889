//! Usage routes: the period summary, the series over time, the per-user breakdown.

use axum::{
    Extension, Json,
    extract::{
        Path, Query, State,
        rejection::{PathRejection, QueryRejection},
    },
};
use chrono::{DateTime, Datelike, Duration, DurationRound, Months, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    ApiState,
    auth::{Access, Principal},
    params::{self, Granularity, ProviderPath},
    period::Period,
};
use crate::{
    error::ApiError,
    ledger::UsageModel,
    metering::{self, Bucket, BucketRange, Quantities, UserUsage},
};

/// At most this many buckets in one series (a month of hours is 744).
pub const MAX_BUCKETS: usize = 2000;

#[derive(Debug, Deserialize)]
pub struct UsageQuery {
    from: Option<String>,
    to: Option<String>,
    granularity: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

fn query(query: Result<Query<UsageQuery>, QueryRejection>) -> Result<UsageQuery, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ApiError::InvalidQuery(e.body_text()))
}

#[derive(Debug, Serialize)]
pub struct UsageReport {
    provider_id: String,
    /// `null` while usage has arrived but the provider's creation has not.
    usage_model: Option<UsageModel>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    /// Billable authentications (challenges issued).
    authentications: i64,
    #[serde(flatten)]
    quantities: Quantities,
}

/// `GET /v1/providers/{provider_id}/usage`: a provider's usage over `[from, to)`.
pub async fn usage(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<ProviderPath>, PathRejection>,
    query_: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Json<UsageReport>, ApiError> {
    let (provider_id, info) = params::provider(&state, &principal, params::provider_path(path), Access::Read).await?;
    let query = query(query_)?;
    let period = Period::resolve(query.from.as_deref(), query.to.as_deref(), state.clock.now())?;
    let mut conn = state.pool.acquire().await?;
    let quantities = metering::quantities(&mut conn, &provider_id, period.from, period.to).await?;
    Ok(Json(UsageReport {
        provider_id,
        usage_model: info.usage_model,
        from: period.from,
        to: period.to,
        authentications: quantities.billable_authentications,
        quantities,
    }))
}

#[derive(Debug, Serialize)]
pub struct Series {
    provider_id: String,
    usage_model: Option<UsageModel>,
    granularity: &'static str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    buckets: Vec<Bucket>,
}

/// `GET /v1/providers/{provider_id}/usage/series`: usage per hour, day or month.
pub async fn series(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<ProviderPath>, PathRejection>,
    query_: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Json<Series>, ApiError> {
    let (provider_id, info) = params::provider(&state, &principal, params::provider_path(path), Access::Read).await?;
    let query = query(query_)?;
    let granularity = Granularity::parse(query.granularity.as_deref())?;
    let period = Period::resolve(query.from.as_deref(), query.to.as_deref(), state.clock.now())?;
    let ranges = buckets(period, granularity)?;
    let mut conn = state.pool.acquire().await?;
    let buckets = metering::series(&mut conn, &provider_id, granularity.as_str(), &ranges).await?;
    Ok(Json(Series {
        provider_id,
        usage_model: info.usage_model,
        granularity: granularity.as_str(),
        from: period.from,
        to: period.to,
        buckets,
    }))
}

/// The buckets covering `period`: `(aligned start, clipped start, clipped end)`.
fn buckets(period: Period, granularity: Granularity) -> Result<Vec<BucketRange>, ApiError> {
    let align = |t: DateTime<Utc>| -> Option<DateTime<Utc>> {
        match granularity {
            Granularity::Hour => t.duration_trunc(Duration::hours(1)).ok(),
            Granularity::Day => Some(t.date_naive().and_time(NaiveTime::MIN).and_utc()),
            Granularity::Month => Some(t.date_naive().with_day(1)?.and_time(NaiveTime::MIN).and_utc()),
        }
    };
    let step = |t: DateTime<Utc>| -> Option<DateTime<Utc>> {
        match granularity {
            Granularity::Hour => t.checked_add_signed(Duration::hours(1)),
            Granularity::Day => t.checked_add_signed(Duration::days(1)),
            Granularity::Month => t.checked_add_months(Months::new(1)),
        }
    };
    let calendar_end = || ApiError::InvalidRange;
    let mut aligned = align(period.from).ok_or_else(calendar_end)?;
    let mut ranges = Vec::new();
    while aligned < period.to {
        let next = step(aligned).ok_or_else(calendar_end)?;
        ranges.push((aligned, aligned.max(period.from), next.min(period.to)));
        if ranges.len() > MAX_BUCKETS {
            // Report the full count without building it.
            let total = match granularity {
                Granularity::Hour => (period.to - period.from).num_hours(),
                Granularity::Day => (period.to - period.from).num_days(),
                Granularity::Month => i64::from(period.to.year() - period.from.year()) * 12,
            };
            return Err(ApiError::RangeTooLarge {
                buckets: usize::try_from(total).unwrap_or(usize::MAX).max(MAX_BUCKETS + 1),
                max: MAX_BUCKETS,
            });
        }
        aligned = next;
    }
    Ok(ranges)
}

#[derive(Debug, Serialize)]
pub struct UserPage {
    provider_id: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    items: Vec<UserUsage>,
    /// Pass as `cursor` for the next page; `null` on the last.
    next_cursor: Option<String>,
}

/// `GET /v1/providers/{provider_id}/usage/users`: per-user breakdown, by user id.
pub async fn users(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<ProviderPath>, PathRejection>,
    query_: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Json<UserPage>, ApiError> {
    let (provider_id, _) = params::provider(&state, &principal, params::provider_path(path), Access::Read).await?;
    let query = query(query_)?;
    let limit = usize::try_from(params::page_size(query.limit.as_deref())?).unwrap_or(usize::MAX);
    let after = match query.cursor.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        Some(cursor) => Some(
            vigil_core::UserId::parse(cursor)
                .map_err(|_| ApiError::InvalidCursor)?
                .to_string(),
        ),
        None => None,
    };
    let period = Period::resolve(query.from.as_deref(), query.to.as_deref(), state.clock.now())?;
    let mut conn = state.pool.acquire().await?;
    let all = metering::per_user(&mut conn, &provider_id, period.from, period.to).await?;
    let mut items: Vec<UserUsage> = all
        .into_iter()
        .filter(|u| after.as_ref().is_none_or(|after| u.user_id.as_str() > after.as_str()))
        .take(limit + 1)
        .collect();
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|u| u.user_id.clone())
    } else {
        None
    };
    Ok(Json(UserPage {
        provider_id,
        from: period.from,
        to: period.to,
        items,
        next_cursor,
    }))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, d, h, 0, 0).single().unwrap_or_default()
    }

    #[test]
    fn buckets_cover_the_range_clipped() -> Result<(), ApiError> {
        let period = Period {
            from: utc(1, 12),
            to: utc(3, 6),
        };
        let days = buckets(period, Granularity::Day)?;
        assert_eq!(days.len(), 3);
        assert_eq!(days[0], (utc(1, 0), utc(1, 12), utc(2, 0)));
        assert_eq!(days[2], (utc(3, 0), utc(3, 0), utc(3, 6)));
        assert_eq!(buckets(period, Granularity::Hour)?.len(), 42);
        assert_eq!(buckets(period, Granularity::Month)?.len(), 1);
        let decade = Period {
            from: utc(1, 0),
            to: Utc.with_ymd_and_hms(2035, 3, 1, 0, 0, 0).single().unwrap_or_default(),
        };
        assert!(matches!(
            buckets(decade, Granularity::Hour),
            Err(ApiError::RangeTooLarge { .. })
        ));
        assert_eq!(buckets(decade, Granularity::Month)?.len(), 120);
        Ok(())
    }
}
