//! Users of a provider: create, read, update, delete, list, import. Every
//! status change is an event (billing counts enabled users from them) and
//! every admin action on a user is audited.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;
use vigil_core::{PhoneNumber, UserId, Username};
use vigil_proto::{
    events::{UserCreated, UserDeleted, UserStatusChanged},
    rpc,
    v1::{Factor, UserStatus},
};

use crate::{
    service::{Service, ServiceError, actor_or_admin, factor_kind, factor_of, parse_provider, timestamp},
    store::{self, Audited, FactorRow, UserDetail},
};

pub const MAX_PAGE_SIZE: u32 = 500;
const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_IMPORT_ROWS: usize = 10_000;

fn status_of(s: &str) -> UserStatus {
    match s {
        "enabled" => UserStatus::Enabled,
        "blocked_for_fraud" => UserStatus::BlockedForFraud,
        _ => UserStatus::Disabled,
    }
}

fn status_name(s: UserStatus) -> Option<&'static str> {
    match s {
        UserStatus::Enabled => Some("enabled"),
        UserStatus::Disabled => Some("disabled"),
        UserStatus::BlockedForFraud => Some("blocked_for_fraud"),
        UserStatus::Unspecified => None,
    }
}

/// The wire form of a user. Phone numbers leave this service masked.
pub fn user_record(u: &UserDetail, factors: &[FactorRow]) -> rpc::UserRecord {
    let masked = |d: &str| PhoneNumber::parse(d).map(|p| p.masked()).unwrap_or_default();
    rpc::UserRecord {
        user_id: UserId::from_uuid(u.id).to_string(),
        username: u.username.clone(),
        display_name: u.display_name.clone(),
        status: status_of(&u.status) as i32,
        phone: masked(&u.phone),
        email: u.email.clone(),
        default_factor: factor_of(&u.default_factor) as i32,
        has_pin: u.pin_hash.is_some(),
        factors: factors
            .iter()
            .map(|f| rpc::FactorSummary {
                factor: factor_of(&f.kind) as i32,
                masked_destination: match f.kind.as_str() {
                    "sms" | "voice" => masked(&f.destination),
                    _ => String::new(),
                },
            })
            .collect(),
        bypass_until: u.bypass_until.map(timestamp),
        bypass_remaining: u32::try_from(u.bypass_remaining).unwrap_or(0),
        locked_until: u.locked_until.map(timestamp),
        created_at: Some(timestamp(u.created_at)),
    }
}

fn invalid(field: &str, e: impl std::fmt::Display) -> ServiceError {
    ServiceError::InvalidArgument(format!("{field}: {e}"))
}

fn parse_email(email: &str) -> Result<String, ServiceError> {
    let email = email.trim();
    if email.is_empty() {
        return Ok(String::new());
    }
    let valid = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        });
    if valid {
        Ok(email.to_lowercase())
    } else {
        Err(invalid("email", "not an email address"))
    }
}

fn parse_phone(phone: &str) -> Result<String, ServiceError> {
    let phone = phone.trim();
    if phone.is_empty() {
        return Ok(String::new());
    }
    PhoneNumber::parse(phone)
        .map(|p| p.as_str().to_owned())
        .map_err(|e| invalid("phone", e))
}

fn parse_default_method(method: &str) -> Result<String, ServiceError> {
    match method.trim().to_lowercase().as_str() {
        "" => Ok(String::new()),
        m @ ("sms" | "voice" | "push" | "totp" | "hotp") => Ok(m.to_owned()),
        other => Err(invalid(
            "default_method",
            format!("{other:?} is not one of sms, voice, push, totp, hotp"),
        )),
    }
}

fn validate_pin(pin: &str) -> Result<(), ServiceError> {
    if (4..=12).contains(&pin.len()) && pin.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(invalid("pin", "a PIN is 4 to 12 digits"))
    }
}

/// An import row's contact fields; `None` for a field the source lacks.
struct Contact {
    display_name: Option<String>,
    phone: Option<String>,
    email: Option<String>,
    default_method: Option<String>,
}

