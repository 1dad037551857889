//! Moves challenges along as telephony reports on their deliveries.

use std::sync::Arc;

use sqlx::PgConnection;
use vigil_bus::{Handler, HandlerError, Received, envelope};
use vigil_core::{ChallengeId, UserId};
use vigil_proto::{
    events::{ChallengeDelivered, DeliveryState, DeliveryStatus},
    v1::Reason,
};

use crate::{challenges::challenge_uuid, service::Service, state::ChallengeState, store};

pub struct DeliveryStatusHandler(pub Arc<Service>);

impl Handler for DeliveryStatusHandler {
    async fn handle(&self, tx: &mut PgConnection, event: Received<'_>) -> Result<(), HandlerError> {
        let status: DeliveryStatus = envelope::unwrap(event.envelope)?;
        let Some(id) = challenge_uuid(&status.challenge_id) else {
            return Err(HandlerError::Reject(format!(
                "bad challenge id {:?}",
                status.challenge_id
            )));
        };
        let Some(row) = store::get_challenge(tx, &event.envelope.provider_id, id, true).await? else {
            // Not ours (another provider) or deleted with its user: nothing to move.
            tracing::warn!(challenge_id = %status.challenge_id, "delivery status for an unknown challenge");
            return Ok(());
        };
        let now = self.0.clock.now();
        match DeliveryState::try_from(status.state).unwrap_or_default() {
            DeliveryState::Sent | DeliveryState::Delivered => {
                if row.state().can_become(ChallengeState::Delivered)
                    && store::transition(tx, row.id, ChallengeState::Delivered, "ENROLLED", now).await?
                {
                    // Agents watching the challenge see it move.
                    let event = ChallengeDelivered {
                        challenge_id: ChallengeId::from_uuid(row.id).to_string(),
                        user_id: UserId::from_uuid(row.user_id).to_string(),
                    };
                    self.0
                        .outbox
                        .enqueue(tx, &row.provider_id, &event)
                        .await
                        .map_err(|e| HandlerError::Retry(e.to_string()))?;
                }
            }
            DeliveryState::Failed | DeliveryState::Undelivered => {
                tracing::warn!(challenge_id = %status.challenge_id, error = %status.error, "delivery failed; challenge fails");
                self.0
                    .complete(tx, &row, ChallengeState::Failed, Reason::DeliveryFailed, now)
                    .await
                    .map_err(|e| HandlerError::Retry(e.to_string()))?;
            }
            DeliveryState::Queued | DeliveryState::Unspecified => {}
        }
        Ok(())
    }

    fn committed(&self) {
        // Wake the relay for the events written here.
        self.0.outbox.notify();
    }
}
