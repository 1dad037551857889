//! `POST /v1/carrier/twilio/status`: the carrier reports on a message.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{RawForm, State, rejection::RawFormRejection},
    http::{HeaderMap, StatusCode},
};

use sqlx::{PgPool, Postgres, pool::PoolConnection};

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

    let Some((mut connection, delivery)) = find_delivery(&app.pool, sid).await? else {
        return Err(WebhookError::UnknownMessage(sid.to_owned()));
    };
    let callback = db::Callback {
        delivery: Some(delivery.id),
        carrier,
        kind: "message_status",
        carrier_ref: Some(sid),
        status,
        detail: error.as_deref(),
    };
    // Written only if the delivery still moves: the statement decides,
    // under the delivery's lock.
    let mut events = app.outbox.batch(&delivery.provider_id);
    events.push(&delivery.status_event(next, error.as_deref()))?;
    let Some(recorded) = db::record_status(&mut connection, &callback, next, error.as_deref(), &events.rows()).await?
    else {
        return Err(WebhookError::UnknownMessage(sid.to_owned()));
    };
    if !recorded.moved {
        tracing::debug!(delivery_id = %delivery.id, state = recorded.previous.as_str(), status, "no change");
        return Ok(StatusCode::NO_CONTENT);
    }
    crate::metrics::delivery_state(&delivery, next);
    app.outbox.notify();
    tracing::info!(
        delivery_id = %delivery.id,
        challenge_id = %delivery.challenge_id,
        from = recorded.previous.as_str(),
        to = next.as_str(),
        error = error.as_deref(),
        "delivery state changed"
    );
    Ok(StatusCode::NO_CONTENT)
}

/// The delivery the carrier knows as `sid`, allowing for [`COMMIT_GRACE`]:
/// read again after each pause, with no connection held while it waits.
/// Returns the connection it was found on, for the write that follows.
async fn find_delivery(pool: &PgPool, sid: &str) -> Result<Option<(PoolConnection<Postgres>, Delivery)>, sqlx::Error> {
    let mut pauses = COMMIT_GRACE.iter();
    loop {
        let mut connection = pool.acquire().await?;
        if let Some(delivery) = db::delivery_by_carrier_ref(&mut connection, sid).await? {
            return Ok(Some((connection, delivery)));
        }
        drop(connection);
        let Some(pause) = pauses.next() else {
            return Ok(None);
        };
        tokio::time::sleep(*pause).await;
    }
}
