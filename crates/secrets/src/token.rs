//! Fast keyed hashing for high-entropy tokens looked up by value.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rand::{CryptoRng, RngCore};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{TokenHashError, ct_eq};

/// Random bytes in a token from [`generate_token`]: 256 bits.
pub const TOKEN_BYTES: usize = 32;

/// HMAC-SHA256 under a server-side pepper, hex-encoded, for tokens with at least
/// 128 bits of entropy that are looked up by value on every request (agent
/// credentials, admin API tokens). The stored value is
/// `hex(HMAC(pepper, len(purpose) || purpose || token))`, indexable and unique.
///
/// Why not argon2 here: a request must find its row by the token, and a per-request
/// argon2 costs tens of milliseconds and megabytes. Why it is still safe: a random
/// 256-bit token cannot be guessed offline even without a slow hash, and without the
/// pepper (which is not in the database) the hashes cannot even be tested.
/// Never use this for PINs, passwords or anything a person chooses — use
/// [`crate::PasswordHasher`].
#[derive(Clone)]
pub struct TokenHasher {
    mac: Hmac<Sha256>,
}

impl TokenHasher {
    /// The pepper must be at least 32 bytes.
    pub const MIN_PEPPER_LEN: usize = 32;

    pub fn new(pepper: &[u8]) -> Result<Self, TokenHashError> {
        if pepper.len() < Self::MIN_PEPPER_LEN {
            return Err(TokenHashError::PepperTooShort {
                got: pepper.len(),
                min: Self::MIN_PEPPER_LEN,
            });
        }
        // HMAC takes keys of any length.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(pepper).map_err(|_| TokenHashError::PepperTooShort {
            got: pepper.len(),
            min: Self::MIN_PEPPER_LEN,
        })?;
        Ok(Self { mac })
    }

    /// A pepper from configuration, in standard base64 (e.g. `openssl rand -base64 32`).
    pub fn from_base64(pepper: &SecretString) -> Result<Self, TokenHashError> {
        let bytes = Zeroizing::new(
            STANDARD
                .decode(pepper.expose_secret().trim())
                .map_err(|_| TokenHashError::InvalidBase64)?,
        );
        Self::new(&bytes)
    }

    /// The lookup key for `token` within `purpose` (e.g. `"agent"`, `"admin_token"`),
    /// so the same string hashes differently for different kinds of token.
    pub fn hash(&self, purpose: &str, token: &[u8]) -> String {
        let mut mac = self.mac.clone();
        let len = u32::try_from(purpose.len()).unwrap_or(u32::MAX);
        mac.update(&len.to_be_bytes());
        mac.update(purpose.as_bytes());
        mac.update(token);
        hex::encode(mac.finalize().into_bytes())
    }

    /// Constant-time check of `token` against a stored hash (for when the row was
    /// found by another key, e.g. the agent id).
    pub fn verify(&self, purpose: &str, token: &[u8], stored_hex: &str) -> bool {
        ct_eq(self.hash(purpose, token).as_bytes(), stored_hex.as_bytes())
    }
}

impl fmt::Debug for TokenHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHasher([REDACTED])")
    }
}

/// A new random bearer token, `prefix_<43 base64url chars>` (256 bits), shown to its
/// holder once and stored only as [`TokenHasher::hash`]. The prefix (`vat` for an
/// agent token, say) tells a leaked string's kind at a glance and helps secret scanners.
pub fn generate_token<R: CryptoRng + RngCore + ?Sized>(rng: &mut R, prefix: &str) -> SecretString {
    let mut bytes = Zeroizing::new([0u8; TOKEN_BYTES]);
    rng.fill_bytes(bytes.as_mut());
    let body = Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes.as_ref()));
    SecretString::from(format!("{prefix}_{}", body.as_str()))
}
