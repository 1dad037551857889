//! `GET /v1/providers/{provider_id}/usage?from=&to=`

use axum::{
    Json,
    extract::{
        Path, Query, State,
        rejection::{PathRejection, QueryRejection},
    },
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vigil_core::{IdError, ProviderId};

use super::{ApiState, period::Period};
use crate::{
    error::ApiError,
    ledger::{self, UsageModel},
};

#[derive(Debug, Deserialize)]
pub struct UsageQuery {
    from: Option<String>,
    to: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct UsageReport {
    provider_id: String,
    /// `null` while usage has arrived but the provider's creation has not.
    usage_model: Option<UsageModel>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    authentications: i64,
}

/// A provider's usage over `[from, to)`.
pub async fn usage(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Json<UsageReport>, ApiError> {
    // Rejections become our error shape rather than axum's plain text. The
    // path only fails to extract when the id is not UTF-8.
    let Path(raw_id) = path.map_err(|_| ApiError::InvalidProviderId(IdError::Malformed))?;
    let provider_id = ProviderId::parse(&raw_id).map_err(ApiError::InvalidProviderId)?;
    let Query(query) = query.map_err(|e| ApiError::InvalidQuery(e.body_text()))?;
    let period = Period::resolve(query.from.as_deref(), query.to.as_deref(), state.clock.now())?;

    let provider_id = provider_id.to_string();
    let summary = ledger::usage(&state.pool, &provider_id, period.from, period.to)
        .await?
        .ok_or_else(|| ApiError::ProviderNotFound(provider_id.clone()))?;
    Ok(Json(UsageReport {
        provider_id,
        usage_model: summary.usage_model,
        from: period.from,
        to: period.to,
        authentications: summary.authentications,
    }))
}
