//! Typed errors. None carries key material, plaintext, a hash or a token: safe to log.

use thiserror::Error;

/// The keyring configuration (`VIGIL_KEYS`) is invalid. Entries are named by their
/// position (1-based) or key id, never by their key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyringError {
    #[error("no key-encryption key is configured")]
    Empty,
    #[error("keyring entry {position} is not `id:base64key`")]
    MissingSeparator { position: usize },
    #[error("keyring entry {position} has an invalid key id (1 to 32 of A-Z a-z 0-9 . _ -)")]
    InvalidKeyId { position: usize },
    #[error("key id `{id}` appears twice in the keyring")]
    DuplicateKeyId { id: String },
    #[error("key `{id}` is not a base64-encoded 32-byte AES-256 key")]
    InvalidKey { id: String },
}

/// Sealing or opening a ciphertext failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SealError {
    /// Too short, or a header that does not parse: not a Vigil ciphertext.
    #[error("not a well-formed ciphertext")]
    Malformed,
    #[error("unsupported ciphertext version {0}")]
    UnsupportedVersion(u8),
    /// Encrypted under a key this keyring no longer (or never) had.
    #[error("ciphertext was encrypted with unknown key `{id}`")]
    UnknownKey { id: String },
    /// Authentication failed: the ciphertext was altered, or its associated data
    /// (the row it belongs to) differs. Deliberately one error for both.
    #[error("ciphertext failed authentication (tampered, or bound to another row)")]
    Decrypt,
    #[error("encryption failed")]
    Encrypt,
}

/// Password-style (argon2id) hashing failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HashError {
    /// The stored PHC string does not parse.
    #[error("stored hash is not a valid PHC string: {0}")]
    Phc(#[from] PhcError),
    /// A well-formed PHC string of another algorithm (only argon2id is accepted, so a
    /// tampered row cannot downgrade verification).
    #[error("stored hash uses `{0}`; only argon2id is accepted")]
    UnsupportedAlgorithm(String),
    #[error("invalid argon2 parameters: {0}")]
    Params(String),
    #[error("hashing failed: {0}")]
    Hash(String),
}

/// What is wrong with a PHC string (`$argon2id$v=19$m=..,t=..,p=..$salt$hash`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PhcError {
    #[error("malformed PHC string")]
    Format,
    #[error("unsupported algorithm version")]
    Version,
    #[error("invalid or duplicate parameter")]
    Params,
    #[error("invalid salt")]
    Salt,
    #[error("invalid hash output")]
    Output,
}

/// The keyed token hasher could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenHashError {
    #[error("the pepper is {got} bytes; at least {min} are required")]
    PepperTooShort { got: usize, min: usize },
    #[error("the pepper is not valid base64")]
    InvalidBase64,
}
