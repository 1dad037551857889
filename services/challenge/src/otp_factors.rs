//! TOTP, HOTP and backup codes: enrolment (the seed encrypted at rest, the
//! URI and QR shown once), HOTP resync, and checking a typed code inside a
//! challenge. Codes are compared in constant time by `vigil-otp`; accepted
//! TOTP steps and HOTP counters only move forward, so no code works twice.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;
use vigil_core::UserId;
use vigil_otp::{BackupCode, Code, Digits, Enrolment, Hotp, OtpSecret, Totp, VerifyError};
use vigil_proto::{rpc, v1::Factor};
use vigil_secrets::{Aad, secrecy::ExposeSecret};

use crate::{
    service::{Service, ServiceError, actor_or_admin, parse_provider},
    store,
};

/// The outcome of checking a typed code against a user's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpCheck {
    Accepted,
    Wrong,
    /// A TOTP code of a step already used, or a spent backup code.
    AlreadyUsed,
}

fn seed_aad(provider: &str, user_id: Uuid, kind: &str) -> Aad {
    Aad::new("otp_seed")
        .with("provider", provider)
        .with("user", user_id.to_string())
        .with("kind", kind)
}

fn secret_error(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Secret(e.to_string())
}

/// Backup codes are ~49 bits: stored as an HMAC under the service's code key
/// (an attacker with the database alone cannot test guesses), bound to the user.
fn backup_hash(service: &Service, user_id: Uuid, code: &BackupCode) -> Vec<u8> {
    service.codes.hash(&format!("backup:{user_id}"), code.normalized())
}

async fn token(conn: &mut PgConnection, user_id: Uuid, kind: &str) -> Result<Option<store::OtpToken>, sqlx::Error> {
    sqlx::query_as(
        "SELECT secret_ciphertext, counter, last_step FROM factors WHERE user_id = $1 AND kind = $2 FOR UPDATE",
    )
    .bind(user_id)
    .bind(kind)
    .fetch_optional(conn)
    .await
}

impl Service {
    fn decrypt_seed(
        &self,
        provider: &str,
        user_id: Uuid,
        kind: &str,
        row: &store::OtpToken,
    ) -> Result<OtpSecret, ServiceError> {
        let ciphertext = row
            .secret_ciphertext
            .as_deref()
            .ok_or_else(|| ServiceError::Secret(format!("{kind} factor has no seed")))?;
        let seed = self
            .keyring
            .decrypt(ciphertext, &seed_aad(provider, user_id, kind))
            .map_err(secret_error)?;
        OtpSecret::from_bytes(seed.expose_secret()).map_err(secret_error)
    }

    pub async fn enroll_factor(&self, req: rpc::EnrollFactorRequest) -> Result<rpc::EnrollFactorReply, ServiceError> {
        let provider = parse_provider(&req.provider_id)?.to_string();
        let factor = Factor::try_from(req.factor).unwrap_or(Factor::Unspecified);
        let now = self.clock.now();
        let mut tx = self.pool.begin().await?;
        let user = self.user_of(&mut tx, &provider, &req.user, true).await?;
        let actor = actor_or_admin(&req.actor);
        let mut reply = rpc::EnrollFactorReply {
            factor: factor as i32,
            ..Default::default()
        };
        let kind = match factor {
            Factor::Totp | Factor::Hotp => {
                let (kind, enrolment, counter) = if factor == Factor::Totp {
                    let e = Enrolment::totp(&mut rand::rng(), &Totp::default(), &self.otp_issuer, &user.username);
                    ("totp", e, None)
                } else {
                    let e = Enrolment::hotp(&mut rand::rng(), &Hotp::default(), &self.otp_issuer, &user.username);
                    ("hotp", e, Some(0i64))
                };
                let enrolment = enrolment.map_err(|e| ServiceError::InvalidArgument(format!("username: {e}")))?;
                let ciphertext = self
                    .keyring
                    .encrypt(
                        &mut rand::rng(),
                        enrolment.secret.expose_bytes(),
                        &seed_aad(&provider, user.id, kind),
                    )
                    .map_err(secret_error)?;
                replace_factor(&mut tx, user.id, kind, Some(&ciphertext), counter, now).await?;
                reply.otpauth_uri = enrolment.uri.expose().to_owned();
                reply.secret_base32 = enrolment.secret.to_base32().to_string();
                reply.qr_png = enrolment.qr_png(6).map_err(secret_error)?;
                kind
            }
            Factor::BackupCode => {
                let codes = vigil_otp::generate_backup_codes(&mut rand::rng());
                sqlx::query("DELETE FROM backup_codes WHERE user_id = $1")
                    .bind(user.id)
                    .execute(&mut *tx)
                    .await?;
                for code in &codes {
                    sqlx::query("INSERT INTO backup_codes (user_id, code_hash) VALUES ($1, $2)")
                        .bind(user.id)
                        .bind(backup_hash(self, user.id, code))
                        .execute(&mut *tx)
                        .await?;
                }
                replace_factor(&mut tx, user.id, "backup_code", None, None, now).await?;
                reply.backup_codes = codes.iter().map(|c| c.display().to_string()).collect();
                "backup_code"
            }
            Factor::Push => {
                // The factor exists once a device uses the code.
                self.start_push_enrollment(&mut tx, &provider, &user, &mut reply, now)
                    .await?;
                "push_code_issued"
            }
            _ => {
                return Err(ServiceError::InvalidArgument(
                    "factor must be FACTOR_TOTP, FACTOR_HOTP, FACTOR_BACKUP_CODE or FACTOR_PUSH".into(),
                ));
            }
        };
        store::audit_user(&mut tx, user.audited(), actor, "factor_enrolled", kind, now).await?;
        tx.commit().await?;
        tracing::info!(user_id = %UserId::from_uuid(user.id), kind, "factor enrolled");
        Ok(reply)
    }

