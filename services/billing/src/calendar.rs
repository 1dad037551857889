//! Billing months: calendar months in UTC, named by their first day.

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveTime, Utc};

/// The first day of the month containing `at`.
pub fn month_of(at: DateTime<Utc>) -> NaiveDate {
    let date = at.date_naive();
    date.with_day(1).unwrap_or(date)
}

/// The month after `month` (`None` only at the end of chrono's calendar).
pub fn next_month(month: NaiveDate) -> Option<NaiveDate> {
    month.checked_add_months(Months::new(1))
}

/// `[first instant, first instant of the next month)`.
pub fn month_bounds(month: NaiveDate) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let next = next_month(month)?;
    Some((start_of(month), start_of(next)))
}

pub fn start_of(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

/// `2025-03` for March 2025.
pub fn month_name(month: NaiveDate) -> String {
    month.format("%Y-%m").to_string()
}

/// Parses `YYYY-MM`.
pub fn parse_month(text: &str) -> Option<NaiveDate> {
    let (year, month) = text.split_once('-')?;
    if year.len() != 4 || month.len() != 2 {
        return None;
    }
    NaiveDate::from_ymd_opt(year.parse().ok()?, month.parse().ok()?, 1)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn months_round_trip() {
        let at = Utc
            .with_ymd_and_hms(2024, 12, 31, 23, 59, 59)
            .single()
            .unwrap_or_default();
        let december = month_of(at);
        assert_eq!(month_name(december), "2024-12");
        assert_eq!(parse_month("2024-12"), Some(december));
        assert_eq!(next_month(december).map(month_name).as_deref(), Some("2025-01"));
        let (from, to) = month_bounds(december).unwrap_or_default();
        assert_eq!(from.to_rfc3339(), "2024-12-01T00:00:00+00:00");
        assert_eq!(to.to_rfc3339(), "2025-01-01T00:00:00+00:00");
        for bad in ["2024-13", "2024-1", "24-01", "2024/01", "", "2024-00"] {
            assert_eq!(parse_month(bad), None, "{bad}");
        }
    }
}
