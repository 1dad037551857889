//! Push: the FCM-style send client, the endpoint devices enrol at and the
//! one they answer on.

pub mod answer;
pub mod enroll;
pub mod fcm;

pub use fcm::FcmClient;