    pub async fn resync_hotp(&self, req: rpc::ResyncHotpRequest) -> Result<rpc::UserReply, ServiceError> {
        let provider = parse_provider(&req.provider_id)?.to_string();
        let parse =
            |c: &str| Code::parse(c, Digits::Six).map_err(|e| ServiceError::InvalidArgument(format!("code: {e}")));
        let (first, second) = (parse(&req.first_code)?, parse(&req.second_code)?);
        let mut tx = self.pool.begin().await?;
        let user = self.user_of(&mut tx, &provider, &req.user, true).await?;
        let row = token(&mut tx, user.id, "hotp")
            .await?
            .ok_or_else(|| ServiceError::NotFound("the user has no HOTP token".into()))?;
        let secret = self.decrypt_seed(&provider, user.id, "hotp", &row)?;
        let counter = u64::try_from(row.counter.unwrap_or(0)).unwrap_or(0);
        let next = Hotp::default().resync(&secret, &first, &second, counter).map_err(|_| {
            ServiceError::InvalidArgument("the two codes are not consecutive codes of this token".into())
        })?;
        // The row is locked: it cannot have moved since it was read.
        set_counter(&mut tx, user.id, "hotp", row.counter, next).await?;
        let now = self.clock.now();
        store::audit_user(
            &mut tx,
            user.audited(),
            actor_or_admin(&req.actor),
            "hotp_resynced",
            "",
            now,
        )
        .await?;
        let reply = self.reply_for(&mut tx, &user).await?;
        tx.commit().await?;
        Ok(reply)
    }

    /// Checks `typed` against the user's `kind` token, moving its counter,
    /// step or backup code on in `tx` when it is accepted.
    /// Checks `typed` against the user's `token` (read, with the user row
    /// locked, by [`store::lock_verification`]) and moves the token forward.
    /// The writes are compare-and-set as well, so a code is never accepted
    /// twice even by a writer that did not hold the user's lock.
    #[allow(clippy::too_many_arguments)]
    pub async fn check_otp(
        &self,
        tx: &mut PgConnection,
        provider: &str,
        user_id: Uuid,
        kind: &str,
        token: &store::OtpToken,
        typed: &str,
        now: DateTime<Utc>,
    ) -> Result<OtpCheck, ServiceError> {
        if kind == "backup_code" {
            let Ok(code) = BackupCode::parse(typed) else {
                return Ok(OtpCheck::Wrong);
            };
            let hash = backup_hash(self, user_id, &code);
            let used: Option<Option<DateTime<Utc>>> =
                sqlx::query_scalar("SELECT used_at FROM backup_codes WHERE user_id = $1 AND code_hash = $2 FOR UPDATE")
                    .bind(user_id)
                    .bind(&hash)
                    .fetch_optional(&mut *tx)
                    .await?;
            return Ok(match used {
                None => OtpCheck::Wrong,
                Some(Some(_)) => OtpCheck::AlreadyUsed,
                Some(None) => {
                    sqlx::query("UPDATE backup_codes SET used_at = $3 WHERE user_id = $1 AND code_hash = $2")
                        .bind(user_id)
                        .bind(&hash)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    OtpCheck::Accepted
                }
            });
        }
        if kind == "hotp" {
            let Some((secret, code)) = self.seed_and_code(provider, user_id, kind, token, typed)? else {
                return Ok(OtpCheck::Wrong);
            };
            let counter = u64::try_from(token.counter.unwrap_or(0)).unwrap_or(0);
            return Ok(match Hotp::default().verify(&secret, &code, counter) {
                Ok(next) if set_counter(tx, user_id, kind, token.counter, next).await? => OtpCheck::Accepted,
                Ok(_) => OtpCheck::AlreadyUsed,
                Err(_) => OtpCheck::Wrong,
            });
        }
        Ok(match self.totp_step(provider, user_id, token, typed, now)? {
            Ok(step) if claim_step(tx, user_id, step).await? => OtpCheck::Accepted,
            Ok(_) => OtpCheck::AlreadyUsed,
            Err(refused) => refused,
        })
    }

