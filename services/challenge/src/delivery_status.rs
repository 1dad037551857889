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

/// Commits its own work: every move is guarded by the challenge's state in
/// the statement that writes it, so a repeated or late report changes
/// nothing, and the report that moves nothing (a second `sent`, `delivered`
/// after the login ended: most of them) costs one read and no commit.
impl Handler for DeliveryStatusHandler {
    const COMMITS_ITSELF: bool = true;

    async fn handle(&self, connection: &mut PgConnection, event: Received<'_>) -> Result<(), HandlerError> {
        let status: DeliveryStatus = envelope::unwrap(event.envelope)?;
        let Some(id) = challenge_uuid(&status.challenge_id) else {
            return Err(HandlerError::Reject(format!(
                "bad challenge id {:?}",
                status.challenge_id
            )));
        };
        let next = match DeliveryState::try_from(status.state).unwrap_or_default() {
            DeliveryState::Sent | DeliveryState::Delivered => ChallengeState::Delivered,
            DeliveryState::Failed | DeliveryState::Undelivered => ChallengeState::Failed,
            DeliveryState::Queued | DeliveryState::Unspecified => return Ok(()),
        };
        let Some(row) = store::get_challenge(connection, &event.envelope.provider_id, id, false).await? else {
            // Not ours (another provider) or deleted with its user: nothing to move.
            tracing::warn!(challenge_id = %status.challenge_id, "delivery status for an unknown challenge");
            return Ok(());
        };
        if !row.state().can_become(next) {
            return Ok(());
        }
        let now = self.0.clock.now();
        if next == ChallengeState::Delivered {
            // Agents watching the challenge see it move: the event is
            // written by the statement that moves it, if it moves.
            let mut event = self.0.outbox.batch(&row.provider_id);
            event
                .push(&ChallengeDelivered {
                    challenge_id: ChallengeId::from_uuid(row.id).to_string(),
                    user_id: UserId::from_uuid(row.user_id).to_string(),
                })
                .map_err(|e| HandlerError::Retry(e.to_string()))?;
            if store::transition_announcing(connection, row.id, next, "ENROLLED", now, &event.rows()).await? {
                // Wake the relay for the event written here.
                self.0.outbox.notify();
            }
            return Ok(());
        }
        tracing::warn!(challenge_id = %status.challenge_id, error = %status.error, "delivery failed; challenge fails");
        self.0
            .complete_alone(connection, &row, next, Reason::DeliveryFailed, now)
            .await
            .map_err(|e| HandlerError::Retry(e.to_string()))?;
        Ok(())
    }
}
