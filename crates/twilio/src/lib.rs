//! Client for a Twilio-style Messages API, plus Twilio's webhook signature
//! scheme. Shared by Vigil's telephony service and the carrier simulator so
//! both sides of every exchange speak the same wire format.

mod client;
mod error;
pub mod signature;
mod types;

pub use client::{API_VERSION, MessagesClient};
pub use error::TwilioError;
pub use types::{ApiError, InboundSms, MessageResource, SendSms, StatusCallback};

// Re-exported so callers can build a client without naming these crates.
pub use secrecy::SecretString;
pub use url::Url;
