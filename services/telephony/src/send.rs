//! Getting one delivery to a carrier: each try recorded, retryable failures
//! retried with exponential backoff (never past the delivery's expiry), the
//! next carrier tried when one gives up, and the send guarded so a
//! redelivered request does not send again.
//!
//! The guard: before each try a `pending` attempt row is committed (the
//! first one with the delivery itself); right after the carrier answers it
//! is settled, and an accepted delivery moves to `sent` in the same
//! transaction. A redelivery finds `sent` (or an attempt in flight) and
//! does nothing. What remains at-least-once: a crash
//! after the carrier accepted and before that settling commit (one HTTP
//! response plus one small transaction) leaves a `pending` attempt whose
//! outcome is unknown; after [`IN_FLIGHT_GRACE`] a redelivery marks it
//! `unknown` and sends again, because a second SMS or call beats none.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use vigil_bus::{HandlerError, Outbox};
use vigil_core::{Clock, PhoneNumber};
use vigil_proto::events::DeliveryRequested;

use crate::{
    carrier::{self, Accepted, Carrier, RetryPolicy, SendError},
    config::{PUSH_ANSWER_PATH, STATUS_CALLBACK_PATH, VOICE_PATH},
    db, metrics,
    model::{Channel, Delivery, DeliveryState},
    push::{FcmClient, fcm::FCM},
    usage,
};

/// A `pending` attempt younger than this is taken to be in flight on
/// another replica (or an earlier delivery of the same request).
pub const IN_FLIGHT_GRACE: Duration = Duration::from_secs(30);

/// Where a delivery goes.
pub enum Target {
    Phone(PhoneNumber),
    Device { token: String },
}

/// Everything that sends.
pub struct Sender {
    /// Each step takes a connection and gives it back before the next call
    /// out: a slow carrier holds no connection while it answers.
    pub pool: PgPool,
    pub outbox: Outbox,
    pub carriers: Vec<Carrier>,
    pub push: FcmClient,
    pub retry: RetryPolicy,
    pub clock: Arc<dyn Clock>,
    /// `public_base_url` without a trailing slash.
    pub public_base: String,
    pub call_ring_seconds: u32,
}

/// Whether to go on trying.
enum Claim {
    /// Try number `n` is recorded as pending: call the carrier.
    Go(i32),
    /// Sent, failed or answered already: nothing to do.
    Done,
}

impl Sender {
    /// The routes a channel can take, in order.
    fn routes(&self, channel: Channel) -> Vec<Option<&Carrier>> {
        match channel {
            Channel::Push => vec![None],
            Channel::Sms | Channel::Voice => self.carriers.iter().map(Some).collect(),
        }
    }

    /// The longest [`Self::deliver`] may take, for the consumer's ack wait.
    pub fn worst_case(&self) -> Duration {
        let per_carrier = self.retry.worst_case(carrier::REQUEST_TIMEOUT);
        per_carrier.saturating_mul(u32::try_from(self.carriers.len().max(1)).unwrap_or(u32::MAX))
    }

