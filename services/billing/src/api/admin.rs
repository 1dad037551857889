//! Operator routes: a provider's rates and its read-only API tokens.

use axum::{
    Extension, Json,
    body::Bytes,
    extract::{
        Path, State,
        rejection::{JsonRejection, PathRejection},
    },
    http::StatusCode,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    ApiState,
    auth::{Access, Principal},
    params::{self, ProviderPath},
};
use crate::{
    error::ApiError,
    rates::{self, Rates, RatesInput, StoreError},
    tokens,
};

#[derive(Debug, Serialize)]
pub struct RatesView {
    provider_id: String,
    #[serde(flatten)]
    rates: Rates,
}

/// `GET /v1/providers/{provider_id}/rates`
pub async fn get_rates(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<ProviderPath>, PathRejection>,
) -> Result<Json<RatesView>, ApiError> {
    let (provider_id, _) = params::provider(&state, &principal, params::provider_path(path), Access::Read).await?;
    let rates = rates::load(&state.pool, &provider_id)
        .await?
        .ok_or_else(|| ApiError::RatesNotSet(provider_id.clone()))?;
    Ok(Json(RatesView { provider_id, rates }))
}

/// `PUT /v1/providers/{provider_id}/rates` (operator): sets the prices from
/// now on; closed statements keep the prices they were closed with.
pub async fn put_rates(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<ProviderPath>, PathRejection>,
    body: Result<Json<RatesInput>, JsonRejection>,
) -> Result<Json<RatesView>, ApiError> {
    let (provider_id, info) = params::provider(&state, &principal, params::provider_path(path), Access::Admin).await?;
    if info.usage_model.is_none() {
        // Known from usage only: its creation (and model) has not arrived yet.
        return Err(ApiError::ProviderNotFound(provider_id));
    }
    let Json(input) = body.map_err(|e| ApiError::InvalidBody(e.body_text()))?;
    let rates = Rates::parse(&input)?;
    rates::store(&state.pool, &provider_id, &rates, state.clock.now())
        .await
        .map_err(|e| match e {
            StoreError::CurrencyChange(currency) => ApiError::CurrencyChange(currency),
            StoreError::Db(db) => db.into(),
        })?;
    tracing::info!(%provider_id, currency = %rates.currency, "rates set");
    Ok(Json(RatesView { provider_id, rates }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    #[serde(default)]
    label: String,
}

#[derive(Debug, Serialize)]
pub struct IssuedToken {
    token_id: String,
    provider_id: String,
    label: String,
    /// Shown once: billing keeps only its hash.
    token: String,
    created_at: DateTime<Utc>,
}

/// `POST /v1/providers/{provider_id}/tokens` (operator): a read-only token
/// for the provider's dashboards.
pub async fn create_token(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<ProviderPath>, PathRejection>,
    body: Bytes,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    let (provider_id, _) = params::provider(&state, &principal, params::provider_path(path), Access::Admin).await?;
    let request: NewToken = if body.iter().all(u8::is_ascii_whitespace) {
        NewToken::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidBody(e.to_string()))?
    };
    let label = request.label.trim();
    if label.chars().count() > 100 || label.chars().any(char::is_control) {
        return Err(ApiError::InvalidBody(
            "`label` must be at most 100 printable characters".into(),
        ));
    }
    let now = state.clock.now();
    let issued = tokens::issue(&state.pool, &provider_id, label, now).await?;
    tracing::info!(%provider_id, token_id = %issued.token_id, "provider API token issued");
    Ok((
        StatusCode::CREATED,
        Json(IssuedToken {
            token_id: issued.token_id.simple().to_string(),
            provider_id,
            label: label.to_owned(),
            token: issued.token,
            created_at: now,
        }),
    ))
}

#[derive(Debug, Deserialize)]
pub struct TokenPath {
    provider_id: String,
    token_id: String,
}

/// `DELETE /v1/providers/{provider_id}/tokens/{token_id}` (operator): revokes it.
pub async fn revoke_token(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<TokenPath>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let (raw_id, token_id) = match path {
        Ok(Path(p)) => (Ok(p.provider_id), Some(p.token_id)),
        Err(_) => (Err(()), None),
    };
    let (provider_id, _) = params::provider(&state, &principal, raw_id, Access::Admin).await?;
    let token_id = token_id
        .filter(|t| t.len() == 32)
        .and_then(|t| Uuid::try_parse(&t).ok())
        .ok_or(ApiError::InvalidTokenId)?;
    if tokens::revoke(&state.pool, &provider_id, token_id, state.clock.now()).await? {
        tracing::info!(%provider_id, %token_id, "provider API token revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::TokenNotFound(provider_id))
    }
}
