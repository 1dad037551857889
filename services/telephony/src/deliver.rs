//! The `telephony-delivery` consumer: turns each `DeliveryRequested` into a
//! message at the carrier, and reports the outcome as a `DeliveryStatus`.
//!
//! Everything runs in the consumer's transaction, which also records the
//! envelope id; the carrier is called inside it. A crash after the carrier
//! accepted but before the commit sends the message again on redelivery:
//! a second SMS is better than none.

use sqlx::PgConnection;
use vigil_bus::{Handler, HandlerError, Outbox, Received, envelope};
use vigil_core::{ChallengeId, DeliveryId, PhoneNumber, ProviderId};
use vigil_proto::events::DeliveryRequested;

use crate::{
    carrier::{self, SmsCarrier},
    db::{self, NewDelivery},
    model::{Channel, Delivery, DeliveryState},
};

pub struct DeliveryHandler {
    pub carrier: SmsCarrier,
    pub outbox: Outbox,
}

impl Handler for DeliveryHandler {
    async fn handle(&self, tx: &mut PgConnection, event: Received<'_>) -> Result<(), HandlerError> {
        let request: DeliveryRequested = envelope::unwrap(event.envelope)?;
        let outcome = self.deliver(tx, &event.envelope.provider_id, &request).await;
        // The consumer commits right after we return; the relay's own polling
        // covers the case where it looks before the commit lands.
        self.outbox.notify();
        outcome
    }
}

impl DeliveryHandler {
    async fn deliver(
        &self,
        tx: &mut PgConnection,
        provider_id: &str,
        request: &DeliveryRequested,
    ) -> Result<(), HandlerError> {
        let id = DeliveryId::parse(&request.delivery_id)
            .map_err(|e| HandlerError::Reject(format!("delivery_id {:?}: {e}", request.delivery_id)))?;
        let challenge = ChallengeId::parse(&request.challenge_id)
            .map_err(|e| HandlerError::Reject(format!("challenge_id {:?}: {e}", request.challenge_id)))?;
        let provider = ProviderId::parse(provider_id)
            .map_err(|e| HandlerError::Reject(format!("provider_id {provider_id:?}: {e}")))?;
        let channel = match Channel::from_wire(request.channel) {
            Some(Channel::Sms) => Channel::Sms,
            other => {
                let name = other.map_or("unspecified", Channel::as_str);
                tracing::error!(delivery_id = %id, channel = name, "delivery channel not yet supported");
                return Err(HandlerError::Reject(format!("channel {name} is not yet supported")));
            }
        };

        db::insert_delivery(
            tx,
            &NewDelivery {
                id,
                provider_id: &provider.to_string(),
                challenge_id: &challenge.to_string(),
                channel,
                destination: &request.destination,
                carrier: carrier::TWILIO,
            },
        )
        .await?;
        // Locked, so a second request for the same delivery waits for this
        // one and then finds it past `queued`.
        let Some(delivery) = db::lock_delivery(tx, id).await? else {
            return Err(HandlerError::Retry(format!("delivery {id} vanished after insert")));
        };
        if delivery.state != DeliveryState::Queued {
            tracing::info!(delivery_id = %id, state = delivery.state.as_str(), "delivery already handled");
            return Ok(());
        }

        let Ok(to) = PhoneNumber::parse(&request.destination) else {
            tracing::warn!(delivery_id = %id, "destination is not an E.164 number; delivery failed");
            return self
                .fail(tx, &delivery, "destination is not an E.164 phone number", 0)
                .await;
        };
        match self.carrier.send(&to, &request.body).await {
            Ok(accepted) => {
                db::record_sent(tx, id, &accepted.carrier_ref, accepted.attempts).await?;
                let sent = Delivery {
                    carrier_ref: Some(accepted.carrier_ref),
                    ..delivery
                };
                self.outbox
                    .enqueue(tx, &sent.provider_id, &sent.status_event(DeliveryState::Sent, None))
                    .await?;
                tracing::info!(
                    delivery_id = %id,
                    challenge_id = %sent.challenge_id,
                    to = %to.masked(),
                    carrier_ref = sent.carrier_ref.as_deref().unwrap_or_default(),
                    attempts = accepted.attempts,
                    "SMS sent"
                );
                Ok(())
            }
            Err(refused) => {
                tracing::warn!(
                    delivery_id = %id,
                    to = %to.masked(),
                    error = %refused.reason,
                    attempts = refused.attempts,
                    "SMS could not be sent; delivery failed"
                );
                self.fail(tx, &delivery, &refused.reason, refused.attempts).await
            }
        }
    }

    /// Marks the delivery failed and reports it.
    async fn fail(
        &self,
        tx: &mut PgConnection,
        delivery: &Delivery,
        reason: &str,
        attempts: u32,
    ) -> Result<(), HandlerError> {
        db::set_state(tx, delivery.id, DeliveryState::Failed, Some(reason), attempts).await?;
        self.outbox
            .enqueue(
                tx,
                &delivery.provider_id,
                &delivery.status_event(DeliveryState::Failed, Some(reason)),
            )
            .await?;
        Ok(())
    }
}
