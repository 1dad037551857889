//! Client for a Twilio-style Messages and Calls API, TwiML, plus Twilio's webhook signature
//! scheme. Shared by Vigil's telephony service and the carrier simulator so
//! both sides of every exchange speak the same wire format.

mod calls;
mod client;
mod error;
pub mod signature;
pub mod twiml;
mod types;

pub use calls::{CallResource, CallStatusCallback, CreateCall};
pub use client::{API_VERSION, MessagesClient};
pub use error::TwilioError;
pub use types::{ApiError, InboundSms, MessageResource, SendSms, StatusCallback};

// Re-exported so callers can build a client without naming these crates.
pub use secrecy::SecretString;
pub use url::Url;
