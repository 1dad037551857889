//! Generated Vigil contracts and the conversions that belong beside them.

#![allow(clippy::derive_partial_eq_without_eq)]

pub mod vigil {
    pub mod v1 {
        tonic::include_proto!("vigil.v1");
    }
    pub mod events {
        pub mod v1 {
            tonic::include_proto!("vigil.events.v1");
        }
    }
    pub mod rpc {
        pub mod v1 {
            tonic::include_proto!("vigil.rpc.v1");
        }
    }
}

pub use vigil::{events::v1 as events, rpc::v1 as rpc, v1};

/// The encoded `FileDescriptorSet` of every Vigil proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vigil_descriptor.bin"));

mod time;
pub use time::{from_timestamp, to_timestamp};

/// A proto enum value's name as logs, metrics and docs spell it: without the
/// type's prefix, lowercase (`enum_label("REASON_UNKNOWN_USER", "REASON_")` is
/// `unknown_user`).
pub fn enum_label(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_ascii_lowercase()
}
