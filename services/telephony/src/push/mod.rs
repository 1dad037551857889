//! Push: the FCM-style send client and the endpoint devices answer on.

pub mod answer;
pub mod fcm;

pub use fcm::FcmClient;