/// The names of the contact fields a change touches, for the audit log:
/// which fields, never their values.
fn changed_fields(
    user: &UserDetail,
    display_name: Option<&str>,
    phone: Option<&str>,
    email: Option<&str>,
    default_factor: Option<&str>,
) -> String {
    [
        ("display_name", display_name, user.display_name.as_str()),
        ("phone", phone, user.phone.as_str()),
        ("email", email, user.email.as_str()),
        ("default_method", default_factor, user.default_factor.as_str()),
    ]
    .into_iter()
    .filter(|(_, new, old)| new.is_some_and(|new| new != *old))
    .map(|(name, _, _)| name)
    .collect::<Vec<_>>()
    .join(",")
}

/// The phone number's SMS and voice factors follow the phone field.
async fn sync_phone_factors(
    conn: &mut PgConnection,
    user_id: Uuid,
    phone: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM factors WHERE user_id = $1 AND kind IN ('sms', 'voice')")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    if !phone.is_empty() {
        for kind in ["sms", "voice"] {
            store::insert_factor(conn, user_id, kind, phone, now).await?;
        }
    }
    Ok(())
}

impl Service {
    pub(crate) async fn user_of(
        &self,
        conn: &mut PgConnection,
        provider: &str,
        user: &str,
        lock: bool,
    ) -> Result<UserDetail, ServiceError> {
        let found = match UserId::parse(user) {
            Ok(id) => store::user_by_id(conn, provider, id.as_uuid(), lock).await?,
            Err(_) => match Username::parse(user) {
                Ok(name) => store::user_by_name(conn, provider, name.as_str(), lock).await?,
                Err(_) => None,
            },
        };
        found.ok_or_else(|| ServiceError::NotFound(format!("no user {user:?} in this provider")))
    }

    pub(crate) async fn reply_for(
        &self,
        conn: &mut PgConnection,
        user: &UserDetail,
    ) -> Result<rpc::UserReply, ServiceError> {
        let factors = store::user_factors(conn, user.id).await?;
        Ok(rpc::UserReply {
            user: Some(user_record(user, &factors)),
            error: None,
        })
    }

    pub async fn create_user(&self, req: rpc::CreateUserRequest) -> Result<rpc::CreateUserReply, ServiceError> {
        let provider = parse_provider(&req.provider_id)?.to_string();
        let username = Username::parse(&req.username).map_err(|e| invalid("username", e))?;
        let phone = PhoneNumber::parse(&req.sms_phone).map_err(|e| invalid("sms_phone", e))?;
        let now = self.clock.now();
        let mut tx = self.pool.begin().await?;
        let user_id = self
            .insert_user(
                &mut tx,
                &provider,
                &username,
                req.display_name.trim(),
                phone.as_str(),
                "",
                "sms",
                actor_or_admin(&req.actor),
                now,
            )
            .await?
            .ok_or_else(|| ServiceError::AlreadyExists(format!("user {username} exists in this provider")))?;
        tx.commit().await?;
        self.outbox.notify();
        tracing::info!(%user_id, %provider, "user created");
        Ok(rpc::CreateUserReply {
            user_id: user_id.to_string(),
            status: UserStatus::Enabled as i32,
            factors: [Factor::Sms, Factor::Voice]
                .into_iter()
                .map(|f| rpc::FactorSummary {
                    factor: f as i32,
                    masked_destination: phone.masked(),
                })
                .collect(),
            error: None,
        })
    }

