//! What every request handler shares, and the one error type they return.
//! The edge ([`crate::app`]) maps errors once to an `RpcError` reply; the
//! gateway turns any error on a login path into a deny.

use std::{sync::Arc, time::SystemTime};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use vigil_bus::{BusError, Outbox};
use vigil_core::{Clock, ProviderId};
use vigil_proto::v1::Factor;

use crate::{codes::CodeHasher, policy::Lockout};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// A statement shared with other requests (`vigil_runtime::batch`) failed.
    #[error("database error")]
    Batch(#[from] vigil_runtime::BatchError<sqlx::Error>),
    #[error("bus error")]
    Bus(#[from] BusError),
    #[error("secret handling failed")]
    Secret(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Enrollment(#[from] crate::push::EnrollmentError),
}

impl ServiceError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Database(_) | Self::Batch(_) | Self::Bus(_) | Self::Secret(_) => "internal",
            Self::InvalidArgument(_) => "invalid_argument",
            Self::AlreadyExists(_) => "already_exists",
            Self::NotFound(_) => "not_found",
            Self::Enrollment(e) => e.code(),
        }
    }
}

pub struct Service {
    pub pool: PgPool,
    pub outbox: Outbox,
    pub clock: Arc<dyn Clock>,
    pub codes: CodeHasher,
    pub lifetime: chrono::Duration,
    pub max_attempts: i32,
    pub sms_template: String,
    pub lockout: Lockout,
    /// Argon2 parameters for PINs: cheap in tests, strong in production.
    pub pin_hasher: vigil_secrets::PasswordHasher,
    /// Encrypts OTP seeds at rest.
    pub keyring: vigil_secrets::Keyring,
    /// The issuer authenticator apps show beside the account.
    pub otp_issuer: String,
    /// Requests per user and per agent on the login paths.
    pub limits: crate::ratelimit::Limits,
    /// Counts requests against those limits, many in one statement under load.
    pub counter: crate::ratelimit::Counter,
    /// Reads and writes the logins tried without the user's lock, many in
    /// one statement under load.
    pub unlocked: crate::unlocked_logins::UnlockedLogins,
    /// Telephony's public URL devices enrol at, put in the enrolment QR payload.
    pub push_enroll_url: String,
    /// How long a push enrolment code works (10 minutes).
    pub push_enrollment_ttl: chrono::Duration,
}

pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    vigil_proto::to_timestamp(SystemTime::from(t))
}

pub fn parse_provider(id: &str) -> Result<ProviderId, ServiceError> {
    ProviderId::parse(id).map_err(|e| ServiceError::InvalidArgument(format!("provider_id: {e}")))
}

/// Who an admin action is audited as; the gateway always says, older callers may not.
pub fn actor_or_admin(actor: &str) -> &str {
    if actor.is_empty() { "admin" } else { actor }
}

/// Factor names as stored.
pub fn factor_kind(factor: Factor) -> Option<&'static str> {
    match factor {
        Factor::Sms => Some("sms"),
        Factor::Voice => Some("voice"),
        Factor::Push => Some("push"),
        Factor::Totp => Some("totp"),
        Factor::Hotp => Some("hotp"),
        Factor::BackupCode => Some("backup_code"),
        Factor::Default | Factor::Unspecified => None,
    }
}

pub fn factor_of(kind: &str) -> Factor {
    match kind {
        "sms" => Factor::Sms,
        "voice" => Factor::Voice,
        "push" => Factor::Push,
        "totp" => Factor::Totp,
        "hotp" => Factor::Hotp,
        "backup_code" => Factor::BackupCode,
        _ => Factor::Unspecified,
    }
}
