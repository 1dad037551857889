//! `POST /v1/carrier/twilio/inbound`: a phone sent us an SMS, normally the
//! answer to a challenge: a code, or a keyword (approve, deny, fraud).

use std::sync::Arc;

use axum::{
    extract::{RawForm, State, rejection::RawFormRejection},
    http::{HeaderMap, header},
    response::IntoResponse,
};
use vigil_core::PhoneNumber;

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
    let (params, _carrier) = form::verified_by_any(&app.carriers, &app.inbound_url, &headers, body)?;
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
    // Keywords mean the same for every provider; the challenge decides
    // whether the delivery asked for a reply and what the answer is worth.
    let kind = app.keywords.classify(text);
    if let Some(delivery) = &answered {
        let event = delivery.answer_event(kind, from.as_str(), text, 0);
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
            kind = kind.as_str(),
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
