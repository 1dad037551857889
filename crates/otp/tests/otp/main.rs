//! One integration-test binary for vigil-otp (link time on a 2-core CI).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backup;
mod enrol;
mod parse;
mod policy;
mod rfc;

use vigil_otp::OtpSecret;

/// The RFC 4226 / RFC 6238 SHA-1 seed.
pub fn rfc_seed() -> OtpSecret {
    OtpSecret::from_bytes(b"12345678901234567890").unwrap()
}
