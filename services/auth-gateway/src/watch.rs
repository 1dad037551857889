//! Waiting for a challenge to move, without polling: the challenge service
//! publishes `vigil.challenge.delivered` and `vigil.challenge.completed`
//! (through its outbox, so on JetStream subjects); core-NATS subscriptions
//! of the gateway hear them and wake whoever follows that challenge. The
//! follower then re-reads the state with the agent's own provider, so an
//! event never tells anyone more than GetAuthStatus would. Core NATS
//! delivers at most once, so a slow re-read also runs now and then.
//!
//! The gateway subscribes only while it follows a challenge (and for
//! [`LINGER`] after): most logins end in their first call and are never
//! followed, and every gateway hearing every login's events would cost
//! each of them, and the server, two messages a login for nothing.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use futures::StreamExt;
use tokio::{
    sync::{Notify, watch},
    time::Instant,
};
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
/// How long the subscriptions outlive the last follower: a gateway with a
/// push login now and then does not subscribe anew for each.
pub const LINGER: Duration = Duration::from_secs(30);

/// Who is waiting on which challenge.
#[derive(Default)]
pub struct Watchers {
    senders: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// Told when the first challenge is followed, so that the listener
    /// subscribes (a permit is kept if it is busy).
    first_followed: Notify,
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
        let mut map = self.map();
        if map.is_empty() {
            self.first_followed.notify_one();
        }
        let rx = map
            .entry(challenge_id.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        drop(map);
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

    /// Wakes every follower, to read its challenge's state again: events
    /// published before the gateway's subscriptions reached the server
    /// were heard by nobody.
    fn notify_all(&self) {
        for sender in self.map().values() {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

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

/// Hears challenge state changes until `shutdown`, while challenges are
/// followed: subscribes when the first one is, and unsubscribes once none
/// has been for [`LINGER`]. Each time the subscriptions are new, or the
/// connection is back after a loss, every follower reads its state again.
pub async fn listen(watchers: Arc<Watchers>, nats: async_nats::Client, shutdown: CancellationToken) {
    listen_lingering(watchers, nats, shutdown, LINGER).await;
}

async fn listen_lingering(
    watchers: Arc<Watchers>,
    nats: async_nats::Client,
    shutdown: CancellationToken,
    linger: Duration,
) {
    loop {
        while watchers.followed() == 0 {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = watchers.first_followed.notified() => {}
            }
        }
        // A flush waits for a connection that may not come back before
        // the gateway stops.
        let subscribed = tokio::select! {
            () = shutdown.cancelled() => return,
            subscribed = subscribe(&nats) => subscribed,
        };
        match subscribed {
            Ok(mut changes) => {
                watchers.notify_all();
                let mut idle = tokio::time::interval_at(Instant::now() + linger, linger);
                // No follower at two ticks in a row, `linger` apart: idle
                // (one that came and went in between has had its answer).
                let mut unfollowed = false;
                // The client subscribes again by itself after a lost
                // connection, but what was published meanwhile is lost: a
                // connection back is a new subscription too. Counted, as a
                // quick reconnection may never show as a state between two
                // looks.
                let statistics = nats.statistics();
                let connects = || statistics.connects.load(std::sync::atomic::Ordering::Relaxed);
                let mut connections = tokio::time::interval(RETRY_EVERY);
                let mut seen = connects();
                loop {
                    tokio::select! {
                        _ = connections.tick() => {
                            let now = connects();
                            if now != seen {
                                tracing::info!("NATS connection back; every follower reads its challenge again");
                                watchers.notify_all();
                            }
                            seen = now;
                        }
                        () = shutdown.cancelled() => return,
                        message = changes.next() => match message {
                            Some(message) => {
                                if let Some(id) = changed_challenge(&message.payload) {
                                    watchers.notify(&id);
                                }
                            }
                            None => break,
                        },
                        _ = idle.tick() => {
                            let now_unfollowed = watchers.followed() == 0;
                            if unfollowed && now_unfollowed {
                                tracing::debug!("no challenge followed; unsubscribing from state changes");
                                break;
                            }
                            unfollowed = now_unfollowed;
                        }
                    }
                }
                // Dropping `changes` unsubscribes.
                continue;
            }
            Err(error) => tracing::warn!(%error, "cannot subscribe to challenge state changes; retrying"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(RETRY_EVERY) => {}
        }
    }
}

/// Both state-change subjects, once the server has them: a flush after
/// the subscriptions returns when the server has answered everything sent
/// before it, so every event published from then on is heard.
async fn subscribe(
    nats: &async_nats::Client,
) -> Result<impl futures::Stream<Item = async_nats::Message> + Unpin + use<>, Box<dyn std::error::Error + Send + Sync>>
{
    let delivered = nats.subscribe(subjects::CHALLENGE_DELIVERED).await?;
    let completed = nats.subscribe(subjects::CHALLENGE_COMPLETED).await?;
    nats.flush().await?;
    Ok(futures::stream::select(delivered, completed))
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
    // Followed before the first read, so no change can slip in between: a
    // change heard from then on wakes this loop, and so do the gateway's
    // subscriptions when they are new (made for this follower, say), for
    // changes made before the server had them.
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

    /// The subjects of `server`'s subscriptions to challenge state changes.
    async fn state_subscriptions(server: &vigil_testkit::NatsServer) -> Vec<String> {
        let mut subjects: Vec<String> = server
            .subscribed_subjects()
            .await
            .unwrap()
            .into_iter()
            .filter(|s| s.starts_with("vigil.challenge."))
            .collect();
        subjects.sort();
        subjects
    }

    async fn until_subscriptions(server: &vigil_testkit::NatsServer, expected: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = state_subscriptions(server).await;
            if now == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "subscriptions {now:?}, expected {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn woken(subscription: &mut Subscription, why: &str) {
        tokio::time::timeout(Duration::from_secs(5), subscription.changed())
            .await
            .unwrap_or_else(|_| panic!("not woken: {why}"));
    }

    /// A gateway hears state changes only while it follows a challenge, and
    /// a follower whose first read came before the subscriptions reached
    /// the server is woken to read again once they have, and again once a
    /// lost connection is back.
    #[tokio::test]
    async fn the_gateway_subscribes_only_while_it_follows_a_challenge() {
        let mut server = vigil_testkit::NatsServer::start().await.unwrap();
        let nats = async_nats::connect(server.url()).await.unwrap();
        let watchers = Arc::new(Watchers::default());
        let shutdown = CancellationToken::new();
        let linger = Duration::from_millis(200);
        let listener = tokio::spawn(listen_lingering(
            watchers.clone(),
            nats.clone(),
            shutdown.clone(),
            linger,
        ));
        let both = [subjects::CHALLENGE_COMPLETED, subjects::CHALLENGE_DELIVERED];

        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            state_subscriptions(&server).await,
            Vec::<String>::new(),
            "nobody follows yet"
        );

        let mut follower = watchers.subscribe("chl_a");
        woken(&mut follower, "the subscriptions are new").await;
        until_subscriptions(&server, &both).await;

        let completed = envelope::wrap(
            "prv_x",
            &ChallengeCompleted {
                challenge_id: "chl_a".into(),
                ..Default::default()
            },
            std::time::SystemTime::now(),
        );
        use prost::Message;
        nats.publish(subjects::CHALLENGE_COMPLETED, completed.encode_to_vec().into())
            .await
            .unwrap();
        woken(&mut follower, "its challenge completed").await;

        // What was published while the connection was down is lost: once
        // it is back, the follower reads again.
        server.restart().await.unwrap();
        woken(&mut follower, "the connection is back").await;
        until_subscriptions(&server, &both).await;

        drop(follower);
        until_subscriptions(&server, &[]).await;

        // Followed again: subscribed again, and the new follower is woken.
        let mut again = watchers.subscribe("chl_b");
        woken(&mut again, "the subscriptions are new again").await;
        until_subscriptions(&server, &both).await;

        shutdown.cancel();
        listener.await.unwrap();
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
