//! Which payload travels on which subject.

use vigil_proto::events::{
    AuthenticationUsage, ChallengeCompleted, ChallengeCreated, DeliveryAnswered, DeliveryRequested, DeliveryStatus,
    ProviderCreated, UserCreated,
};

use crate::{Event, subjects};

macro_rules! event {
    ($ty:ident, $subject:expr) => {
        impl Event for $ty {
            const SUBJECT: &'static str = $subject;
            const TYPE: &'static str = concat!("vigil.events.v1.", stringify!($ty));
        }
    };
}

event!(ProviderCreated, subjects::PROVIDER_CREATED);
event!(UserCreated, subjects::USER_CREATED);
event!(ChallengeCreated, subjects::CHALLENGE_CREATED);
event!(ChallengeCompleted, subjects::CHALLENGE_COMPLETED);
event!(DeliveryRequested, subjects::DELIVERY_REQUESTED);
event!(DeliveryStatus, subjects::DELIVERY_STATUS);
event!(DeliveryAnswered, subjects::DELIVERY_ANSWERED);
event!(AuthenticationUsage, subjects::USAGE_AUTHENTICATION);
