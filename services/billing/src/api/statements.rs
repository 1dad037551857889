//! The current period's estimate and the closed statements.

use axum::{
    Extension, Json,
    extract::{
        Path, Query, State,
        rejection::{PathRejection, QueryRejection},
    },
};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{
    ApiState,
    auth::{Access, Principal},
    params::{self, ProviderPath},
};
use crate::{
    calendar::{month_bounds, month_name, month_of, parse_month},
    error::ApiError,
    ledger::UsageModel,
    metering::Quantities,
    rates,
    statements::{self, Line, Statement, StatementSummary},
};

#[derive(Debug, Serialize)]
pub struct Estimate {
    provider_id: String,
    usage_model: Option<UsageModel>,
    /// The month containing now (`YYYY-MM`).
    period: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    status: &'static str,
    quantities: Quantities,
    /// `null` until the operator sets the provider's rates.
    currency: Option<String>,
    lines: Vec<Line>,
    #[serde(serialize_with = "optional_money")]
    total: Option<Decimal>,
}

fn optional_money<S: serde::Serializer>(value: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => rates::money(value, s),
        None => s.serialize_none(),
    }
}

/// `GET /v1/providers/{provider_id}/estimate`: the current month so far,
/// priced at the current rates.
pub async fn estimate(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<ProviderPath>, PathRejection>,
) -> Result<Json<Estimate>, ApiError> {
    let (provider_id, info) = params::provider(&state, &principal, params::provider_path(path), Access::Read).await?;
    let month = month_of(state.clock.now());
    let (from, to) = month_bounds(month).ok_or(ApiError::InvalidRange)?;
    let mut conn = state.pool.acquire().await?;
    let rates = rates::load(&mut *conn, &provider_id).await?;
    let (quantities, lines) = match info.usage_model {
        Some(model) => statements::own_lines(&mut conn, &provider_id, model, month, rates.as_ref()).await?,
        None => (
            crate::metering::quantities(&mut conn, &provider_id, from, to).await?,
            Vec::new(),
        ),
    };
    let priced = rates.is_some() && info.usage_model.is_some();
    Ok(Json(Estimate {
        provider_id,
        usage_model: info.usage_model,
        period: month_name(month),
        from,
        to,
        status: "open",
        quantities,
        currency: rates.map(|r| r.currency),
        total: priced.then(|| statements::total(&lines)),
        lines,
    }))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct StatementPage {
    provider_id: String,
    items: Vec<StatementSummary>,
    next_cursor: Option<String>,
}

/// `GET /v1/providers/{provider_id}/statements`: closed statements, oldest first.
pub async fn list(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<ProviderPath>, PathRejection>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<StatementPage>, ApiError> {
    let (provider_id, _) = params::provider(&state, &principal, params::provider_path(path), Access::Read).await?;
    let Query(query) = query.map_err(|e| ApiError::InvalidQuery(e.body_text()))?;
    let limit = params::page_size(query.limit.as_deref())?;
    let after = match query.cursor.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        Some(cursor) => Some(parse_month(cursor).ok_or(ApiError::InvalidCursor)?),
        None => None,
    };
    let mut items = statements::list(&state.pool, &provider_id, after, i64::from(limit) + 1).await?;
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|s| s.period.clone())
    } else {
        None
    };
    Ok(Json(StatementPage {
        provider_id,
        items,
        next_cursor,
    }))
}

#[derive(Debug, Deserialize)]
pub struct StatementPath {
    provider_id: String,
    period: String,
}

/// `GET /v1/providers/{provider_id}/statements/{period}`: one closed statement.
pub async fn detail(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<StatementPath>, PathRejection>,
) -> Result<Json<Statement>, ApiError> {
    let (raw_id, period) = match path {
        Ok(Path(p)) => (Ok(p.provider_id), Some(p.period)),
        Err(_) => (Err(()), None),
    };
    let (provider_id, _) = params::provider(&state, &principal, raw_id, Access::Read).await?;
    let period = period.unwrap_or_default();
    let month = parse_month(period.trim()).ok_or(ApiError::InvalidPeriod)?;
    statements::get(&state.pool, &provider_id, month)
        .await?
        .map(Json)
        .ok_or(ApiError::StatementNotFound { provider_id, period })
}
