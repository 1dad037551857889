//! Push to an enrolled device: the one-time enrolment code an admin hands
//! out (stored as a keyed hash, valid 10 minutes, usable once), the device
//! the code enrols (its Ed25519 public key and push token encrypted at rest),
//! and the numbers a push challenge offers for number matching.

use chrono::{DateTime, Utc};
use rand::{Rng, seq::SliceRandom};
use sqlx::PgConnection;
use uuid::Uuid;
use vigil_core::{DeviceId, UserId};
use vigil_proto::rpc;
use vigil_secrets::{Aad, secrecy::ExposeSecret};

use crate::{
    service::{Service, ServiceError, timestamp},
    store::{self, UserDetail},
};

/// Letters and digits that cannot be mistaken for one another (no 0/O, 1/I).
const CODE_ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// 12 symbols of 5 bits: 60 bits, far beyond guessing within 10 minutes.
const CODE_LEN: usize = 12;
const MAX_TOKEN_LEN: usize = 4096;
const MAX_NAME_LEN: usize = 64;
/// How many numbers the device offers; one of them is right.
pub const MATCH_CHOICES: usize = 3;

/// Why a device's enrolment code was refused; each has its own stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnrollmentError {
    #[error("the enrolment code is not valid")]
    Invalid,
    #[error("the enrolment code has expired; ask for a new one")]
    Expired,
    #[error("the enrolment code was already used")]
    Used,
}

impl EnrollmentError {
    pub fn code(self) -> &'static str {
        match self {
            Self::Invalid => "enrollment_code_invalid",
            Self::Expired => "enrollment_code_expired",
            Self::Used => "enrollment_code_used",
        }
    }
}

/// A fresh code, shown as `ABCD-EFGH-JKLM`.
pub fn generate_code<R: Rng + ?Sized>(rng: &mut R) -> String {
    let symbols: Vec<char> = (0..CODE_LEN)
        .map(|_| char::from(CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())]))
        .collect();
    symbols
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// What a user may type: any case, with or without dashes and spaces.
pub fn normalise_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == CODE_LEN && code.bytes().all(|b| CODE_ALPHABET.contains(&b))).then_some(code)
}

/// The right number (10..=99) and the numbers the device offers, the right
/// one among them in a random place.
pub fn match_numbers<R: Rng + ?Sized>(rng: &mut R) -> (u32, Vec<u32>) {
    let mut choices: Vec<u32> = Vec::with_capacity(MATCH_CHOICES);
    while choices.len() < MATCH_CHOICES {
        let n = rng.random_range(10..=99);
        if !choices.contains(&n) {
            choices.push(n);
        }
    }
    let right = choices[0];
    choices.shuffle(rng);
    (right, choices)
}

fn device_aad(provider: &str, user_id: Uuid, device_id: Uuid) -> Aad {
    Aad::new("push_device")
        .with("provider", provider)
        .with("user", user_id.to_string())
        .with("device", device_id.to_string())
}

/// The device a push goes to.
pub struct PushDevice {
    pub device_id: DeviceId,
    pub public_key: [u8; 32],
    pub push_token: String,
}

#[derive(sqlx::FromRow)]
struct DeviceRow {
    device_id: Option<Uuid>,
    secret_ciphertext: Option<Vec<u8>>,
}

#[derive(sqlx::FromRow)]
struct EnrollmentRow {
    id: Uuid,
    provider_id: String,
    user_id: Uuid,
    expires_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
}

fn secret_error(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Secret(e.to_string())
}

impl Service {
    /// The keyed hash an enrolment code is found by. Deterministic (no
    /// per-row salt) because the code alone must find its row.
    fn enrollment_hash(&self, normalised: &str) -> Vec<u8> {
        self.codes.hash("push-enrollment", normalised)
    }

