//! Slow, salted hashing (argon2id) for low-entropy secrets people type or that must
//! survive a database leak: PINs, activation passwords, backup codes.

use std::fmt;

use argon2::password_hash::{self, PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::{CryptoRng, RngCore};

use crate::{HashError, PhcError};

const SALT_LEN: usize = 16;

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl HashParams {
    /// OWASP Password Storage Cheat Sheet's argon2id minimum: 19 MiB, 2 iterations,
    /// 1 lane (also the `argon2` crate's default). About 20–40 ms per hash on a server core.
    pub const OWASP: Self = Self {
        m_cost_kib: 19 * 1024,
        t_cost: 2,
        p_cost: 1,
    };
    /// The smallest parameters argon2 accepts. Tests only: offers no protection.
    pub const INSECURE_FAST_FOR_TESTS: Self = Self {
        m_cost_kib: 8,
        t_cost: 1,
        p_cost: 1,
    };
}

impl Default for HashParams {
    fn default() -> Self {
        Self::OWASP
    }
}

/// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`) to store.
/// `Debug` is redacted: a hash of a 4–8 digit PIN is one brute-force away from the PIN.
#[derive(Clone, PartialEq, Eq)]
pub struct PhcString(String);

impl PhcString {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for PhcString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PhcString([REDACTED])")
    }
}

/// argon2id hashing and verification.
///
/// ```
/// use vigil_secrets::{HashParams, PasswordHasher};
///
/// let hasher = PasswordHasher::new(HashParams::INSECURE_FAST_FOR_TESTS).unwrap(); // production: PasswordHasher::default()
/// let stored = hasher.hash(&mut rand::rng(), b"4711").unwrap();
/// assert!(hasher.verify(b"4711", stored.as_str()).unwrap());
/// assert!(!hasher.verify(b"4712", stored.as_str()).unwrap());
/// ```
#[derive(Clone)]
pub struct PasswordHasher {
    params: HashParams,
    argon2: Argon2<'static>,
}

impl PasswordHasher {
    pub fn new(params: HashParams) -> Result<Self, HashError> {
        let argon_params = Params::new(params.m_cost_kib, params.t_cost, params.p_cost, None)
            .map_err(|e| HashError::Params(e.to_string()))?;
        Ok(Self {
            params,
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params),
        })
    }

    pub fn params(&self) -> HashParams {
        self.params
    }

    /// Hashes `secret` with a fresh 128-bit salt from the injected RNG.
    pub fn hash<R: CryptoRng + RngCore + ?Sized>(&self, rng: &mut R, secret: &[u8]) -> Result<PhcString, HashError> {
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| HashError::Hash(e.to_string()))?;
        let hash = self
            .argon2
            .hash_password(secret, &salt)
            .map_err(|e| HashError::Hash(e.to_string()))?;
        Ok(PhcString(hash.to_string()))
    }

    /// Checks `secret` against a stored PHC string. The hash's own parameters are used
    /// (old rows verify after a parameter change); the final comparison is constant-time.
    ///
    /// `Ok(false)` is a wrong secret; `Err` is a stored hash that is not argon2id or
    /// does not parse — a data problem to surface, not a failed login.
    pub fn verify(&self, secret: &[u8], phc: &str) -> Result<bool, HashError> {
        let hash = parse_argon2id(phc)?;
        match self.argon2.verify_password(secret, &hash) {
            Ok(()) => Ok(true),
            Err(password_hash::Error::Password) => Ok(false),
            Err(e) => Err(map_phc(e).map_or_else(|| HashError::Hash(e.to_string()), HashError::Phc)),
        }
    }

    /// Spends the time of one verification without a stored hash, so "no such record"
    /// (unknown activation login, user without a PIN) is not faster than "wrong secret".
    pub fn verify_dummy(&self, secret: &[u8]) {
        // A fixed salt is fine: the output is thrown away.
        if let Ok(salt) = SaltString::encode_b64(&[0u8; SALT_LEN]) {
            let _ = self.argon2.hash_password(secret, &salt);
        }
    }

    /// True when a stored hash was made with other parameters (or not with argon2id
    /// v19): re-hash the secret after the next successful verification.
    pub fn needs_rehash(&self, phc: &str) -> Result<bool, HashError> {
        let hash = match parse_argon2id(phc) {
            Ok(hash) => hash,
            Err(HashError::UnsupportedAlgorithm(_)) => return Ok(true),
            Err(e) => return Err(e),
        };
        let params = Params::try_from(&hash).map_err(|_| HashError::Phc(PhcError::Params))?;
        let current = HashParams {
            m_cost_kib: params.m_cost(),
            t_cost: params.t_cost(),
            p_cost: params.p_cost(),
        };
        Ok(hash.version != Some(Version::V0x13.into()) || current != self.params)
    }
}

impl Default for PasswordHasher {
    /// The production hasher: [`HashParams::OWASP`].
    fn default() -> Self {
        Self {
            params: HashParams::OWASP,
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::DEFAULT),
        }
    }
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHasher").field("params", &self.params).finish()
    }
}

fn parse_argon2id(phc: &str) -> Result<PasswordHash<'_>, HashError> {
    let hash = PasswordHash::new(phc).map_err(|e| HashError::Phc(map_phc(e).unwrap_or(PhcError::Format)))?;
    if hash.algorithm != argon2::ARGON2ID_IDENT {
        return Err(HashError::UnsupportedAlgorithm(hash.algorithm.as_str().to_owned()));
    }
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err(HashError::Phc(PhcError::Format));
    }
    Ok(hash)
}

/// Maps the parse-side errors of `password-hash` to [`PhcError`]; `None` for the rest.
fn map_phc(e: password_hash::Error) -> Option<PhcError> {
    use password_hash::Error as E;
    Some(match e {
        E::PhcStringField | E::PhcStringTrailingData | E::B64Encoding(_) => PhcError::Format,
        E::Version => PhcError::Version,
        E::ParamNameDuplicated | E::ParamNameInvalid | E::ParamValueInvalid(_) | E::ParamsMaxExceeded => {
            PhcError::Params
        }
        E::SaltInvalid(_) => PhcError::Salt,
        E::OutputSize { .. } => PhcError::Output,
        _ => return None,
    })
}