    /// The TOTP step `typed` matches, if the clock allows it and it is later
    /// than the last step used; else why not. The step is not claimed here:
    /// that is a write of the caller's ([`claim_step`], or the statement
    /// that writes the challenge, see `store::Unlocked`).
    pub fn totp_step(
        &self,
        provider: &str,
        user_id: Uuid,
        token: &store::OtpToken,
        typed: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<i64, OtpCheck>, ServiceError> {
        let Some((secret, code)) = self.seed_and_code(provider, user_id, "totp", token, typed)? else {
            return Ok(Err(OtpCheck::Wrong));
        };
        let now_secs = u64::try_from(now.timestamp()).unwrap_or(0);
        let last = token.last_step.and_then(|s| u64::try_from(s).ok());
        Ok(match Totp::default().verify(&secret, &code, now_secs, last) {
            Ok(m) => Ok(i64::try_from(m.step).unwrap_or(i64::MAX)),
            Err(VerifyError::Replayed) => Err(OtpCheck::AlreadyUsed),
            Err(_) => Err(OtpCheck::Wrong),
        })
    }

    /// The token's seed and the typed code, or `None` when there is no seed
    /// (the factor was removed since the challenge began) or the code is not
    /// six digits.
    fn seed_and_code(
        &self,
        provider: &str,
        user_id: Uuid,
        kind: &str,
        token: &store::OtpToken,
        typed: &str,
    ) -> Result<Option<(OtpSecret, Code)>, ServiceError> {
        if token.secret_ciphertext.is_none() {
            return Ok(None);
        }
        let secret = self.decrypt_seed(provider, user_id, kind, token)?;
        Ok(Code::parse(typed, Digits::Six).ok().map(|code| (secret, code)))
    }
}

/// Moves the TOTP factor's last step to `step`; `false` if it is there or
/// past it already (the code was used meanwhile).
async fn claim_step(conn: &mut PgConnection, user_id: Uuid, step: i64) -> Result<bool, sqlx::Error> {
    let moved = sqlx::query(
        "UPDATE factors SET last_step = $2
         WHERE user_id = $1 AND kind = 'totp' AND (last_step IS NULL OR last_step < $2)",
    )
    .bind(user_id)
    .bind(step)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(moved == 1)
}

async fn replace_factor(
    conn: &mut PgConnection,
    user_id: Uuid,
    kind: &str,
    ciphertext: Option<&[u8]>,
    counter: Option<i64>,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM factors WHERE user_id = $1 AND kind = $2")
        .bind(user_id)
        .bind(kind)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO factors (id, user_id, kind, destination, created_at, secret_ciphertext, counter)
         VALUES ($1, $2, $3, '', $4, $5, $6)",
    )
    .bind(Uuid::now_v7())
    .bind(user_id)
    .bind(kind)
    .bind(now)
    .bind(ciphertext)
    .bind(counter)
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves an HOTP counter from `read` to `next`; `false` if it moved meanwhile.
async fn set_counter(
    conn: &mut PgConnection,
    user_id: Uuid,
    kind: &str,
    read: Option<i64>,
    next: u64,
) -> Result<bool, sqlx::Error> {
    let moved = sqlx::query(
        "UPDATE factors SET counter = $3 WHERE user_id = $1 AND kind = $2 AND counter IS NOT DISTINCT FROM $4",
    )
    .bind(user_id)
    .bind(kind)
    .bind(i64::try_from(next).unwrap_or(i64::MAX))
    .bind(read)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(moved == 1)
}