    /// Inserts an enabled user with its phone factors, audits and announces
    /// it; `None` when the username is taken.
    #[allow(clippy::too_many_arguments)]
    async fn insert_user(
        &self,
        tx: &mut PgConnection,
        provider: &str,
        username: &Username,
        display_name: &str,
        phone: &str,
        email: &str,
        default_factor: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<UserId>, ServiceError> {
        let user_id = UserId::new();
        let created = store::insert_user(
            tx,
            store::NewUser {
                id: user_id.as_uuid(),
                provider_id: provider,
                username: username.as_str(),
                display_name,
                now,
            },
        )
        .await?;
        if !created {
            return Ok(None);
        }
        sqlx::query("UPDATE users SET phone = $2, email = $3, default_factor = $4 WHERE id = $1")
            .bind(user_id.as_uuid())
            .bind(phone)
            .bind(email)
            .bind(default_factor)
            .execute(&mut *tx)
            .await?;
        sync_phone_factors(tx, user_id.as_uuid(), phone, now).await?;
        let audited = Audited {
            provider_id: provider,
            user_id: user_id.as_uuid(),
            username: username.as_str(),
        };
        store::audit_user(tx, audited, actor, "user_created", "", now).await?;
        let event = UserCreated {
            user_id: user_id.to_string(),
            status: UserStatus::Enabled as i32,
            occurred_at: Some(timestamp(now)),
        };
        self.outbox.enqueue(tx, provider, &event).await?;
        Ok(Some(user_id))
    }

    pub async fn get_user(&self, req: rpc::GetUserRequest) -> Result<rpc::UserReply, ServiceError> {
        let provider = parse_provider(&req.provider_id)?.to_string();
        let mut conn = self.pool.acquire().await?;
        let user = self.user_of(&mut conn, &provider, &req.user, false).await?;
        self.reply_for(&mut conn, &user).await
    }

    pub async fn update_user(&self, req: rpc::UpdateUserRequest) -> Result<rpc::UserReply, ServiceError> {
        let provider = parse_provider(&req.provider_id)?.to_string();
        let now = self.clock.now();
        // Validate everything before touching anything: a bad field changes nothing.
        let phone = req.phone.as_deref().map(parse_phone).transpose()?;
        let email = req.email.as_deref().map(parse_email).transpose()?;
        if let Some(pin) = req.pin.as_deref().filter(|p| !p.is_empty()) {
            validate_pin(pin)?;
        }
        let default_factor = match req.default_factor {
            None => None,
            Some(f) => {
                let factor = Factor::try_from(f).unwrap_or(Factor::Unspecified);
                match factor {
                    Factor::Unspecified | Factor::Default => Some(String::new()),
                    other => Some(factor_kind(other).unwrap_or_default().to_owned()),
                }
            }
        };
        let status = match req.status {
            None => None,
            Some(s) => match UserStatus::try_from(s).ok().and_then(status_name) {
                Some(name @ ("enabled" | "disabled")) => Some(name),
                _ => return Err(invalid("status", "set ENABLED or DISABLED")),
            },
        };
        if let Some(name) = req.display_name.as_deref()
            && name.chars().count() > 200
        {
            return Err(invalid("display_name", "at most 200 characters"));
        }
        let pin_hash = match req.pin.as_deref() {
            None => None,
            Some("") => Some(None),
            Some(pin) => Some(Some(
                self.pin_hasher
                    .hash(&mut rand::rng(), pin.as_bytes())
                    .map_err(|e| ServiceError::Secret(e.to_string()))?
                    .into_string(),
            )),
        };

        let mut tx = self.pool.begin().await?;
        let user = self.user_of(&mut tx, &provider, &req.user, true).await?;
        let actor = actor_or_admin(&req.actor);
        let changed = changed_fields(
            &user,
            req.display_name.as_deref().map(str::trim),
            phone.as_deref(),
            email.as_deref(),
            default_factor.as_deref(),
        );
        if !changed.is_empty() {
            store::audit_user(&mut tx, user.audited(), actor, "user_updated", &changed, now).await?;
        }
        sqlx::query(
            "UPDATE users SET display_name = COALESCE($2, display_name), email = COALESCE($3, email),
                 default_factor = COALESCE($4, default_factor), updated_at = $5 WHERE id = $1",
        )
        .bind(user.id)
        .bind(req.display_name.as_deref().map(str::trim))
        .bind(email.as_deref())
        .bind(default_factor.as_deref())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if let Some(phone) = &phone {
            sqlx::query("UPDATE users SET phone = $2 WHERE id = $1")
                .bind(user.id)
                .bind(phone)
                .execute(&mut *tx)
                .await?;
            sync_phone_factors(&mut tx, user.id, phone, now).await?;
        }
        if let Some(hash) = pin_hash {
            sqlx::query("UPDATE users SET pin_hash = $2 WHERE id = $1")
                .bind(user.id)
                .bind(hash)
                .execute(&mut *tx)
                .await?;
            store::audit_user(&mut tx, user.audited(), actor, "pin_changed", "", now).await?;
        }
        if req.bypass_seconds.is_some() || req.bypass_count.is_some() {
            let seconds = req.bypass_seconds.unwrap_or(0);
            let count = if seconds == 0 {
                0
            } else {
                req.bypass_count.unwrap_or(1).max(1)
            };
            let until = (seconds > 0).then(|| now + chrono::Duration::seconds(i64::from(seconds)));
            sqlx::query("UPDATE users SET bypass_until = $2, bypass_remaining = $3 WHERE id = $1")
                .bind(user.id)
                .bind(until)
                .bind(i32::try_from(count).unwrap_or(i32::MAX))
                .execute(&mut *tx)
                .await?;
            let detail = format!("{count} login(s) within {seconds} s");
            store::audit_user(&mut tx, user.audited(), actor, "bypass_set", &detail, now).await?;
        }
        if req.unlock {
            store::set_failures(&mut tx, user.id, 0, None, None).await?;
            store::audit_user(&mut tx, user.audited(), actor, "user_unlocked", "", now).await?;
        }
        if let Some(status) = status
            && status != user.status
        {
            self.change_status(&mut tx, &user, status, actor, now).await?;
        }
        let updated = self.user_of(&mut tx, &provider, &req.user, false).await?;
        let reply = self.reply_for(&mut tx, &updated).await?;
        tx.commit().await?;
        self.outbox.notify();
        Ok(reply)
    }

    /// Sets a user's status, audits it and announces it, in `tx`.
    pub async fn change_status(
        &self,
        tx: &mut PgConnection,
        user: &UserDetail,
        status: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        sqlx::query("UPDATE users SET status = $2, updated_at = $3 WHERE id = $1")
            .bind(user.id)
            .bind(status)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let action = match (user.status.as_str(), status) {
            ("blocked_for_fraud", "enabled") => "user_unblocked",
            (_, "enabled") => "user_enabled",
            (_, "blocked_for_fraud") => "user_blocked_for_fraud",
            _ => "user_disabled",
        };
        store::audit_user(tx, user.audited(), actor, action, "", now).await?;
        let event = UserStatusChanged {
            user_id: UserId::from_uuid(user.id).to_string(),
            previous: status_of(&user.status) as i32,
            status: status_of(status) as i32,
            occurred_at: Some(timestamp(now)),
        };
        self.outbox.enqueue(tx, &user.provider_id, &event).await?;
        tracing::info!(user_id = %UserId::from_uuid(user.id), action, "user status changed");
        Ok(())
    }

    pub async fn delete_user(&self, req: rpc::DeleteUserRequest) -> Result<rpc::DeleteUserReply, ServiceError> {
        let provider = parse_provider(&req.provider_id)?.to_string();
        let now = self.clock.now();
        let mut tx = self.pool.begin().await?;
        let user = self.user_of(&mut tx, &provider, &req.user, true).await?;
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user.id)
            .execute(&mut *tx)
            .await?;
        let actor = actor_or_admin(&req.actor);
        store::audit_user(&mut tx, user.audited(), actor, "user_deleted", "", now).await?;
        let event = UserDeleted {
            user_id: UserId::from_uuid(user.id).to_string(),
            occurred_at: Some(timestamp(now)),
        };
        self.outbox.enqueue(&mut tx, &provider, &event).await?;
        tx.commit().await?;
        self.outbox.notify();
        Ok(rpc::DeleteUserReply { error: None })
    }

