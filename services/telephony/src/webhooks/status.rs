//! `POST /v1/carrier/twilio/status`: the carrier reports on a message.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{RawForm, State, rejection::RawFormRejection},
    http::{HeaderMap, StatusCode},
};

use sqlx::PgConnection;

use super::{Webhooks, form};
use crate::{
    db,
    error::WebhookError,
    model::{Delivery, DeliveryState},
};

/// A carrier may call back as soon as it has accepted a message, before the
/// consumer transaction that stores the message's SID has committed. An
/// unknown SID is looked up again after each of these pauses before it is
/// called unknown.
const COMMIT_GRACE: [Duration; 4] = [
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(400),
];

/// Applies forward moves only: callbacks arrive repeated and out of order,
/// and each real move is announced exactly once.
pub async fn handle(
    State(app): State<Arc<Webhooks>>,
    headers: HeaderMap,
    body: Result<RawForm, RawFormRejection>,
) -> Result<StatusCode, WebhookError> {
    let (params, carrier) = form::verified_by_any(&app.carriers, &app.status_url, &headers, body)?;
    let sid = params.require("MessageSid")?;
    let status = params.require("MessageStatus")?;
    let error = match params.get("ErrorCode").filter(|c| !c.is_empty()) {
        Some(code) if code.bytes().all(|b| b.is_ascii_digit()) => Some(format!("carrier error {code}")),
        Some(_) => {
            return Err(WebhookError::InvalidField {
                field: "ErrorCode",
                reason: "not a number".into(),
            });
        }
        None => None,
    };
    let Some(next) = DeliveryState::from_twilio(status) else {
        tracing::info!(carrier_ref = sid, status, "carrier status not tracked; ignored");
        return Ok(StatusCode::NO_CONTENT);
    };

    let mut tx = app.pool.begin().await?;
    let callback = db::Callback {
        delivery: None,
        carrier,
        kind: "message_status",
        carrier_ref: Some(sid),
        status,
        detail: error.as_deref(),
    };
    let Some(delivery) = find_delivery(&mut tx, &callback).await? else {
        return Err(WebhookError::UnknownMessage(sid.to_owned()));
    };
    if !delivery.state.advances_to(next) {
        tx.commit().await?;
        tracing::debug!(delivery_id = %delivery.id, state = delivery.state.as_str(), status, "no change");
        return Ok(StatusCode::NO_CONTENT);
    }
    db::set_state(&mut tx, delivery.id, next, error.as_deref(), 0).await?;
    let event = delivery.status_event(next, error.as_deref());
    app.outbox.enqueue(&mut tx, &delivery.provider_id, &event).await?;
    crate::metrics::delivery_state(&delivery, next);
    tx.commit().await?;
    app.outbox.notify();
    tracing::info!(
        delivery_id = %delivery.id,
        challenge_id = %delivery.challenge_id,
        from = delivery.state.as_str(),
        to = next.as_str(),
        error = error.as_deref(),
        "delivery state changed"
    );
    Ok(StatusCode::NO_CONTENT)
}

/// Locks the delivery the carrier knows by `callback.carrier_ref` and
/// records `callback` against it, allowing for [`COMMIT_GRACE`]. Each statement of a
/// read-committed transaction sees what committed before it, so retrying
/// inside the transaction works.
async fn find_delivery(tx: &mut PgConnection, callback: &db::Callback<'_>) -> Result<Option<Delivery>, sqlx::Error> {
    for pause in COMMIT_GRACE {
        if let Some(delivery) = db::lock_by_carrier_ref_recording(tx, callback).await? {
            return Ok(Some(delivery));
        }
        tokio::time::sleep(pause).await;
    }
    db::lock_by_carrier_ref_recording(tx, callback).await
}
