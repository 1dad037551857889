//! Waiting for a challenge to move, without polling: the challenge service
//! publishes `vigil.challenge.delivered` and `vigil.challenge.completed`
//! (through its outbox, so on JetStream subjects); one core-NATS
//! subscription per gateway hears them and wakes whoever follows that
//! challenge. The follower then re-reads the state with the agent's own
//! provider, so an event never tells anyone more than GetAuthStatus would.
//! Core NATS delivers at most once, so a slow re-read also runs now and then.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use futures::StreamExt;
use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;
use vigil_bus::{envelope, subjects};
use vigil_proto::{
    events::{ChallengeCompleted, ChallengeDelivered},
    rpc,
    v1::{ChallengeState, Reason},
};

use crate::{agent_api::status, app::Gateway, auth::AgentIdentity};

/// Re-read the state this often even without a notification.
const FALLBACK_EVERY: Duration = Duration::from_secs(5);
/// While the challenge service does not answer, ask again this often.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// After the challenge's expiry, how long its final state may take to show.
const EXPIRY_GRACE: Duration = Duration::from_secs(5);
/// How long the challenge service may stay silent before the wait ends as
/// `unavailable`: an agent is told "no" rather than kept waiting blind.
const SILENCE_LIMIT: Duration = Duration::from_secs(10);
const CANNOT_TELL: &str = "Vigil cannot tell whether the user answered; the login is denied";

/// Who is waiting on which challenge.
#[derive(Default)]
pub struct Watchers {
    senders: Mutex<HashMap<String, watch::Sender<u64>>>,
}

/// A follower's interest in one challenge; dropping it forgets the challenge
/// once nobody else follows it.
pub struct Subscription {
    watchers: Arc<Watchers>,
    challenge_id: String,
    rx: Option<watch::Receiver<u64>>,
}

