//! The fraud webhook's signing secret (made here, shown once, kept
//! encrypted) and the record of notifications sent.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use uuid::Uuid;
use vigil_core::ProviderId;
use vigil_proto::v1 as api;

use super::providers::existing;
use crate::{app::Gateway, audit, auth::AdminScope, error::GatewayError, fraud_webhook};

pub async fn rotate_secret(
    gateway: &Gateway,
    scope: AdminScope,
    req: api::RotateWebhookSecretRequest,
) -> Result<api::WebhookSecret, GatewayError> {
    let provider = existing(gateway, scope, &req.provider_id).await?;
    let secret = fraud_webhook::new_secret();
    let ciphertext = gateway
        .keyring
        .encrypt(
            &mut rand::rng(),
            secret.expose_secret().as_bytes(),
            &fraud_webhook::secret_aad(provider.id),
        )
        .map_err(|e| GatewayError::Secret(e.to_string()))?;
    let mut tx = gateway.pool.begin().await?;
    sqlx::query("UPDATE providers SET webhook_secret_ciphertext = $2 WHERE id = $1")
        .bind(provider.id)
        .bind(ciphertext)
        .execute(&mut *tx)
        .await?;
    let actor = scope.actor();
    let target = ProviderId::from_uuid(provider.id).to_string();
    let event = if provider.has_webhook_secret {
        "webhook_secret_rotated"
    } else {
        "webhook_secret_created"
    };
    audit::record(
        &mut tx,
        audit::Event::ok(provider.id, event, &actor, &target),
        gateway.clock.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(api::WebhookSecret {
        provider_id: target,
        secret: secret.expose_secret().to_owned(),
    })
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    event_id: Uuid,
    status: String,
    attempts: i32,
    last_error: String,
    challenge_id: String,
    created_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
    next_attempt_at: DateTime<Utc>,
}

fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    vigil_proto::to_timestamp(SystemTime::from(t))
}

pub async fn list_deliveries(
    gateway: &Gateway,
    scope: AdminScope,
    req: api::ListWebhookDeliveriesRequest,
) -> Result<api::ListWebhookDeliveriesResponse, GatewayError> {
    let provider = existing(gateway, scope, &req.provider_id).await?;
    let limit = match req.limit {
        0 => 20,
        n @ 1..=100 => n,
        _ => return Err(GatewayError::InvalidArgument("limit is at most 100".into())),
    };
    let rows: Vec<DeliveryRow> = sqlx::query_as(
        "SELECT event_id, status, attempts, last_error, challenge_id, created_at, delivered_at, next_attempt_at
         FROM fraud_notifications WHERE provider_id = $1 ORDER BY created_at DESC, event_id DESC LIMIT $2",
    )
    .bind(provider.id)
    .bind(i64::from(limit))
    .fetch_all(&gateway.pool)
    .await?;
    Ok(api::ListWebhookDeliveriesResponse {
        deliveries: rows
            .into_iter()
            .map(|r| api::WebhookDelivery {
                id: fraud_webhook::webhook_id(r.event_id),
                next_attempt_at: (r.status == "pending").then(|| timestamp(r.next_attempt_at)),
                status: r.status,
                attempts: u32::try_from(r.attempts).unwrap_or(0),
                last_error: r.last_error,
                challenge_id: r.challenge_id,
                created_at: Some(timestamp(r.created_at)),
                delivered_at: r.delivered_at.map(timestamp),
            })
            .collect(),
    })
}
