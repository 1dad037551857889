//! `POST /v1/carrier/twilio/inbound`: a phone sent us an SMS, normally the
//! answer to a challenge.

use std::sync::Arc;

use axum::{
    extract::{RawForm, State, rejection::RawFormRejection},
    http::{HeaderMap, header},
    response::IntoResponse,
};
use vigil_core::PhoneNumber;
use vigil_proto::events::{self as wire, DeliveryAnswered};

use super::{Webhooks, form};
use crate::{
    db::{self, InboundMessage},
    error::WebhookError,
    model::Channel,
};

/// TwiML telling the carrier to send nothing back.
const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>";

/// Records the message once per carrier id and, when it comes from a number
/// Vigil sent to, hands it to the challenge as an answer.
pub async fn handle(
    State(app): State<Arc<Webhooks>>,
    headers: HeaderMap,
    body: Result<RawForm, RawFormRejection>,
) -> Result<impl IntoResponse, WebhookError> {
    let params = form::verified(&app.auth_token, &app.inbound_url, &headers, body)?;
    let sid = params.require("MessageSid")?;
    let to = params.require("To")?;
    let from = PhoneNumber::parse(params.require("From")?).map_err(|e| WebhookError::InvalidField {
        field: "From",
        reason: e.to_string(),
    })?;
    // A picture-only message has an empty body; it is still a message.
    let text = params.get("Body").unwrap_or_default();

    let mut tx = app.pool.begin().await?;
    let answered = db::latest_delivery_to(&mut tx, from.as_str(), Channel::Sms).await?;
    let message = InboundMessage {
        carrier_ref: sid,
        from: from.as_str(),
        to,
        body: text,
        delivery: answered.as_ref().map(|d| d.id),
    };
    if !db::insert_inbound(&mut tx, &message).await? {
        tracing::info!(carrier_ref = sid, "inbound SMS already recorded");
        return Ok(twiml());
    }
    if let Some(delivery) = &answered {
        let event = DeliveryAnswered {
            challenge_id: delivery.challenge_id.clone(),
            channel: wire::Channel::Sms.into(),
            from: from.as_str().to_owned(),
            body: text.to_owned(),
            kind: wire::AnswerKind::Code.into(),
            delivery_id: delivery.id.to_string(),
            ..Default::default()
        };
        app.outbox.enqueue(&mut tx, &delivery.provider_id, &event).await?;
    }
    tx.commit().await?;
    app.outbox.notify();
    match answered {
        Some(delivery) => tracing::info!(
            carrier_ref = sid,
            from = %from.masked(),
            delivery_id = %delivery.id,
            challenge_id = %delivery.challenge_id,
            "SMS reply received"
        ),
        None => {
            tracing::info!(carrier_ref = sid, from = %from.masked(), "inbound SMS answers no delivery; recorded only")
        }
    }
    Ok(twiml())
}

fn twiml() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/xml")], EMPTY_TWIML)
}
