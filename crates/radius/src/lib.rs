//! RADIUS (RFC 2865) for Vigil's auth-gateway: a strict packet codec, the
//! RFC 3579 Message-Authenticator, RFC 5080 duplicate detection and a small
//! concurrent UDP server that hands validated Access-Requests to a handler.
//!
//! # Why a hand-written codec
//! The RADIUS crates on crates.io were checked before writing this one:
//! - `radius` (radius-rs, last release 0.4.0) has no Message-Authenticator in
//!   its released codec or server (its `is_authentic_request` accepts every
//!   Access-Request), no RFC 5080 duplicate cache, and pulls `openssl` or the
//!   non-RustCrypto `md5` crate; an unreleased Message-Authenticator branch
//!   panics (`assert_eq!`, `unwrap`) on unexpected input.
//! - `radius-rust` is built on async-std rather than tokio, is driven by
//!   dictionary files, and has no duplicate cache.
//! - `radius-server` is a young single-author crate with error strings and no
//!   Message-Authenticator verification.
//!
//! An MFA server sits exactly where Blast-RADIUS (CVE-2024-3596) hurts, so it
//! must require and check Message-Authenticator on every request and sign every
//! response. The part of RADIUS Vigil needs (PAP Access-Request in, Accept /
//! Reject / Challenge out) is small enough to own: a few hundred lines that
//! never panic on input, are fuzzed (`fuzz/`, `scripts/fuzz-radius`) and are
//! tested against FreeRADIUS's `radclient`.
//!
//! # Using it (auth-gateway)
//! 1. Implement [`ClientRegistry`] over the registered RADIUS agents (source
//!    CIDR → shared secret and agent id), or use [`StaticClients`].
//! 2. Bind a `tokio::net::UdpSocket` (port 1812, or 0 in tests), build a
//!    [`Server`] and `run` it with a [`Handler`]: an async function from a
//!    validated [`Request`] to a [`Response`]. The handler may take as long as a
//!    push approval does; retransmissions meanwhile never start it twice.
//! 3. Export [`Counters`] to metrics.

mod attribute;
mod client;
mod crypto;
mod dedup;
mod error;
mod packet;
mod request;
mod response;
mod server;

pub use attribute::{Attribute, VendorSpecific, attr};
pub use client::{Cidr, CidrError, ClientRegistry, RadiusClient, SharedSecret, StaticClients};
pub use crypto::{
    hide_password, message_authenticator, response_authenticator, sign_request, unhide_password, verify_response,
};
pub use dedup::{Begin, DedupCache, DedupKey, MonotonicClock, SystemClock};
pub use error::{DecodeError, EncodeError};
pub use packet::{Code, HEADER_LEN, MAX_PACKET_LEN, Packet};
pub use request::{DropKind, Password, ReplyContext, Request, ValidationError, validate_request, verify_request};
pub use response::Response;
pub use server::{Counters, CountersSnapshot, Handler, Server, ServerConfig};