    pub async fn list_users(&self, req: rpc::ListUsersRequest) -> Result<rpc::ListUsersReply, ServiceError> {
        let provider = parse_provider(&req.provider_id)?.to_string();
        if req.page_size > MAX_PAGE_SIZE {
            return Err(invalid("page_size", format!("at most {MAX_PAGE_SIZE}")));
        }
        let size = if req.page_size == 0 {
            DEFAULT_PAGE_SIZE
        } else {
            req.page_size
        };
        let mut conn = self.pool.acquire().await?;
        // One more than asked tells whether another page follows.
        let mut rows = store::list_users(
            &mut conn,
            &provider,
            req.query.trim(),
            &req.page_token,
            i64::from(size) + 1,
        )
        .await?;
        let more = rows.len() > size as usize;
        rows.truncate(size as usize);
        let mut users = Vec::with_capacity(rows.len());
        for row in &rows {
            let factors = store::user_factors(&mut conn, row.id).await?;
            users.push(user_record(row, &factors));
        }
        Ok(rpc::ListUsersReply {
            next_page_token: if more {
                rows.last().map(|r| r.username.clone()).unwrap_or_default()
            } else {
                String::new()
            },
            users,
            error: None,
        })
    }

    /// Creates or updates each row; the same file twice changes nothing the
    /// second time. A rejected row never stops the others.
    pub async fn import_users(&self, req: rpc::ImportUsersRequest) -> Result<rpc::ImportUsersReply, ServiceError> {
        let provider = parse_provider(&req.provider_id)?.to_string();
        if req.rows.len() > MAX_IMPORT_ROWS {
            return Err(invalid("rows", format!("at most {MAX_IMPORT_ROWS} per import")));
        }
        let mut results = Vec::with_capacity(req.rows.len());
        let mut seen = std::collections::HashSet::new();
        for row in &req.rows {
            let outcome = match self
                .import_row(&provider, row, actor_or_admin(&req.actor), &mut seen)
                .await
            {
                Ok(outcome) => (outcome, String::new()),
                Err(ServiceError::InvalidArgument(reason)) => (rpc::ImportOutcome::Rejected, reason),
                Err(other) => return Err(other),
            };
            results.push(rpc::ImportResult {
                line: row.line,
                username: row.username.trim().to_lowercase(),
                outcome: outcome.0 as i32,
                reason: outcome.1,
            });
        }
        self.outbox.notify();
        Ok(rpc::ImportUsersReply { results, error: None })
    }

