//! HOTP (RFC 4226): the HMAC-based one-time password and its counter policy.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::{Algorithm, Code, Digits, OtpSecret, VerifyError};

/// Default look-ahead: a user may press the button this many times without logging in.
pub const DEFAULT_LOOK_AHEAD: u64 = 10;
/// Default resynchronisation window, searched only with two consecutive codes.
pub const DEFAULT_RESYNC_WINDOW: u64 = 100;
/// Upper bound applied to both windows: a misconfiguration must not turn one login
/// into millions of HMACs, nor widen the guessing odds without limit.
pub const MAX_HOTP_WINDOW: u64 = 1000;

/// Computes the HOTP value for `counter` (RFC 4226 §5.3): HMAC, dynamic truncation,
/// modulo 10^digits.
///
/// This is the one place the OTP arithmetic lives; TOTP calls it with the time step.
pub fn hotp(secret: &OtpSecret, counter: u64, algorithm: Algorithm, digits: Digits) -> Code {
    let msg = counter.to_be_bytes();
    let key = secret.expose_bytes();
    let value = match algorithm {
        Algorithm::Sha1 => truncate(&mac::<Hmac<sha1::Sha1>>(key, &msg)),
        Algorithm::Sha256 => truncate(&mac::<Hmac<sha2::Sha256>>(key, &msg)),
        Algorithm::Sha512 => truncate(&mac::<Hmac<sha2::Sha512>>(key, &msg)),
    };
    Code::from_value(value % digits.modulus(), digits)
}

fn mac<M: Mac + KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = <M as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

/// RFC 4226 §5.3 dynamic truncation: 31 bits from the offset named by the last nibble.
fn truncate(hash: &[u8]) -> u32 {
    let offset = usize::from(hash[hash.len() - 1] & 0x0f);
    u32::from_be_bytes([
        hash[offset] & 0x7f,
        hash[offset + 1],
        hash[offset + 2],
        hash[offset + 3],
    ])
}

/// An HOTP token's parameters and Vigil's counter policy.
///
/// The caller stores the token's *next expected counter*; every successful
/// verification returns the new value to persist (in the same transaction that
/// records the login, so a code is never accepted twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hotp {
    pub algorithm: Algorithm,
    pub digits: Digits,
    /// How many counters past the stored one a code may be (a user pressing the
    /// token's button without logging in). Default [`DEFAULT_LOOK_AHEAD`], capped at
    /// [`MAX_HOTP_WINDOW`].
    pub look_ahead: u64,
    /// How far [`Hotp::resync`] searches. Default [`DEFAULT_RESYNC_WINDOW`], capped at
    /// [`MAX_HOTP_WINDOW`].
    pub resync_window: u64,
}

impl Default for Hotp {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::Sha1,
            digits: Digits::Six,
            look_ahead: DEFAULT_LOOK_AHEAD,
            resync_window: DEFAULT_RESYNC_WINDOW,
        }
    }
}

impl Hotp {
    pub fn new(algorithm: Algorithm, digits: Digits) -> Self {
        Self {
            algorithm,
            digits,
            ..Self::default()
        }
    }

    /// The code for `counter`.
    pub fn generate(&self, secret: &OtpSecret, counter: u64) -> Code {
        hotp(secret, counter, self.algorithm, self.digits)
    }

    /// Verifies `code` against counters `counter ..= counter + look_ahead`, where
    /// `counter` is the stored next expected counter.
    ///
    /// Returns the new counter to store (the matched counter + 1): the matched code
    /// and every skipped one can never be used again. Every candidate is computed
    /// and compared in constant time, so timing does not tell how far ahead a match was.
    pub fn verify(&self, secret: &OtpSecret, code: &Code, counter: u64) -> Result<u64, VerifyError> {
        if code.digits() != self.digits {
            return Err(VerifyError::WrongLength);
        }
        let mut found = subtle::Choice::from(0);
        let mut matched = 0u64;
        for offset in 0..=self.look_ahead.min(MAX_HOTP_WINDOW) {
            let Some(candidate) = counter.checked_add(offset) else {
                break;
            };
            let is_match = self.generate(secret, candidate).ct_eq(code) & !found;
            matched.conditional_assign(&candidate, is_match);
            found |= is_match;
        }
        if bool::from(found) {
            matched.checked_add(1).ok_or(VerifyError::OutOfRange)
        } else {
            Err(VerifyError::Mismatch)
        }
    }

    /// Resynchronises a token that drifted past the look-ahead: `first` and `second`
    /// must be consecutive codes (`second` for the counter after `first`) within
    /// `counter ..= counter + resync_window`.
    ///
    /// Returns the new counter to store (after `second`). Two consecutive matches make
    /// a lucky guess across the larger window negligible (about window / 10^12 for
    /// six digits).
    pub fn resync(&self, secret: &OtpSecret, first: &Code, second: &Code, counter: u64) -> Result<u64, VerifyError> {
        if first.digits() != self.digits || second.digits() != self.digits {
            return Err(VerifyError::WrongLength);
        }
        for offset in 0..=self.resync_window.min(MAX_HOTP_WINDOW) {
            let Some(candidate) = counter.checked_add(offset) else {
                break;
            };
            if bool::from(self.generate(secret, candidate).ct_eq(first)) {
                let Some(next) = candidate.checked_add(1) else { break };
                if bool::from(self.generate(secret, next).ct_eq(second)) {
                    return next.checked_add(1).ok_or(VerifyError::OutOfRange);
                }
            }
        }
        Err(VerifyError::Mismatch)
    }
}
