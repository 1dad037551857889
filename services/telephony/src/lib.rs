//! Vigil's telephony service: consumes `vigil.delivery.requested`, sends each
//! message through the carrier (a Twilio-style API), and turns the carrier's
//! webhooks into `vigil.delivery.status` and `vigil.delivery.answered` events.
//!
//! HTTP routes (on `http_addr`):
//! - `POST /v1/carrier/twilio/status`: message status callbacks (signed).
//! - `POST /v1/carrier/twilio/inbound`: inbound SMS (signed), answered with
//!   empty TwiML.
//! - `GET /healthz`, `GET /readyz`.

mod app;
mod carrier;
mod config;
mod db;
mod deliver;
mod error;
mod model;
mod webhooks;

pub use app::{DELIVERY_CONSUMER, run};
pub use config::{Config, INBOUND_SMS_PATH, STATUS_CALLBACK_PATH, TwilioConfig};
