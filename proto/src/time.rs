//! `google.protobuf.Timestamp` <-> `chrono` is done by hand in two lines
//! rather than pulling another crate's feature.

use prost_types::Timestamp;

/// Converts a UTC instant to the wire type.
pub fn to_timestamp(t: std::time::SystemTime) -> Timestamp {
    Timestamp::from(t)
}

/// Converts the wire type back; `None` when out of range or absent.
pub fn from_timestamp(t: Option<&Timestamp>) -> Option<std::time::SystemTime> {
    t.and_then(|t| std::time::SystemTime::try_from(*t).ok())
}
