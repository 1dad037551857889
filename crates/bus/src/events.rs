//! Which payload travels on which subject.

use vigil_proto::events::{
    AuthenticationUsage, ChallengeCompleted, ChallengeCreated, ChallengeDelivered, DeliveryAnswered, DeliveryRequested,
    DeliveryStatus, FraudReported, ProviderCreated, ProviderUpdated, TelephonyUsage, UserCreated, UserDeleted,
    UserStatusChanged,
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
event!(ProviderUpdated, subjects::PROVIDER_UPDATED);
event!(UserCreated, subjects::USER_CREATED);
event!(UserStatusChanged, subjects::USER_STATUS_CHANGED);
event!(UserDeleted, subjects::USER_DELETED);
event!(ChallengeCreated, subjects::CHALLENGE_CREATED);
event!(ChallengeCompleted, subjects::CHALLENGE_COMPLETED);
event!(ChallengeDelivered, subjects::CHALLENGE_DELIVERED);
event!(DeliveryRequested, subjects::DELIVERY_REQUESTED);
event!(DeliveryStatus, subjects::DELIVERY_STATUS);
event!(DeliveryAnswered, subjects::DELIVERY_ANSWERED);
event!(AuthenticationUsage, subjects::USAGE_AUTHENTICATION);
event!(TelephonyUsage, subjects::USAGE_TELEPHONY);
event!(FraudReported, subjects::FRAUD_REPORTED);
