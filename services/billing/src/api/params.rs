//! Request parameters every route shares, each turned into our error shape
//! rather than axum's plain-text rejections.

use axum::extract::{Path, rejection::PathRejection};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;
use vigil_core::{IdError, ProviderId};

use super::{
    ApiState,
    auth::{Access, Principal},
};
use crate::{
    error::ApiError,
    ledger::{self, ProviderInfo},
};

pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1000;

#[derive(Debug, Deserialize)]
pub struct ProviderPath {
    pub provider_id: String,
}

/// Parses the provider id, checks the caller may see it (before revealing
/// whether it exists), then that billing knows it.
pub async fn provider(
    state: &ApiState,
    principal: &Principal,
    raw_id: Result<String, ()>,
    access: Access,
) -> Result<(String, ProviderInfo), ApiError> {
    // The path only fails to extract when the id is not UTF-8.
    let raw_id = raw_id.map_err(|()| ApiError::InvalidProviderId(IdError::Malformed))?;
    let provider_id = ProviderId::parse(&raw_id)
        .map_err(ApiError::InvalidProviderId)?
        .to_string();
    principal.authorize(&provider_id, access)?;
    let info = ledger::provider(&state.pool, &provider_id)
        .await?
        .ok_or_else(|| ApiError::ProviderNotFound(provider_id.clone()))?;
    Ok((provider_id, info))
}

/// The `{provider_id}` of a path.
pub fn provider_path(path: Result<Path<ProviderPath>, PathRejection>) -> Result<String, ()> {
    path.map(|Path(p)| p.provider_id).map_err(|_| ())
}

/// `limit`: absent means the default; anything but 1..=MAX is refused.
pub fn page_size(limit: Option<&str>) -> Result<u32, ApiError> {
    match limit.map(str::trim).filter(|l| !l.is_empty()) {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
            .ok_or(ApiError::InvalidPageSize { max: MAX_PAGE_SIZE }),
    }
}

/// The bucket size of a usage series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Hour,
    Day,
    Month,
}

impl Granularity {
    pub fn parse(text: Option<&str>) -> Result<Self, ApiError> {
        match text.map(str::trim) {
            None | Some("") | Some("day") => Ok(Self::Day),
            Some("hour") => Ok(Self::Hour),
            Some("month") => Ok(Self::Month),
            Some(_) => Err(ApiError::InvalidGranularity),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Month => "month",
        }
    }
}

/// A position in the ledger, `<microseconds>_<event id>`: pages are ordered
/// by time, then id, so inserting late events never skips or repeats a row.
pub fn ledger_cursor(at: DateTime<Utc>, event_id: Uuid) -> String {
    format!("{}_{}", at.timestamp_micros(), event_id.simple())
}

pub fn parse_ledger_cursor(text: Option<&str>) -> Result<Option<(DateTime<Utc>, Uuid)>, ApiError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let (micros, id) = text.split_once('_').ok_or(ApiError::InvalidCursor)?;
    let at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or(ApiError::InvalidCursor)?;
    let id = Uuid::try_parse(id).map_err(|_| ApiError::InvalidCursor)?;
    Ok(Some((at, id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_are_bounded() {
        assert_eq!(page_size(None).ok(), Some(DEFAULT_PAGE_SIZE));
        assert_eq!(page_size(Some("1000")).ok(), Some(1000));
        for bad in ["0", "1001", "-1", "99999999999999999999", "ten"] {
            assert!(
                matches!(page_size(Some(bad)), Err(ApiError::InvalidPageSize { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn cursors_round_trip() -> Result<(), ApiError> {
        let at = DateTime::from_timestamp_micros(1_740_787_200_123_456).unwrap_or_default();
        let id = Uuid::now_v7();
        assert_eq!(parse_ledger_cursor(Some(&ledger_cursor(at, id)))?, Some((at, id)));
        assert!(parse_ledger_cursor(Some("garbage")).is_err());
        assert!(parse_ledger_cursor(Some("12_nope")).is_err());
        assert_eq!(parse_ledger_cursor(None)?, None);
        Ok(())
    }

    #[test]
    fn granularities() {
        assert_eq!(Granularity::parse(None).ok(), Some(Granularity::Day));
        assert_eq!(Granularity::parse(Some("hour")).ok(), Some(Granularity::Hour));
        assert!(Granularity::parse(Some("week")).is_err());
    }
}
