//! The `telephony-delivery` consumer: records each `DeliveryRequested` and
//! hands it to [`Sender`], which reports the outcome as a `DeliveryStatus`.
//!
//! The consumer's own transaction only records the envelope id. The
//! delivery row, each try and the outcome commit on their own, before and
//! after each carrier call, so a redelivery never sends what a carrier
//! already took (see [`crate::send`] for the window that remains).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use vigil_bus::{Handler, HandlerError, Received, envelope};
use vigil_core::{ChallengeId, DeliveryId, PhoneNumber, ProviderId};
use vigil_proto::events::DeliveryRequested;

use crate::{
    carrier,
    db::{self, NewDelivery},
    model::{Channel, VoiceMode},
    send::{Sender, Target},
};

pub struct DeliveryHandler {
    pub sender: Arc<Sender>,
    /// Expiry of requests that carry none.
    pub default_expiry: chrono::Duration,
}

impl Handler for DeliveryHandler {
    async fn handle(&self, _tx: &mut PgConnection, event: Received<'_>) -> Result<(), HandlerError> {
        let request: DeliveryRequested = envelope::unwrap(event.envelope)?;
        self.deliver(&event.envelope.provider_id, &request).await
    }
}

impl DeliveryHandler {
    async fn deliver(&self, provider_id: &str, request: &DeliveryRequested) -> Result<(), HandlerError> {
        let id = DeliveryId::parse(&request.delivery_id)
            .map_err(|e| HandlerError::Reject(format!("delivery_id {:?}: {e}", request.delivery_id)))?;
        let challenge = ChallengeId::parse(&request.challenge_id)
            .map_err(|e| HandlerError::Reject(format!("challenge_id {:?}: {e}", request.challenge_id)))?;
        let provider = ProviderId::parse(provider_id)
            .map_err(|e| HandlerError::Reject(format!("provider_id {provider_id:?}: {e}")))?;
        let Some(channel) = Channel::from_wire(request.channel) else {
            tracing::error!(delivery_id = %id, "delivery without a channel");
            return Err(HandlerError::Reject("channel is unspecified".to_owned()));
        };
        let now = self.sender.clock.now();
        let expires_at = vigil_proto::from_timestamp(request.expires_at.as_ref())
            .map(DateTime::<Utc>::from)
            .unwrap_or(now + self.default_expiry);
        // Worded as the provider wants it, before anything is recorded or sent.
        let request =
            &crate::templates::apply(&self.sender.pool, &provider.to_string(), request, now, expires_at).await?;
        let voice_mode = (channel == Channel::Voice).then(|| VoiceMode::from_wire(request.voice_mode));
        let is_push = channel == Channel::Push;

        let mut tx = self.sender.pool.begin().await?;
        db::insert_delivery(
            &mut tx,
            &NewDelivery {
                id,
                provider_id: &provider.to_string(),
                challenge_id: &challenge.to_string(),
                channel,
                destination: &request.destination,
                carrier: if is_push {
                    crate::push::fcm::FCM
                } else {
                    self.sender
                        .carriers
                        .first()
                        .map_or(carrier::TWILIO, |c| c.name.as_str())
                },
                voice_mode,
                speak: (channel == Channel::Voice).then_some(request.body.as_str()),
                device_id: is_push.then_some(request.device_id.as_str()),
                device_public_key: is_push.then_some(request.device_public_key.as_slice()),
                expires_at,
            },
        )
        .await?;
        let Some(delivery) = db::lock_delivery(&mut tx, id).await? else {
            return Err(HandlerError::Retry(format!("delivery {id} vanished after insert")));
        };
        tx.commit().await?;

        let target = match channel {
            Channel::Sms | Channel::Voice => match PhoneNumber::parse(&request.destination) {
                Ok(number) => Target::Phone(number),
                Err(_) => {
                    tracing::warn!(delivery_id = %id, "destination is not an E.164 number; delivery failed");
                    return self
                        .sender
                        .fail(&delivery, "destination is not an E.164 phone number")
                        .await;
                }
            },
            Channel::Push => {
                if request.destination.trim().is_empty() || request.device_id.is_empty() {
                    return self
                        .sender
                        .fail(&delivery, "push needs a registration token and a device")
                        .await;
                }
                if request.device_public_key.len() != 32 {
                    return self
                        .sender
                        .fail(&delivery, "device public key is not a 32-byte Ed25519 key")
                        .await;
                }
                Target::Device {
                    token: request.destination.clone(),
                }
            }
        };
        self.sender.deliver(&delivery, &target, request, expires_at).await
    }
}
