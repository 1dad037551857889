//! The billing period a usage query covers: half-open `[from, to)`, by
//! default the current calendar month in UTC.

use chrono::{DateTime, Datelike, Months, NaiveTime, Utc};

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Period {
    /// Each bound that is absent (or empty) defaults to the matching bound of
    /// the calendar month containing `now`.
    pub fn resolve(from: Option<&str>, to: Option<&str>, now: DateTime<Utc>) -> Result<Self, ApiError> {
        let month = month_containing(now)?;
        let from = parse_or(from, "from", month.from)?;
        let to = parse_or(to, "to", month.to)?;
        if from >= to {
            return Err(ApiError::InvalidRange);
        }
        Ok(Self { from, to })
    }
}

fn parse_or(text: Option<&str>, field: &'static str, default: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(default),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| ApiError::InvalidTime { field }),
    }
}

fn month_containing(now: DateTime<Utc>) -> Result<Period, ApiError> {
    let first = now.date_naive().with_day(1);
    let next = first.and_then(|d| d.checked_add_months(Months::new(1)));
    match (first, next) {
        (Some(first), Some(next)) => Ok(Period {
            from: first.and_time(NaiveTime::MIN).and_utc(),
            to: next.and_time(NaiveTime::MIN).and_utc(),
        }),
        // Only at the very end of chrono's calendar.
        _ => Err(ApiError::internal(format!("no calendar month contains {now}"))),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, s).single().unwrap_or_default()
    }

    #[test]
    fn defaults_to_the_current_month() -> Result<(), ApiError> {
        let period = Period::resolve(None, None, utc(2025, 3, 31, 23, 59, 59))?;
        assert_eq!(period.from, utc(2025, 3, 1, 0, 0, 0));
        assert_eq!(period.to, utc(2025, 4, 1, 0, 0, 0));
        let december = Period::resolve(None, Some(""), utc(2024, 12, 1, 0, 0, 0))?;
        assert_eq!(december.from, utc(2024, 12, 1, 0, 0, 0));
        assert_eq!(december.to, utc(2025, 1, 1, 0, 0, 0));
        Ok(())
    }

    #[test]
    fn accepts_any_offset_and_normalises_to_utc() -> Result<(), ApiError> {
        let now = utc(2025, 3, 15, 0, 0, 0);
        let period = Period::resolve(Some("2025-02-01T02:00:00+02:00"), Some("2025-02-02T00:00:00Z"), now)?;
        assert_eq!(period.from, utc(2025, 2, 1, 0, 0, 0));
        assert_eq!(period.to, utc(2025, 2, 2, 0, 0, 0));
        // Only `from` given: up to the end of the current month.
        let open = Period::resolve(Some("2025-01-01T00:00:00Z"), None, now)?;
        assert_eq!(open.to, utc(2025, 4, 1, 0, 0, 0));
        Ok(())
    }

    #[test]
    fn refuses_bad_times_and_empty_ranges() {
        let now = utc(2025, 3, 15, 0, 0, 0);
        let refused = |from, to| Period::resolve(from, to, now).err();
        assert!(matches!(
            refused(Some("yesterday"), None),
            Some(ApiError::InvalidTime { field: "from" })
        ));
        assert!(matches!(
            refused(None, Some("2025-03-01")),
            Some(ApiError::InvalidTime { field: "to" })
        ));
        let t = Some("2025-03-01T00:00:00Z");
        assert!(matches!(refused(t, t), Some(ApiError::InvalidRange)));
        assert!(matches!(
            refused(Some("2025-04-01T00:00:00Z"), t),
            Some(ApiError::InvalidRange)
        ));
        // Defaults are checked too: a `to` before this month's start.
        assert!(matches!(
            refused(None, Some("2025-02-01T00:00:00Z")),
            Some(ApiError::InvalidRange)
        ));
    }
}
