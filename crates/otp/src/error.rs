//! Typed errors. None of them carries a code, a seed or a URI: they are safe to log.

use thiserror::Error;

/// An invalid OTP parameter or seed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParamError {
    #[error("unknown OTP algorithm (expected SHA1, SHA256 or SHA512)")]
    UnknownAlgorithm,
    #[error("unsupported number of digits {0} (expected 6 or 8)")]
    UnsupportedDigits(usize),
    #[error("the TOTP period must be at least one second")]
    ZeroPeriod,
    #[error("the OTP seed is {got} bytes; at least {min} are required (RFC 4226 R6)")]
    SeedTooShort { got: usize, min: usize },
    #[error("the OTP seed is {got} bytes; at most {max} are accepted")]
    SeedTooLong { got: usize, max: usize },
    #[error("the OTP seed is not valid base32")]
    InvalidBase32,
}

/// Why a user's input is not a well-formed code. Checked before any HMAC is computed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodeError {
    #[error("no code was entered")]
    Empty,
    #[error("a code contains digits only")]
    NonDigit,
    #[error("a code has {expected} digits, got {got}")]
    WrongLength { expected: usize, got: usize },
}

/// Why a well-formed code was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifyError {
    /// No step or counter in the window produces this code.
    #[error("the code does not match")]
    Mismatch,
    /// TOTP: the code belongs to a step at or before the last one accepted.
    #[error("the code was already used")]
    Replayed,
    /// The code's length differs from the token's configured digits.
    #[error("the code has the wrong number of digits for this token")]
    WrongLength,
    /// The time is before the TOTP epoch, or a counter would overflow.
    #[error("the time or counter is out of range")]
    OutOfRange,
}

/// The `otpauth://` URI could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UriError {
    #[error("the issuer must not be empty")]
    EmptyIssuer,
    #[error("the account name must not be empty")]
    EmptyAccount,
    /// The Key URI format separates issuer and account by a colon in the label.
    #[error("the issuer and account name must not contain a colon")]
    Colon,
}

/// The QR image could not be rendered.
#[derive(Debug, Error)]
pub enum QrError {
    #[error("the data is too long for a QR code")]
    TooLong,
    #[error("the QR image scale must be between 1 and {max} pixels per module")]
    BadScale { max: u32 },
    #[error("PNG encoding failed: {0}")]
    Png(#[from] png::EncodingError),
}

/// Why an input is not a backup code.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BackupCodeError {
    #[error("a backup code has {expected} characters, got {got}")]
    WrongLength { expected: usize, got: usize },
    #[error("a backup code contains only letters and digits from its alphabet")]
    InvalidChar,
}
