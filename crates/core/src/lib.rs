//! Vigil's shared domain vocabulary. Values here are validated by their
//! `parse` constructors, so an invalid one cannot exist past the edge.

pub mod clock;
pub mod ids;
pub mod phone;
pub mod username;

pub use clock::{Clock, ManualClock, SystemClock};
pub use ids::{AgentId, ChallengeId, DeliveryId, DeviceId, IdError, ProviderId, UserId};
pub use phone::{PhoneError, PhoneNumber};
pub use username::{Username, UsernameError};
