//! A delivery, its state machine and channel, with their text form in the
//! database and their form on the wire.

use chrono::{DateTime, Utc};
use vigil_core::DeliveryId;
use vigil_proto::events as wire;

/// One delivery as the service works with it.
#[derive(Clone)]
pub struct Delivery {
    pub id: DeliveryId,
    pub provider_id: String,
    pub challenge_id: String,
    pub channel: Channel,
    pub state: DeliveryState,
    pub carrier: String,
    pub carrier_ref: Option<String>,
    /// E.164 number or push token. Never logged whole.
    pub destination: String,
    pub voice_mode: Option<VoiceMode>,
    /// The sentence a call speaks.
    pub speak: Option<String>,
    pub device_id: Option<String>,
    pub device_public_key: Option<Vec<u8>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub answered_at: Option<DateTime<Utc>>,
    pub answer_digest: Option<Vec<u8>>,
    pub last_error: Option<String>,
}

// By hand: the destination is a phone number or a push token.
impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.id)
            .field("challenge_id", &self.challenge_id)
            .field("channel", &self.channel)
            .field("state", &self.state)
            .field("carrier", &self.carrier)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// Whether answers may no longer be taken at `now`.
    pub fn expired_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|e| now > e)
    }
}

/// How a call asks the user to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoiceMode {
    /// `#` approves.
    PressPound,
    /// The PIN, then `#`.
    Pin,
}

impl VoiceMode {
    /// Unspecified means the simplest mode.
    pub fn from_wire(mode: i32) -> Self {
        match wire::VoiceMode::try_from(mode) {
            Ok(wire::VoiceMode::Pin) => Self::Pin,
            _ => Self::PressPound,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PressPound => "press_pound",
            Self::Pin => "pin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "press_pound" => Some(Self::PressPound),
            "pin" => Some(Self::Pin),
            _ => None,
        }
    }
}

/// What the user did, as forwarded to the challenge service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Code,
    Approve,
    Deny,
    Fraud,
    Pin,
}

impl Answer {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Code => "code",
            Self::Approve => "approve",
            Self::Deny => "deny",
            Self::Fraud => "fraud",
            Self::Pin => "pin",
        }
    }
}

impl From<Answer> for wire::AnswerKind {
    fn from(answer: Answer) -> Self {
        match answer {
            Answer::Code => Self::Code,
            Answer::Approve => Self::Approve,
            Answer::Deny => Self::Deny,
            Answer::Fraud => Self::Fraud,
            Answer::Pin => Self::Pin,
        }
    }
}

impl Delivery {
    /// The answer event for this delivery.
    pub fn answer_event(&self, answer: Answer, from: &str, body: &str, matched_number: u32) -> wire::DeliveryAnswered {
        wire::DeliveryAnswered {
            challenge_id: self.challenge_id.clone(),
            channel: wire::Channel::from(self.channel).into(),
            from: from.to_owned(),
            body: body.to_owned(),
            kind: wire::AnswerKind::from(answer).into(),
            delivery_id: self.id.to_string(),
            matched_number,
        }
    }

    /// The event announcing that this delivery reached `state`.
    pub fn status_event(&self, state: DeliveryState, error: Option<&str>) -> wire::DeliveryStatus {
        wire::DeliveryStatus {
            delivery_id: self.id.to_string(),
            challenge_id: self.challenge_id.clone(),
            channel: wire::Channel::from(self.channel).into(),
            state: wire::DeliveryState::from(state).into(),
            carrier: self.carrier.clone(),
            carrier_ref: self.carrier_ref.clone().unwrap_or_default(),
            error: error.unwrap_or_default().to_owned(),
        }
    }
}