impl Watchers {
    fn map(&self) -> MutexGuard<'_, HashMap<String, watch::Sender<u64>>> {
        self.senders.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn subscribe(self: &Arc<Self>, challenge_id: &str) -> Subscription {
        let rx = self
            .map()
            .entry(challenge_id.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        Subscription {
            watchers: self.clone(),
            challenge_id: challenge_id.to_owned(),
            rx: Some(rx),
        }
    }

    /// Wakes the followers of `challenge_id`, if any.
    pub fn notify(&self, challenge_id: &str) {
        if let Some(sender) = self.map().get(challenge_id) {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    #[cfg(test)]
    fn followed(&self) -> usize {
        self.map().len()
    }
}

impl Subscription {
    /// Returns once the challenge moved (or may have) since the last call.
    async fn changed(&mut self) {
        if let Some(rx) = self.rx.as_mut()
            && rx.changed().await.is_ok()
        {
            return;
        }
        // Cannot happen while this subscription lives; wait for the other wake-ups.
        std::future::pending().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.rx.take());
        let mut map = self.watchers.map();
        if map.get(&self.challenge_id).is_some_and(|s| s.receiver_count() == 0) {
            map.remove(&self.challenge_id);
        }
    }
}

/// The challenge id a state-change event is about, if it is one.
fn changed_challenge(payload: &[u8]) -> Option<String> {
    let envelope = envelope::decode_envelope(payload).ok()?;
    if let Ok(done) = envelope::unwrap::<ChallengeCompleted>(&envelope) {
        return Some(done.challenge_id);
    }
    envelope::unwrap::<ChallengeDelivered>(&envelope)
        .ok()
        .map(|d| d.challenge_id)
}

/// Hears every challenge state change until `shutdown`, resubscribing
/// after a lost connection.
pub async fn listen(watchers: Arc<Watchers>, nats: async_nats::Client, shutdown: CancellationToken) {
    loop {
        match nats.subscribe(subjects::CHALLENGE_STATE_CHANGES).await {
            Ok(mut changes) => loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    message = changes.next() => match message {
                        Some(message) => {
                            if let Some(id) = changed_challenge(&message.payload) {
                                watchers.notify(&id);
                            }
                        }
                        None => break,
                    },
                }
            },
            Err(error) => tracing::warn!(%error, "cannot subscribe to challenge state changes; retrying"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(RETRY_EVERY) => {}
        }
    }
}

fn is_open(state: ChallengeState) -> bool {
    matches!(state, ChallengeState::Pending | ChallengeState::Delivered)
}

/// The challenge service did not answer (as opposed to "no such challenge").
fn unanswered(reply: &rpc::StatusReply) -> bool {
    reply.state == ChallengeState::Unspecified as i32 && reply.reason == Reason::Unavailable as i32
}

fn ended(state: ChallengeState, reason: Reason, message: &str) -> rpc::StatusReply {
    rpc::StatusReply {
        state: state as i32,
        reason: reason as i32,
        message: message.to_owned(),
        ..Default::default()
    }
}

/// Follows `challenge_id` for at most `limit` (and never past its expiry
/// plus a grace): `on_change` sees the first state and every change, and
/// may return `false` to stop. Returns the final state; when time runs out
/// that is `expired`, and when the challenge service cannot be reached it
/// is reason `unavailable`. Never an approval that did not happen.
pub async fn follow(
    gateway: &Gateway,
    agent: &AgentIdentity,
    challenge_id: &str,
    limit: Duration,
    mut on_change: impl FnMut(&rpc::StatusReply) -> bool,
) -> rpc::StatusReply {
    // Subscribed before the first read, so no change can slip in between.
    let mut changes = gateway.watchers.subscribe(challenge_id);
    let mut deadline = Instant::now() + limit;
    let mut last: Option<(i32, i32)> = None;
    let mut silent_since: Option<Instant> = None;
    loop {
        let reply = status(gateway, agent, challenge_id.to_owned()).await;
        let troubled = unanswered(&reply);
        if troubled {
            if silent_since.get_or_insert_with(Instant::now).elapsed() >= SILENCE_LIMIT {
                let done = ended(ChallengeState::Unspecified, Reason::Unavailable, CANNOT_TELL);
                on_change(&done);
                return done;
            }
        } else {
            silent_since = None;
            if let Some(expires) = vigil_proto::from_timestamp(reply.expires_at.as_ref()) {
                let left = expires.duration_since(std::time::SystemTime::now()).unwrap_or_default();
                deadline = deadline.min(Instant::now() + left + EXPIRY_GRACE);
            }
            if last != Some((reply.state, reply.reason)) {
                last = Some((reply.state, reply.reason));
                if !on_change(&reply) {
                    return reply;
                }
            }
            // Final, or no such challenge (state unspecified): nothing more will come.
            if !is_open(ChallengeState::try_from(reply.state).unwrap_or_default()) {
                return reply;
            }
        }
        tokio::select! {
            () = changes.changed() => {}
            () = tokio::time::sleep(if troubled { RETRY_EVERY } else { FALLBACK_EVERY }) => {}
            () = tokio::time::sleep_until(deadline) => {
                // One last look: the answer may have come at the very end.
                let reply = status(gateway, agent, challenge_id.to_owned()).await;
                let state = ChallengeState::try_from(reply.state).unwrap_or_default();
                if !unanswered(&reply) && !is_open(state) {
                    if last != Some((reply.state, reply.reason)) {
                        on_change(&reply);
                    }
                    return reply;
                }
                let done = if unanswered(&reply) {
                    ended(ChallengeState::Unspecified, Reason::Unavailable, CANNOT_TELL)
                } else {
                    ended(ChallengeState::Expired, Reason::Expired, "the user did not answer in time")
                };
                on_change(&done);
                return done;
            }
            () = gateway.shutdown.cancelled() => {
                let done = ended(ChallengeState::Unspecified, Reason::Unavailable, "the gateway is shutting down; the login is denied");
                on_change(&done);
                return done;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_notification_wakes_the_follower_and_the_entry_goes_with_it() {
        let watchers = Arc::new(Watchers::default());
        let mut first = watchers.subscribe("chl_a");
        let second = watchers.subscribe("chl_a");
        watchers.notify("chl_b");
        watchers.notify("chl_a");
        tokio::time::timeout(Duration::from_secs(5), first.changed())
            .await
            .expect("woken");
        drop(first);
        assert_eq!(watchers.followed(), 1, "still followed by the second");
        drop(second);
        assert_eq!(watchers.followed(), 0);
    }

    #[test]
    fn only_state_changes_name_a_challenge() {
        let now = std::time::SystemTime::now();
        let completed = envelope::wrap(
            "prv_x",
            &ChallengeCompleted {
                challenge_id: "chl_1".into(),
                ..Default::default()
            },
            now,
        );
        let delivered = envelope::wrap(
            "prv_x",
            &ChallengeDelivered {
                challenge_id: "chl_2".into(),
                ..Default::default()
            },
            now,
        );
        let created = envelope::wrap(
            "prv_x",
            &vigil_proto::events::ChallengeCreated {
                challenge_id: "chl_3".into(),
                ..Default::default()
            },
            now,
        );
        use prost::Message;
        assert_eq!(changed_challenge(&completed.encode_to_vec()).as_deref(), Some("chl_1"));
        assert_eq!(changed_challenge(&delivered.encode_to_vec()).as_deref(), Some("chl_2"));
        assert_eq!(changed_challenge(&created.encode_to_vec()), None);
        assert_eq!(changed_challenge(b"not an envelope"), None);
    }
}
