//! The OATH parameters a token and Vigil must agree on.

use std::fmt;

use crate::ParamError;

/// HMAC hash function (RFC 6238 §1.2: SHA-1, SHA-256 or SHA-512).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// The default of every authenticator app; the only one RFC 4226 HOTP defines.
    #[default]
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The name used in `otpauth://` URIs (`SHA1`, `SHA256`, `SHA512`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
        }
    }

    /// Parses the `otpauth://` name, case-insensitively (`sha1`, `SHA-256`, ...).
    pub fn parse(name: &str) -> Result<Self, ParamError> {
        match name.to_ascii_uppercase().replace('-', "").as_str() {
            "SHA1" => Ok(Self::Sha1),
            "SHA256" => Ok(Self::Sha256),
            "SHA512" => Ok(Self::Sha512),
            _ => Err(ParamError::UnknownAlgorithm),
        }
    }

    /// Seed length generated at enrolment: the hash's output size, as RFC 4226 §4
    /// recommends (20 bytes for SHA-1, 32 for SHA-256, 64 for SHA-512, the sizes
    /// of the RFC 6238 test seeds).
    pub fn seed_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Length of a code: 6 (every app's default) or 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Digits {
    #[default]
    Six,
    Eight,
}

impl Digits {
    #[expect(clippy::len_without_is_empty, reason = "a code length is never zero")]
    pub fn len(self) -> usize {
        match self {
            Self::Six => 6,
            Self::Eight => 8,
        }
    }

    /// 10^digits, the modulus of RFC 4226 §5.3 step 3.
    pub(crate) fn modulus(self) -> u32 {
        match self {
            Self::Six => 1_000_000,
            Self::Eight => 100_000_000,
        }
    }

    pub fn from_len(len: usize) -> Result<Self, ParamError> {
        match len {
            6 => Ok(Self::Six),
            8 => Ok(Self::Eight),
            _ => Err(ParamError::UnsupportedDigits(len)),
        }
    }
}

impl fmt::Display for Digits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.len())
    }
}
