//! Vigil's secrets at rest and the hashes that replace secrets.
//!
//! | what | how | type |
//! |---|---|---|
//! | secrets Vigil must read back: TOTP/HOTP seeds, device enrolment material | AES-256-GCM under a key-encryption key, bound to its row | [`Keyring`] |
//! | low-entropy secrets people type: PINs, activation passwords, backup codes | argon2id, salted, PHC string | [`PasswordHasher`] |
//! | high-entropy tokens found by value on every request: agent credentials, admin API tokens | HMAC-SHA256 with a server pepper, hex | [`TokenHasher`] |
//!
//! Which hash: if a person picks it or it is short enough to guess (a PIN, a 10-char
//! backup code, an activation password), use [`PasswordHasher`] and look the row up by
//! something else (user id, activation login). If Vigil generated it with ≥128 bits
//! ([`generate_token`]) and must find the row from the token alone, use [`TokenHasher`].
//!
//! Nothing here reads the clock, the environment or a global RNG: configuration is
//! passed as strings (from the service's config, held in `SecretString`) and randomness
//! as an RNG. No type prints secret material in `Debug`; no error carries any.
//!
//! # Encrypting a seed at rest
//! ```
//! use vigil_secrets::{Aad, Keyring, SealError};
//! use secrecy::ExposeSecret;
//!
//! let mut rng = rand::rng(); // services pass their injected CSPRNG
//! // VIGIL_KEYS: "id:base64key,...", the first is active.
//! let spec = Keyring::generate_entry(&mut rng, "k1").unwrap();
//! let keyring = Keyring::parse(spec.expose_secret()).unwrap();
//!
//! let aad = Aad::new("totp_seed").with("provider", "prv_1").with("user", "usr_1");
//! let stored: Vec<u8> = keyring.encrypt(&mut rng, b"seed bytes", &aad).unwrap();
//! assert_eq!(keyring.decrypt(&stored, &aad).unwrap().expose_secret(), b"seed bytes");
//!
//! // Copied to another user's row: refused.
//! let other = Aad::new("totp_seed").with("provider", "prv_1").with("user", "usr_2");
//! assert_eq!(keyring.decrypt(&stored, &other).unwrap_err(), SealError::Decrypt);
//!
//! // Rotation: a new key first; old rows still decrypt and can be re-encrypted.
//! let new = Keyring::generate_entry(&mut rng, "k2").unwrap();
//! let rotated = Keyring::parse(&format!("{},{}", new.expose_secret(), spec.expose_secret())).unwrap();
//! assert!(rotated.needs_rotation(&stored).unwrap());
//! let fresh = rotated.reencrypt(&mut rng, &stored, &aad).unwrap();
//! assert!(!rotated.needs_rotation(&fresh).unwrap());
//! ```
//!
//! # Hashing a PIN, checking a token
//! ```
//! use vigil_secrets::{HashParams, PasswordHasher, TokenHasher, generate_token};
//! use secrecy::{ExposeSecret, SecretString};
//!
//! let pins = PasswordHasher::new(HashParams::INSECURE_FAST_FOR_TESTS).unwrap(); // PasswordHasher::default() in production
//! let stored = pins.hash(&mut rand::rng(), b"4711").unwrap();
//! assert!(pins.verify(b"4711", stored.as_str()).unwrap());
//!
//! let tokens = TokenHasher::from_base64(&SecretString::from("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")).unwrap();
//! let token = generate_token(&mut rand::rng(), "vat"); // shown to the agent once
//! let lookup_key = tokens.hash("agent", token.expose_secret().as_bytes()); // indexed column
//! assert_eq!(lookup_key.len(), 64);
//! ```

mod aad;
mod bytes;
mod error;
mod keyring;
mod password;
mod token;

pub use aad::Aad;
pub use bytes::SecretBytes;
pub use error::{HashError, KeyringError, PhcError, SealError, TokenHashError};
pub use keyring::Keyring;
pub use password::{HashParams, PasswordHasher, PhcString};
pub use token::{TOKEN_BYTES, TokenHasher, generate_token};

pub use secrecy;
pub use subtle::ConstantTimeEq;

/// Constant-time equality of two byte strings. The time depends on the lengths
/// only (lengths are not secret for codes, tags and hashes of fixed size).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}