    /// A new enrolment code for `user`, filled into `reply`.
    pub(crate) async fn start_push_enrollment(
        &self,
        tx: &mut PgConnection,
        provider: &str,
        user: &UserDetail,
        reply: &mut rpc::EnrollFactorReply,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        let code = generate_code(&mut rand::rng());
        let normalised = normalise_code(&code).ok_or_else(|| secret_error("generated code does not parse"))?;
        let expires_at = now + self.push_enrollment_ttl;
        sqlx::query(
            "INSERT INTO push_enrollments (id, provider_id, user_id, code_hash, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(Uuid::now_v7())
        .bind(provider)
        .bind(user.id)
        .bind(self.enrollment_hash(&normalised))
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        let uri = url::Url::parse_with_params(
            "vigil-push://enroll",
            &[("url", self.push_enroll_url.as_str()), ("code", code.as_str())],
        )
        .map_err(|e| ServiceError::InvalidArgument(format!("push enrolment URL: {e}")))?;
        reply.qr_png = vigil_otp::payload_qr_png(uri.as_str(), 6).map_err(secret_error)?;
        reply.enrollment_uri = uri.into();
        reply.enrollment_code = code;
        reply.enrollment_expires_at = Some(timestamp(expires_at));
        Ok(())
    }

    /// `vigil.rpc.challenge.enroll_device`: a device presents its code.
    pub async fn enroll_device(&self, req: rpc::EnrollDeviceRequest) -> Result<rpc::EnrollDeviceReply, ServiceError> {
        let normalised = normalise_code(&req.code).ok_or(ServiceError::Enrollment(EnrollmentError::Invalid))?;
        let public_key: [u8; 32] = req
            .public_key
            .as_slice()
            .try_into()
            .map_err(|_| ServiceError::InvalidArgument("public_key must be 32 bytes (Ed25519)".into()))?;
        let token = req.push_token.trim();
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(ServiceError::InvalidArgument(format!(
                "push_token must be 1 to {MAX_TOKEN_LEN} characters"
            )));
        }
        let name: String = req.device_name.trim().chars().take(MAX_NAME_LEN).collect();
        let name = if name.is_empty() { "phone".to_owned() } else { name };

        let now = self.clock.now();
        let mut tx = self.pool.begin().await?;
        let row: Option<EnrollmentRow> = sqlx::query_as(
            "SELECT id, provider_id, user_id, expires_at, used_at FROM push_enrollments WHERE code_hash = $1 FOR UPDATE",
        )
        .bind(self.enrollment_hash(&normalised))
        .fetch_optional(&mut *tx)
        .await?;
        let row = row.ok_or(ServiceError::Enrollment(EnrollmentError::Invalid))?;
        if row.used_at.is_some() {
            return Err(ServiceError::Enrollment(EnrollmentError::Used));
        }
        if now >= row.expires_at {
            return Err(ServiceError::Enrollment(EnrollmentError::Expired));
        }
        // The user may have been deleted since (the code went with it), so this is belt and braces.
        let user = store::user_by_id(&mut tx, &row.provider_id, row.user_id, true)
            .await?
            .ok_or(ServiceError::Enrollment(EnrollmentError::Invalid))?;
        let device_id = DeviceId::new();
        let mut material = public_key.to_vec();
        material.extend_from_slice(token.as_bytes());
        let ciphertext = self
            .keyring
            .encrypt(
                &mut rand::rng(),
                &material,
                &device_aad(&row.provider_id, user.id, device_id.as_uuid()),
            )
            .map_err(secret_error)?;
        // One device per user: a new phone replaces the old one.
        sqlx::query("DELETE FROM factors WHERE user_id = $1 AND kind = 'push'")
            .bind(user.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO factors (id, user_id, kind, destination, created_at, secret_ciphertext, device_id)
             VALUES ($1, $2, 'push', $3, $4, $5, $6)",
        )
        .bind(Uuid::now_v7())
        .bind(user.id)
        .bind(&name)
        .bind(now)
        .bind(&ciphertext)
        .bind(device_id.as_uuid())
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE push_enrollments SET used_at = $2, device_id = $3 WHERE id = $1")
            .bind(row.id)
            .bind(now)
            .bind(device_id.as_uuid())
            .execute(&mut *tx)
            .await?;
        store::audit_user(&mut tx, user.audited(), "device", "push_enrolled", &name, now).await?;
        tx.commit().await?;
        tracing::info!(user_id = %UserId::from_uuid(user.id), %device_id, "push device enrolled");
        Ok(rpc::EnrollDeviceReply {
            device_id: device_id.to_string(),
            provider_id: row.provider_id,
            user_id: UserId::from_uuid(user.id).to_string(),
            error: None,
        })
    }

    /// The user's enrolled device, decrypted; `None` when there is none.
    pub(crate) async fn push_device(
        &self,
        conn: &mut PgConnection,
        provider: &str,
        user_id: Uuid,
    ) -> Result<Option<PushDevice>, ServiceError> {
        let row: Option<DeviceRow> =
            sqlx::query_as("SELECT device_id, secret_ciphertext FROM factors WHERE user_id = $1 AND kind = 'push'")
                .bind(user_id)
                .fetch_optional(conn)
                .await?;
        let Some(DeviceRow {
            device_id: Some(device_id),
            secret_ciphertext: Some(ciphertext),
        }) = row
        else {
            return Ok(None);
        };
        let material = self
            .keyring
            .decrypt(&ciphertext, &device_aad(provider, user_id, device_id))
            .map_err(secret_error)?;
        let bytes = material.expose_secret();
        let (key, token) = bytes
            .split_at_checked(32)
            .ok_or_else(|| secret_error("device material is too short"))?;
        let public_key: [u8; 32] = key.try_into().map_err(secret_error)?;
        let push_token = String::from_utf8(token.to_vec()).map_err(secret_error)?;
        Ok(Some(PushDevice {
            device_id: DeviceId::from_uuid(device_id),
            public_key,
            push_token,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_grouped_and_parse_back_in_any_case() {
        let mut rng = rand::rng();
        for _ in 0..200 {
            let code = generate_code(&mut rng);
            assert_eq!(code.len(), CODE_LEN + 2, "{code}");
            let normalised = normalise_code(&code).unwrap_or_default();
            assert_eq!(normalised, code.replace('-', ""));
            assert_eq!(normalise_code(&code.to_lowercase()), Some(normalised.clone()));
            assert_eq!(normalise_code(&code.replace('-', " ")), Some(normalised));
        }
        assert_eq!(normalise_code("ABCD-EFGH-JKL"), None);
        assert_eq!(normalise_code("ABCD-EFGH-JKL0"), None, "0 is not in the alphabet");
        assert_eq!(normalise_code(""), None);
    }

    #[test]
    fn the_right_number_is_among_distinct_two_digit_choices() {
        let mut rng = rand::rng();
        for _ in 0..500 {
            let (right, choices) = match_numbers(&mut rng);
            assert_eq!(choices.len(), MATCH_CHOICES);
            assert!(choices.contains(&right));
            assert!(choices.iter().all(|n| (10..=99).contains(n)));
            let mut unique = choices.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), MATCH_CHOICES);
        }
    }

    #[test]
    fn each_refusal_has_its_own_code() {
        let codes = [
            EnrollmentError::Invalid.code(),
            EnrollmentError::Expired.code(),
            EnrollmentError::Used.code(),
        ];
        assert_eq!(
            codes,
            [
                "enrollment_code_invalid",
                "enrollment_code_expired",
                "enrollment_code_used"
            ]
        );
    }
}
