//! Typed, prefixed, sortable ids (`prv_…`, `usr_…`, `chl_…`): a UUIDv7 behind
//! a prefix, so a log line tells what an id is and ids sort by creation time.

use std::{fmt, str::FromStr};

use chrono::{DateTime, Utc};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("id must start with `{expected}_`")]
    WrongPrefix { expected: &'static str },
    #[error("id has a malformed body")]
    Malformed,
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new id, ordered after every id made before it.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// Parses `prefix_<32 hex>`; anything else is refused.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                let body = s
                    .strip_prefix($prefix)
                    .and_then(|rest| rest.strip_prefix('_'))
                    .ok_or(IdError::WrongPrefix { expected: $prefix })?;
                if body.len() != 32 || !body.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(IdError::Malformed);
                }
                Uuid::parse_str(body).map(Self).map_err(|_| IdError::Malformed)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}_{}", $prefix, self.0.simple())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

typed_id!(
    /// A provider (tenant).
    ProviderId, "prv"
);
typed_id!(
    /// A user of a provider.
    UserId, "usr"
);
typed_id!(
    /// A registered login agent.
    AgentId, "agt"
);
typed_id!(
    /// One attempt to prove a second factor.
    ChallengeId, "chl"
);
typed_id!(
    /// One delivery of a message or call to the user's device.
    DeliveryId, "dlv"
);
typed_id!(
    /// A phone enrolled for push, holding its own signing key.
    DeviceId, "dev"
);

/// The smallest UUIDv7 of `at`'s millisecond: a v7 id minted before that
/// millisecond sorts below it, in Rust as in PostgreSQL (both compare the
/// bytes, and a v7 id starts with its big-endian Unix milliseconds). So
/// "created before `at`" is a range of a v7 primary key, needing no index of
/// its own.
pub fn v7_floor(at: DateTime<Utc>) -> Uuid {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    Uuid::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use vigil_testkit::uuid_v7_at as minted_at;

    use super::*;

    #[test]
    fn ids_minted_before_the_floor_sort_below_it_and_later_ones_do_not() {
        let cutoff: DateTime<Utc> = "2026-08-01T12:00:00.250Z".parse().unwrap();
        let floor = v7_floor(cutoff);
        for _ in 0..100 {
            assert!(minted_at(cutoff - chrono::Duration::milliseconds(1)) < floor);
            assert!(minted_at(cutoff) >= floor);
            assert!(minted_at(cutoff + chrono::Duration::milliseconds(1)) > floor);
            assert!(Uuid::now_v7() > floor);
        }
    }

    #[test]
    fn round_trips_and_refuses_other_prefixes() {
        let id = ProviderId::new();
        let text = id.to_string();
        assert!(text.starts_with("prv_"));
        assert_eq!(ProviderId::parse(&text), Ok(id));
        assert_eq!(UserId::parse(&text), Err(IdError::WrongPrefix { expected: "usr" }));
        assert_eq!(ProviderId::parse("prv_xyz"), Err(IdError::Malformed));
        assert_eq!(
            ProviderId::parse("prv_0123456789abcdef0123456789abcdeg"),
            Err(IdError::Malformed)
        );
        assert!(ProviderId::parse("").is_err());
    }

    #[test]
    fn sorts_by_creation() {
        let a = ChallengeId::new();
        let b = ChallengeId::new();
        assert!(a < b);
        assert!(a.to_string() < b.to_string());
    }
}