/// Where a delivery stands. It only ever moves forward:
/// `queued < sent < delivered | undelivered | failed`, and the last three are
/// final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Queued,
    Sent,
    Delivered,
    Undelivered,
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Undelivered => "undelivered",
            Self::Failed => "failed",
        }
    }

    /// Reads the database form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => Self::Queued,
            "sent" => Self::Sent,
            "delivered" => Self::Delivered,
            "undelivered" => Self::Undelivered,
            "failed" => Self::Failed,
            _ => return None,
        })
    }

    /// Maps a Twilio `MessageStatus`. Statuses Vigil does not track
    /// (`receiving`, `received`, ...) give `None`.
    pub fn from_twilio(status: &str) -> Option<Self> {
        Some(match status {
            "accepted" | "scheduled" | "queued" | "sending" => Self::Queued,
            "sent" => Self::Sent,
            "delivered" | "read" => Self::Delivered,
            "undelivered" => Self::Undelivered,
            "failed" | "canceled" => Self::Failed,
            _ => return None,
        })
    }

    fn rank(self) -> u8 {
        match self {
            Self::Queued => 0,
            Self::Sent => 1,
            Self::Delivered | Self::Undelivered | Self::Failed => 2,
        }
    }

    /// Whether moving to `next` is progress. Carriers repeat and reorder
    /// callbacks; anything else is ignored.
    pub fn advances_to(self, next: Self) -> bool {
        next.rank() > self.rank()
    }

    /// Every state, in order.
    pub const ALL: [Self; 5] = [
        Self::Queued,
        Self::Sent,
        Self::Delivered,
        Self::Undelivered,
        Self::Failed,
    ];
}

impl From<DeliveryState> for wire::DeliveryState {
    fn from(state: DeliveryState) -> Self {
        match state {
            DeliveryState::Queued => Self::Queued,
            DeliveryState::Sent => Self::Sent,
            DeliveryState::Delivered => Self::Delivered,
            DeliveryState::Undelivered => Self::Undelivered,
            DeliveryState::Failed => Self::Failed,
        }
    }
}

/// How a delivery reaches the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Sms,
    Voice,
    Push,
}

impl Channel {
    pub fn from_wire(channel: i32) -> Option<Self> {
        match wire::Channel::try_from(channel).ok()? {
            wire::Channel::Sms => Some(Self::Sms),
            wire::Channel::Voice => Some(Self::Voice),
            wire::Channel::Push => Some(Self::Push),
            wire::Channel::Unspecified => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sms => "sms",
            Self::Voice => "voice",
            Self::Push => "push",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "sms" => Self::Sms,
            "voice" => Self::Voice,
            "push" => Self::Push,
            _ => return None,
        })
    }
}

impl From<Channel> for wire::Channel {
    fn from(channel: Channel) -> Self {
        match channel {
            Channel::Sms => Self::Sms,
            Channel::Voice => Self::Voice,
            Channel::Push => Self::Push,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [DeliveryState; 5] = [
        DeliveryState::Queued,
        DeliveryState::Sent,
        DeliveryState::Delivered,
        DeliveryState::Undelivered,
        DeliveryState::Failed,
    ];

    #[test]
    fn text_form_round_trips() {
        for s in ALL {
            assert_eq!(DeliveryState::parse(s.as_str()), Some(s));
        }
        assert_eq!(DeliveryState::parse("lost"), None);
        for c in [Channel::Sms, Channel::Voice, Channel::Push] {
            assert_eq!(Channel::parse(c.as_str()), Some(c));
            assert_eq!(Channel::from_wire(wire::Channel::from(c) as i32), Some(c));
        }
        assert_eq!(Channel::from_wire(0), None);
        assert_eq!(Channel::from_wire(99), None);
    }

    #[test]
    fn only_forward_moves_count() {
        use DeliveryState::*;
        assert!(Queued.advances_to(Sent));
        assert!(Queued.advances_to(Delivered));
        assert!(Sent.advances_to(Delivered));
        assert!(Sent.advances_to(Failed));
        assert!(!Sent.advances_to(Sent), "a repeated callback changes nothing");
        assert!(!Sent.advances_to(Queued));
        assert!(!Delivered.advances_to(Sent));
        // Final states are final, even towards another final state.
        for a in [Delivered, Undelivered, Failed] {
            for b in ALL {
                assert!(!a.advances_to(b), "{a:?} -> {b:?}");
            }
        }
    }

    #[test]
    fn maps_twilio_statuses() {
        assert_eq!(DeliveryState::from_twilio("queued"), Some(DeliveryState::Queued));
        assert_eq!(DeliveryState::from_twilio("sent"), Some(DeliveryState::Sent));
        assert_eq!(DeliveryState::from_twilio("delivered"), Some(DeliveryState::Delivered));
        assert_eq!(
            DeliveryState::from_twilio("undelivered"),
            Some(DeliveryState::Undelivered)
        );
        assert_eq!(DeliveryState::from_twilio("failed"), Some(DeliveryState::Failed));
        assert_eq!(DeliveryState::from_twilio("received"), None);
        assert_eq!(DeliveryState::from_twilio(""), None);
    }
}
