//! Backup codes: single-use fallbacks, shown once, stored only as hashes.
//!
//! A code is 10 characters from a 31-symbol alphabet without look-alikes (no `0 o 1 i l`),
//! about 49.5 bits, displayed as `xxxxx-xxxxx`. Hash [`BackupCode::normalized`] with
//! `vigil-secrets` (argon2id) and delete a hash when its code is used; regenerating
//! replaces the whole set.

use std::fmt;

use rand::{CryptoRng, Rng};
use zeroize::Zeroizing;

use crate::BackupCodeError;

/// Digits 2–9 and the lower-case letters except `i`, `l` and `o`.
pub const BACKUP_ALPHABET: &[u8; 31] = b"23456789abcdefghjkmnpqrstuvwxyz";
/// Characters in a code, without the dash.
pub const BACKUP_CODE_LEN: usize = 10;
/// Codes issued per set.
pub const BACKUP_CODE_COUNT: usize = 10;

/// One backup code, in canonical form (10 lower-case characters, no dash).
/// Zeroed on drop; `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct BackupCode(Zeroizing<String>);

impl BackupCode {
    /// A fresh random code from the injected RNG (uniform over the alphabet).
    pub fn generate<R: CryptoRng + Rng + ?Sized>(rng: &mut R) -> Self {
        let code: String = (0..BACKUP_CODE_LEN)
            .map(|_| char::from(BACKUP_ALPHABET[rng.random_range(0..BACKUP_ALPHABET.len())]))
            .collect();
        Self(Zeroizing::new(code))
    }

    /// Normalises what a user typed: case-insensitive, dashes and whitespace ignored.
    pub fn parse(input: &str) -> Result<Self, BackupCodeError> {
        let cleaned: Zeroizing<String> = Zeroizing::new(
            input
                .chars()
                .filter(|c| *c != '-' && !c.is_whitespace())
                .map(|c| c.to_ascii_lowercase())
                .collect(),
        );
        let got = cleaned.chars().count();
        if got != BACKUP_CODE_LEN {
            return Err(BackupCodeError::WrongLength {
                expected: BACKUP_CODE_LEN,
                got,
            });
        }
        if !cleaned.bytes().all(|b| BACKUP_ALPHABET.contains(&b)) {
            return Err(BackupCodeError::InvalidChar);
        }
        Ok(Self(cleaned))
    }

    /// The canonical form: what to hash and verify.
    pub fn normalized(&self) -> &str {
        &self.0
    }

    /// The display form `xxxxx-xxxxx`, to show the user once.
    pub fn display(&self) -> Zeroizing<String> {
        let (a, b) = self.0.split_at(BACKUP_CODE_LEN / 2);
        Zeroizing::new(format!("{a}-{b}"))
    }
}

impl fmt::Debug for BackupCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BackupCode([REDACTED])")
    }
}

/// A set of [`BACKUP_CODE_COUNT`] distinct fresh codes.
pub fn generate_backup_codes<R: CryptoRng + Rng + ?Sized>(rng: &mut R) -> Vec<BackupCode> {
    let mut codes: Vec<BackupCode> = Vec::with_capacity(BACKUP_CODE_COUNT);
    while codes.len() < BACKUP_CODE_COUNT {
        let code = BackupCode::generate(rng);
        // A repeat is astronomically unlikely, but two equal codes would be one code.
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    codes
}
