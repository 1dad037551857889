//! Ends challenges whose lifetime passed without an answer, so an agent
//! polling a challenge nobody answers sees `expired`, never `pending` forever.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;
use vigil_core::{ChallengeId, UserId};
use vigil_proto::{
    events::ChallengeCompleted,
    v1::{ChallengeState, Reason},
};

use crate::service::{Service, ServiceError};

pub async fn run(service: Arc<Service>, every: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return,
        }
        match sweep(&service).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "expired overdue challenges"),
            Err(error) => tracing::warn!(error = %error, "expiry sweep failed"),
        }
    }
}

async fn sweep(service: &Service) -> Result<usize, ServiceError> {
    let mut tx = service.pool.begin_with(crate::store::EXPIRY_TRANSACTION).await?;
    let expired = crate::store::expire_overdue(&mut tx, service.clock.now(), 500).await?;
    for row in &expired {
        let event = ChallengeCompleted {
            challenge_id: ChallengeId::from_uuid(row.id).to_string(),
            user_id: UserId::from_uuid(row.user_id).to_string(),
            state: ChallengeState::Expired as i32,
            reason: Reason::Expired as i32,
        };
        service.outbox.enqueue(&mut tx, &row.provider_id, &event).await?;
    }
    tx.commit().await?;
    if !expired.is_empty() {
        service.outbox.notify();
    }
    Ok(expired.len())
}
