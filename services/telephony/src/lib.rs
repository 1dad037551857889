//! Vigil's telephony service: consumes `vigil.delivery.requested`, delivers
//! each challenge by SMS, voice call (Twilio-style APIs, with retries and
//! failover across carriers) or push (FCM-style), and turns carrier, phone
//! and device callbacks into `vigil.delivery.status`,
//! `vigil.delivery.answered` and `vigil.usage.telephony` events.
//!
//! HTTP routes (on `http_addr`):
//! - `POST /v1/carrier/twilio/status`: message status callbacks (signed).
//! - `POST /v1/carrier/twilio/inbound`: inbound SMS (signed), answered with
//!   empty TwiML; a reply is a code or a keyword (approve, deny, fraud).
//! - `POST /v1/carrier/twilio/voice/{delivery_id}` (TwiML: greet, gather),
//!   `.../gather` (the digits), `.../status` (the call ended): signed.
//! - `POST /v1/push/answer`: a device's answer, signed with its Ed25519 key.
//! - `GET /healthz`, `GET /readyz`.

mod app;
mod carrier;
mod config;
mod db;
mod deliver;
mod error;
mod metrics;
mod model;
mod push;
pub mod retention;
mod send;
mod sms;
mod templates;
mod usage;
mod webhooks;

pub use app::{DELIVERY_CONSUMER, run, run_with_clock};
pub use config::{
    CarrierConfig, Config, INBOUND_SMS_PATH, PUSH_ANSWER_PATH, PushConfig, STATUS_CALLBACK_PATH, SmsKeywords,
    TwilioConfig, VOICE_PATH,
};
pub use push::answer::SIGNATURE_HEADER as PUSH_SIGNATURE_HEADER;
pub use send::IN_FLIGHT_GRACE;
