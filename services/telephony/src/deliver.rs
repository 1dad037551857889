//! The `telephony-delivery` consumer: records each `DeliveryRequested` and
//! hands it to [`Sender`], which reports the outcome as a `DeliveryStatus`.
//!
//! The handler commits its own work ([`Handler::COMMITS_ITSELF`]): the
//! delivery row with its first try, then each try and the outcome, commit
//! on their own, before and after each carrier call, so a redelivery never
//! sends what a carrier already took (see [`crate::send`] for the window
//! that remains). A redelivered request finds its delivery recorded and
//! settled, or a try in flight, and sends nothing.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
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
    const COMMITS_ITSELF: bool = true;

    /// The consumer runs [`Self::handle_alone`]; the connection handed in
    /// here is not used, as every step takes its own from the sender's pool.
    async fn handle(&self, _connection: &mut PgConnection, event: Received<'_>) -> Result<(), HandlerError> {
        self.deliver(event).await
    }

    async fn handle_alone(&self, _pool: &PgPool, event: Received<'_>) -> Result<(), HandlerError> {
        self.deliver(event).await
    }
}

impl DeliveryHandler {
    async fn deliver(&self, event: Received<'_>) -> Result<(), HandlerError> {
        let request: DeliveryRequested = envelope::unwrap(event.envelope)?;
        let provider_id = event.envelope.provider_id.as_str();
        let request = &request;
        let id = DeliveryId::parse(&request.delivery_id)
            .map_err(|e| HandlerError::Reject(format!("delivery_id {:?}: {e}", request.delivery_id)))?;
        let challenge = ChallengeId::parse(&request.challenge_id)
            .map_err(|e| HandlerError::Reject(format!("challenge_id {:?}: {e}", request.challenge_id)))?;
        let provider = ProviderId::parse(provider_id)
            .map_err(|e| HandlerError::Reject(format!("provider_id {provider_id:?}: {e}")))?
            .to_string();
        let Some(channel) = Channel::from_wire(request.channel) else {
            tracing::error!(delivery_id = %id, "delivery without a channel");
            return Err(HandlerError::Reject("channel is unspecified".to_owned()));
        };
        let now = self.sender.clock.now();
        let expires_at = vigil_proto::from_timestamp(request.expires_at.as_ref())
            .map(DateTime::<Utc>::from)
            .unwrap_or(now + self.default_expiry);
        // Recorded on one connection, given back before the carrier is called.
        let mut connection = self.sender.pool.acquire().await?;
        // Worded as the provider wants it, before anything is recorded or sent.
        let request = &crate::templates::apply(&mut connection, &provider, request, now, expires_at).await?;
        let voice_mode = (channel == Channel::Voice).then(|| VoiceMode::from_wire(request.voice_mode));
        let is_push = channel == Channel::Push;
        let target = target(channel, request);
        // A delivery that can go out now has its first try recorded with it.
        let sendable = target.is_ok() && now < expires_at;

        let recorded = db::record_delivery(
            &mut connection,
            &NewDelivery {
                id,
                provider_id: &provider,
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
            sendable,
        )
        .await?;
        let (delivery, first_try) = match recorded {
            Some(delivery) => (delivery, sendable.then_some(1)),
            // Recorded before: `deliver` finds out whether anything is left to do.
            None => match db::delivery(&mut connection, id).await? {
                Some(delivery) => (delivery, None),
                None => return Err(HandlerError::Retry(format!("delivery {id} vanished"))),
            },
        };
        drop(connection);
        let target = match target {
            Ok(target) => target,
            Err(reason) => {
                tracing::warn!(delivery_id = %id, error = reason, "delivery cannot be sent");
                return self.sender.fail(&delivery, reason).await;
            }
        };
        self.sender
            .deliver(&delivery, &target, request, expires_at, first_try)
            .await
    }
}

/// Where the request asks to deliver, or why it cannot be sent at all.
fn target(channel: Channel, request: &DeliveryRequested) -> Result<Target, &'static str> {
    match channel {
        Channel::Sms | Channel::Voice => PhoneNumber::parse(&request.destination)
            .map(Target::Phone)
            .map_err(|_| "destination is not an E.164 phone number"),
        Channel::Push if request.destination.trim().is_empty() || request.device_id.is_empty() => {
            Err("push needs a registration token and a device")
        }
        Channel::Push if request.device_public_key.len() != 32 => Err("device public key is not a 32-byte Ed25519 key"),
        Channel::Push => Ok(Target::Device {
            token: request.destination.clone(),
        }),
    }
}
