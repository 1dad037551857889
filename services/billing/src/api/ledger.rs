//! The ledger itself: paged JSON and CSV export.

use axum::{
    Extension, Json,
    extract::{
        Path, Query, State,
        rejection::{PathRejection, QueryRejection},
    },
    http::header,
    response::{IntoResponse, Response},
};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use uuid::Uuid;

use super::{
    ApiState,
    auth::{Access, Principal},
    params::{self, ProviderPath},
    period::Period,
};
use crate::{calendar::month_name, error::ApiError};

#[derive(Debug, Deserialize)]
pub struct LedgerQuery {
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// One ledger row as the API shows it.
#[derive(Debug, Serialize)]
pub struct Entry {
    event_id: Uuid,
    kind: String,
    occurred_at: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
    user_id: Option<String>,
    challenge_id: Option<String>,
    auth_kind: Option<String>,
    billable: bool,
    factor: Option<String>,
    delivery_id: Option<String>,
    channel: Option<String>,
    destination_country: Option<String>,
    carrier: Option<String>,
    sms_segments: i64,
    voice_seconds: i64,
    voice_minutes: i64,
    user_event: Option<String>,
    user_status: Option<String>,
    previous_status: Option<String>,
    /// The statement (`YYYY-MM`) that accounted for this row, if one has.
    statement_period: Option<String>,
}

const COLUMNS: [&str; 20] = [
    "event_id",
    "kind",
    "occurred_at",
    "recorded_at",
    "user_id",
    "challenge_id",
    "auth_kind",
    "billable",
    "factor",
    "delivery_id",
    "channel",
    "destination_country",
    "carrier",
    "sms_segments",
    "voice_seconds",
    "voice_minutes",
    "user_event",
    "user_status",
    "previous_status",
    "statement_period",
];

fn entry(row: &sqlx::postgres::PgRow) -> Result<Entry, sqlx::Error> {
    let statement_period: Option<NaiveDate> = row.try_get("statement_period")?;
    Ok(Entry {
        event_id: row.try_get("event_id")?,
        kind: row.try_get("kind")?,
        occurred_at: row.try_get("occurred_at")?,
        recorded_at: row.try_get("recorded_at")?,
        user_id: row.try_get("user_id")?,
        challenge_id: row.try_get("challenge_id")?,
        auth_kind: row.try_get("auth_kind")?,
        billable: row.try_get("billable")?,
        factor: row.try_get("factor")?,
        delivery_id: row.try_get("delivery_id")?,
        channel: row.try_get("channel")?,
        destination_country: row.try_get("destination_country")?,
        carrier: row.try_get("carrier")?,
        sms_segments: row.try_get("sms_segments")?,
        voice_seconds: row.try_get("voice_seconds")?,
        voice_minutes: row.try_get("voice_minutes")?,
        user_event: row.try_get("user_event")?,
        user_status: row.try_get("user_status")?,
        previous_status: row.try_get("previous_status")?,
        statement_period: statement_period.map(month_name),
    })
}

/// Rows of `[from, to)` after `after`, in (time, id) order.
async fn rows(
    state: &ApiState,
    provider_id: &str,
    period: Period,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: Option<i64>,
) -> Result<Vec<Entry>, ApiError> {
    let sql = format!(
        "SELECT {} FROM usage_ledger \
         WHERE provider_id = $1 AND occurred_at >= $2 AND occurred_at < $3 \
           AND ($4::timestamptz IS NULL OR (occurred_at, event_id) > ($4, $5)) \
         ORDER BY occurred_at, event_id LIMIT $6",
        COLUMNS.join(", ")
    );
    let rows = sqlx::query(&sql)
        .bind(provider_id)
        .bind(period.from)
        .bind(period.to)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1).unwrap_or_default())
        .bind(limit)
        .fetch_all(&state.pool)
        .await?;
    Ok(rows.iter().map(entry).collect::<Result<_, _>>()?)
}

#[derive(Debug, Serialize)]
pub struct LedgerPage {
    provider_id: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    items: Vec<Entry>,
    next_cursor: Option<String>,
}

/// `GET /v1/providers/{provider_id}/ledger`: the ledger, a page at a time.
pub async fn page(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<ProviderPath>, PathRejection>,
    query: Result<Query<LedgerQuery>, QueryRejection>,
) -> Result<Json<LedgerPage>, ApiError> {
    let (provider_id, _) = params::provider(&state, &principal, params::provider_path(path), Access::Read).await?;
    let Query(query) = query.map_err(|e| ApiError::InvalidQuery(e.body_text()))?;
    let limit = params::page_size(query.limit.as_deref())?;
    let after = params::parse_ledger_cursor(query.cursor.as_deref())?;
    let period = Period::resolve(query.from.as_deref(), query.to.as_deref(), state.clock.now())?;
    let mut items = rows(&state, &provider_id, period, after, Some(i64::from(limit) + 1)).await?;
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|e| params::ledger_cursor(e.occurred_at, e.event_id))
    } else {
        None
    };
    Ok(Json(LedgerPage {
        provider_id,
        from: period.from,
        to: period.to,
        items,
        next_cursor,
    }))
}

/// `GET /v1/providers/{provider_id}/ledger.csv`: the whole range as CSV (RFC 4180).
pub async fn csv(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<ProviderPath>, PathRejection>,
    query: Result<Query<LedgerQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (provider_id, _) = params::provider(&state, &principal, params::provider_path(path), Access::Read).await?;
    let Query(query) = query.map_err(|e| ApiError::InvalidQuery(e.body_text()))?;
    let period = Period::resolve(query.from.as_deref(), query.to.as_deref(), state.clock.now())?;
    let entries = rows(&state, &provider_id, period, None, None).await?;
    let mut body = COLUMNS.join(",");
    body.push_str("\r\n");
    for e in &entries {
        let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
        let fields = [
            e.event_id.to_string(),
            e.kind.clone(),
            time(e.occurred_at),
            time(e.recorded_at),
            e.user_id.clone().unwrap_or_default(),
            e.challenge_id.clone().unwrap_or_default(),
            e.auth_kind.clone().unwrap_or_default(),
            e.billable.to_string(),
            e.factor.clone().unwrap_or_default(),
            e.delivery_id.clone().unwrap_or_default(),
            e.channel.clone().unwrap_or_default(),
            e.destination_country.clone().unwrap_or_default(),
            e.carrier.clone().unwrap_or_default(),
            e.sms_segments.to_string(),
            e.voice_seconds.to_string(),
            e.voice_minutes.to_string(),
            e.user_event.clone().unwrap_or_default(),
            e.user_status.clone().unwrap_or_default(),
            e.previous_status.clone().unwrap_or_default(),
            e.statement_period.clone().unwrap_or_default(),
        ];
        let escaped: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        body.push_str(&escaped.join(","));
        body.push_str("\r\n");
    }
    let filename = format!(
        "attachment; filename=\"ledger-{provider_id}-{}-{}.csv\"",
        period.from.format("%Y%m%dT%H%M%SZ"),
        period.to.format("%Y%m%dT%H%M%SZ")
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, filename),
        ],
        body,
    )
        .into_response())
}

/// Quotes a field when it holds a comma, quote or line break; a leading
/// `=`, `+`, `-` or `@` is prefixed with `'` so spreadsheets do not run it.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_escaped() {
        assert_eq!(csv_field("twilio"), "twilio");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
    }
}
