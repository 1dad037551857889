//! The shared seed of an OATH token.

use std::fmt;

use rand::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::{Algorithm, ParamError};

/// RFC 4226 R6: "The length of the shared secret MUST be at least 128 bits."
pub const MIN_SEED_LEN: usize = 16;
/// Generous upper bound (twice SHA-512's block size) so a bogus import cannot be huge.
pub const MAX_SEED_LEN: usize = 256;

/// An OATH seed. Zeroed on drop; `Debug` never prints it.
///
/// Vigil stores seeds encrypted (`vigil-secrets`); decrypt, then build one with
/// [`OtpSecret::from_bytes`] for the duration of a verification.
#[derive(Clone, PartialEq, Eq)]
pub struct OtpSecret(Zeroizing<Vec<u8>>);

impl OtpSecret {
    /// A fresh seed of [`Algorithm::seed_len`] bytes from the injected RNG.
    pub fn generate<R: CryptoRng + RngCore + ?Sized>(rng: &mut R, algorithm: Algorithm) -> Self {
        let mut seed = Zeroizing::new(vec![0u8; algorithm.seed_len()]);
        rng.fill_bytes(&mut seed);
        Self(seed)
    }

    /// Wraps existing seed bytes (decrypted from storage, or an imported hardware token).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ParamError> {
        check_len(bytes.len())?;
        Ok(Self(Zeroizing::new(bytes.to_vec())))
    }

    /// Parses an RFC 4648 base32 seed as authenticator apps show it: case-insensitive,
    /// spaces and `=` padding ignored.
    pub fn from_base32(text: &str) -> Result<Self, ParamError> {
        let cleaned: Zeroizing<String> = Zeroizing::new(
            text.chars()
                .filter(|c| !c.is_whitespace() && *c != '=')
                .map(|c| c.to_ascii_uppercase())
                .collect(),
        );
        let bytes = Zeroizing::new(
            data_encoding::BASE32_NOPAD
                .decode(cleaned.as_bytes())
                .map_err(|_| ParamError::InvalidBase32)?,
        );
        check_len(bytes.len())?;
        Ok(Self(bytes))
    }

    /// The seed as unpadded upper-case base32, the form of the `secret=` URI parameter.
    pub fn to_base32(&self) -> Zeroizing<String> {
        Zeroizing::new(data_encoding::BASE32_NOPAD.encode(&self.0))
    }

    /// The raw bytes, to encrypt for storage. Keep the exposure short.
    pub fn expose_bytes(&self) -> &[u8] {
        &self.0
    }
}

fn check_len(len: usize) -> Result<(), ParamError> {
    if len < MIN_SEED_LEN {
        return Err(ParamError::SeedTooShort {
            got: len,
            min: MIN_SEED_LEN,
        });
    }
    if len > MAX_SEED_LEN {
        return Err(ParamError::SeedTooLong {
            got: len,
            max: MAX_SEED_LEN,
        });
    }
    Ok(())
}

impl fmt::Debug for OtpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OtpSecret([REDACTED; {} bytes])", self.0.len())
    }
}