    async fn import_row(
        &self,
        provider: &str,
        row: &rpc::ImportRow,
        actor: &str,
        seen: &mut std::collections::HashSet<String>,
    ) -> Result<rpc::ImportOutcome, ServiceError> {
        let username = Username::parse(&row.username).map_err(|e| invalid("username", e))?;
        if !seen.insert(username.as_str().to_owned()) {
            return Err(invalid("username", "appears twice in this file"));
        }
        let display_name = row.display_name.trim();
        if display_name.chars().count() > 200 {
            return Err(invalid("display_name", "at most 200 characters"));
        }
        let present = |field: &str| !row.absent.iter().any(|a| a == field);
        let imported = Contact {
            display_name: present("display_name").then(|| display_name.to_owned()),
            phone: present("phone").then(|| parse_phone(&row.phone)).transpose()?,
            email: present("email").then(|| parse_email(&row.email)).transpose()?,
            default_method: present("default_method")
                .then(|| parse_default_method(&row.default_method))
                .transpose()?,
        };
        let now = self.clock.now();
        let mut tx = self.pool.begin().await?;
        let outcome = match store::user_by_name(&mut tx, provider, username.as_str(), true).await? {
            None => {
                let or_empty = |v: &Option<String>| v.clone().unwrap_or_default();
                self.insert_user(
                    &mut tx,
                    provider,
                    &username,
                    &or_empty(&imported.display_name),
                    &or_empty(&imported.phone),
                    &or_empty(&imported.email),
                    &or_empty(&imported.default_method),
                    actor,
                    now,
                )
                .await?;
                rpc::ImportOutcome::Created
            }
            Some(u) => {
                let changed = changed_fields(
                    &u,
                    imported.display_name.as_deref(),
                    imported.phone.as_deref(),
                    imported.email.as_deref(),
                    imported.default_method.as_deref(),
                );
                if changed.is_empty() {
                    rpc::ImportOutcome::Unchanged
                } else {
                    sqlx::query(
                        "UPDATE users SET display_name = COALESCE($2, display_name), phone = COALESCE($3, phone),
                             email = COALESCE($4, email), default_factor = COALESCE($5, default_factor), updated_at = $6
                         WHERE id = $1",
                    )
                    .bind(u.id)
                    .bind(&imported.display_name)
                    .bind(&imported.phone)
                    .bind(&imported.email)
                    .bind(&imported.default_method)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    if let Some(phone) = imported.phone.as_deref().filter(|p| *p != u.phone) {
                        sync_phone_factors(&mut tx, u.id, phone, now).await?;
                    }
                    store::audit_user(&mut tx, u.audited(), actor, "user_updated", &changed, now).await?;
                    rpc::ImportOutcome::Updated
                }
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_fields_are_validated() {
        assert_eq!(
            parse_email(" Ann@Example.com ").ok().as_deref(),
            Some("ann@example.com")
        );
        assert!(parse_email("ann@example").is_err());
        assert!(parse_email("a nn@example.com").is_err());
        assert_eq!(parse_email("").ok().as_deref(), Some(""));
        assert!(parse_phone("+15551234567").is_ok());
        assert!(parse_phone("555-1234").is_err());
        assert_eq!(parse_default_method("SMS").ok().as_deref(), Some("sms"));
        assert!(parse_default_method("fax").is_err());
        assert!(validate_pin("1234").is_ok());
        assert!(validate_pin("12a4").is_err());
        assert!(validate_pin("123").is_err());
    }
}