    /// Sends `delivery` (already recorded) until a carrier takes it, every
    /// carrier has given up, or it expires; the outcome is committed and
    /// announced before this returns. `first_try` is the attempt already
    /// recorded as pending with the delivery, at the first route. Each
    /// step commits its own transaction, on a connection of its own.
    pub async fn deliver(
        &self,
        delivery: &Delivery,
        target: &Target,
        request: &DeliveryRequested,
        expires_at: DateTime<Utc>,
        mut first_try: Option<i32>,
    ) -> Result<(), HandlerError> {
        let mut last = SendError {
            reason: "no carrier is configured".to_owned(),
            retryable: false,
            request_invalid: false,
        };
        for route in self.routes(delivery.channel) {
            let name = route.map_or(FCM, |c| c.name.as_str());
            for tried in 1..=self.retry.attempts {
                let attempt = match first_try.take() {
                    Some(attempt) => attempt,
                    None => {
                        if self.clock.now() >= expires_at {
                            return self.fail(delivery, "expired before a carrier accepted it").await;
                        }
                        match self.claim(delivery, name).await? {
                            Claim::Go(attempt) => attempt,
                            Claim::Done => return Ok(()),
                        }
                    }
                };
                let outcome = self.try_once(route, delivery, target, request).await;
                metrics::attempt(delivery.channel, name, outcome.as_ref().map(|_| ()));
                match outcome {
                    Ok(accepted) => return self.accepted(delivery, attempt, name, accepted).await,
                    Err(error) => {
                        self.settle_failed(delivery, attempt, &error).await?;
                        let give_up_here = !error.retryable || tried == self.retry.attempts;
                        last = error;
                        if last.request_invalid {
                            return self.fail(delivery, &last.reason).await;
                        }
                        if give_up_here {
                            break;
                        }
                        let pause = self.retry.delay_after(tried);
                        let left = (expires_at - self.clock.now()).to_std().unwrap_or_default();
                        if pause >= left {
                            return self.fail(delivery, &last.reason).await;
                        }
                        tokio::time::sleep(pause).await;
                    }
                }
            }
            if route.is_some() && self.carriers.len() > 1 {
                tracing::warn!(delivery_id = %delivery.id, carrier = name, error = %last.reason, "carrier gave up; failing over");
            }
        }
        self.fail(delivery, &last.reason).await
    }

    async fn try_once(
        &self,
        route: Option<&Carrier>,
        delivery: &Delivery,
        target: &Target,
        request: &DeliveryRequested,
    ) -> Result<Accepted, SendError> {
        match (route, target, delivery.channel) {
            (Some(carrier), Target::Phone(to), Channel::Sms) => {
                let callback = format!("{}{STATUS_CALLBACK_PATH}", self.public_base);
                carrier.send_sms(to, &request.body, &callback).await
            }
            (Some(carrier), Target::Phone(to), Channel::Voice) => {
                let flow = format!("{}{VOICE_PATH}/{}", self.public_base, delivery.id);
                carrier
                    .place_call(to, flow.clone(), format!("{flow}/status"), self.call_ring_seconds)
                    .await
            }
            (None, Target::Device { token }, Channel::Push) => self.push.send(token, &push_data(self, request)).await,
            _ => Err(SendError {
                reason: "channel and destination do not match".to_owned(),
                retryable: false,
                request_invalid: true,
            }),
        }
    }

    /// Records the next try as pending, unless the delivery is settled or a
    /// try is in flight elsewhere (then the request is retried later).
    async fn claim(&self, delivery: &Delivery, carrier: &str) -> Result<Claim, HandlerError> {
        let mut tx = self.pool.begin().await?;
        let Some(current) = db::lock_delivery(&mut tx, delivery.id).await? else {
            return Err(HandlerError::Retry(format!("delivery {} vanished", delivery.id)));
        };
        if current.state != DeliveryState::Queued {
            return Ok(Claim::Done);
        }
        let next = match db::latest_attempt(&mut tx, delivery.id).await? {
            None => 1,
            Some(a) if a.outcome == "pending" => {
                let age = (self.clock.now() - a.started_at).to_std().unwrap_or_default();
                if age < IN_FLIGHT_GRACE {
                    return Err(HandlerError::Retry(format!(
                        "delivery {} has a try in flight",
                        delivery.id
                    )));
                }
                tracing::warn!(
                    delivery_id = %delivery.id,
                    attempt = a.attempt,
                    "an earlier try's outcome was lost; sending again (at-least-once)"
                );
                db::finish_attempt(&mut tx, delivery.id, a.attempt, "unknown", None, None).await?;
                a.attempt + 1
            }
            Some(a) => a.attempt + 1,
        };
        db::begin_attempt(&mut tx, delivery.id, next, carrier).await?;
        tx.commit().await?;
        Ok(Claim::Go(next))
    }

    async fn settle_failed(&self, delivery: &Delivery, attempt: i32, error: &SendError) -> Result<(), HandlerError> {
        let mut tx = self.pool.begin().await?;
        db::finish_attempt(&mut tx, delivery.id, attempt, "failed", None, Some(&error.reason)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Settles the try, moves a queued delivery to `sent` and writes its
    /// events: one statement, which decides under the delivery's lock.
    async fn accepted(
        &self,
        delivery: &Delivery,
        attempt: i32,
        carrier: &str,
        accepted: Accepted,
    ) -> Result<(), HandlerError> {
        let sent = Delivery {
            carrier: carrier.to_owned(),
            carrier_ref: Some(accepted.carrier_ref.clone()),
            ..delivery.clone()
        };
        let mut sent_event = self.outbox.batch(&sent.provider_id);
        sent_event.push(&sent.status_event(DeliveryState::Sent, None))?;
        // A call's cost is known when it ends (the status callback reports it).
        let usage_event = if delivery.channel == Channel::Voice {
            None
        } else {
            let mut usage_event = self.outbox.batch(&sent.provider_id);
            usage_event.push(&usage::event(&sent, carrier, accepted.sms_segments, 0))?;
            Some(usage_event)
        };
        let usage_rows = usage_event.as_ref().map(|events| events.rows());
        let mut connection = self.pool.acquire().await?;
        let Some(recorded) = db::record_accepted(
            &mut connection,
            delivery.id,
            attempt,
            carrier,
            &accepted.carrier_ref,
            &sent_event.rows(),
            usage_rows.as_ref(),
        )
        .await?
        else {
            return Err(HandlerError::Retry(format!("delivery {} vanished", delivery.id)));
        };
        drop(connection);
        if recorded.to_sent {
            metrics::delivery_state(&sent, DeliveryState::Sent);
        }
        if recorded.to_sent || recorded.usage_claimed {
            self.outbox.notify();
        }
        tracing::info!(
            delivery_id = %delivery.id,
            challenge_id = %delivery.challenge_id,
            channel = delivery.channel.as_str(),
            carrier,
            carrier_ref = %accepted.carrier_ref,
            attempt,
            "delivery accepted"
        );
        Ok(())
    }

    /// Marks the delivery failed and reports it, once.
    pub async fn fail(&self, delivery: &Delivery, reason: &str) -> Result<(), HandlerError> {
        let mut tx = self.pool.begin().await?;
        let Some(current) = db::lock_delivery(&mut tx, delivery.id).await? else {
            return Err(HandlerError::Retry(format!("delivery {} vanished", delivery.id)));
        };
        if !current.state.advances_to(DeliveryState::Failed) {
            return Ok(());
        }
        db::set_state(&mut tx, delivery.id, DeliveryState::Failed, Some(reason), 0).await?;
        self.outbox
            .enqueue(
                &mut tx,
                &current.provider_id,
                &current.status_event(DeliveryState::Failed, Some(reason)),
            )
            .await?;
        metrics::delivery_state(&current, DeliveryState::Failed);
        tx.commit().await?;
        self.outbox.notify();
        tracing::warn!(delivery_id = %delivery.id, channel = delivery.channel.as_str(), error = reason, "delivery failed");
        Ok(())
    }
}

/// The push's data: every value a string, as FCM requires.
fn push_data(sender: &Sender, request: &DeliveryRequested) -> BTreeMap<String, String> {
    let choices: Vec<String> = request.match_choices.iter().map(u32::to_string).collect();
    let expires_at = vigil_proto::from_timestamp(request.expires_at.as_ref())
        .map(|t| DateTime::<Utc>::from(t).to_rfc3339())
        .unwrap_or_default();
    BTreeMap::from([
        ("challenge_id".to_owned(), request.challenge_id.clone()),
        ("delivery_id".to_owned(), request.delivery_id.clone()),
        ("text".to_owned(), request.body.clone()),
        ("match_choices".to_owned(), choices.join(",")),
        (
            "callback_url".to_owned(),
            format!("{}{PUSH_ANSWER_PATH}", sender.public_base),
        ),
        ("expires_at".to_owned(), expires_at),
    ])
}
