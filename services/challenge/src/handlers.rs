//! The request/reply handlers: preauth, start, verify, status, create user.
//! Each returns a typed error that the edge ([`crate::app`]) maps once to an
//! `RpcError` reply; the caller turns any error into a deny.

use std::{sync::Arc, time::SystemTime};

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use vigil_bus::{BusError, Outbox};
use vigil_core::{ChallengeId, Clock, DeliveryId, PhoneNumber, ProviderId, UserId, Username};
use vigil_proto::{
    events::{
        AuthenticationKind, AuthenticationUsage, ChallengeCompleted, ChallengeCreated, Channel, DeliveryRequested,
        UserCreated,
    },
    rpc,
    v1::{Decision, Factor, Reason, UserStatus},
};

use crate::{
    codes::CodeHasher,
    state::{ChallengeState, parse_reason, reason_str},
    store::{self, ChallengeRow},
};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("bus error")]
    Bus(#[from] BusError),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    AlreadyExists(String),
}

impl ServiceError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Database(_) | Self::Bus(_) => "internal",
            Self::InvalidArgument(_) => "invalid_argument",
            Self::AlreadyExists(_) => "already_exists",
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
}

fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    vigil_proto::to_timestamp(SystemTime::from(t))
}

fn provider(id: &str) -> Result<ProviderId, ServiceError> {
    ProviderId::parse(id).map_err(|e| ServiceError::InvalidArgument(format!("provider_id: {e}")))
}

fn factor_kind(factor: Factor) -> Option<&'static str> {
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

fn factor_of(kind: &str) -> Factor {
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

/// Why a known user may not be challenged, if they may not.
fn status_denial(status: &str) -> Option<(Reason, &'static str)> {
    match status {
        "enabled" => None,
        "blocked_for_fraud" => Some((Reason::BlockedForFraud, "the user is blocked after a fraud report")),
        _ => Some((Reason::Disabled, "the user is disabled")),
    }
}

impl Service {
    pub async fn create_user(&self, req: rpc::CreateUserRequest) -> Result<rpc::CreateUserReply, ServiceError> {
        let provider = provider(&req.provider_id)?;
        let username =
            Username::parse(&req.username).map_err(|e| ServiceError::InvalidArgument(format!("username: {e}")))?;
        let phone =
            PhoneNumber::parse(&req.sms_phone).map_err(|e| ServiceError::InvalidArgument(format!("sms_phone: {e}")))?;
        let user_id = UserId::new();
        let now = self.clock.now();
        let mut tx = self.pool.begin().await?;
        let created = store::insert_user(
            &mut tx,
            store::NewUser {
                id: user_id.as_uuid(),
                provider_id: &provider.to_string(),
                username: username.as_str(),
                display_name: req.display_name.trim(),
                now,
            },
        )
        .await?;
        if !created {
            return Err(ServiceError::AlreadyExists(format!(
                "user {username} exists in this provider"
            )));
        }
        store::insert_factor(&mut tx, user_id.as_uuid(), "sms", phone.as_str(), now).await?;
        let event = UserCreated {
            user_id: user_id.to_string(),
            status: UserStatus::Enabled as i32,
            occurred_at: Some(timestamp(now)),
        };
        self.outbox.enqueue(&mut tx, &req.provider_id, &event).await?;
        tx.commit().await?;
        self.outbox.notify();
        tracing::info!(%user_id, %provider, "user created");
        Ok(rpc::CreateUserReply {
            user_id: user_id.to_string(),
            status: UserStatus::Enabled as i32,
            factors: vec![rpc::FactorSummary {
                factor: Factor::Sms as i32,
                masked_destination: phone.masked(),
            }],
            error: None,
        })
    }

    pub async fn preauth(&self, req: rpc::PreauthRequest) -> Result<rpc::PreauthReply, ServiceError> {
        let provider = provider(&req.provider_id)?;
        let deny = |reason: Reason, message: &str| rpc::PreauthReply {
            decision: Decision::Deny as i32,
            reason: reason as i32,
            message: message.to_owned(),
            ..Default::default()
        };
        let Ok(username) = Username::parse(&req.username) else {
            return Ok(deny(Reason::InvalidRequest, "the username is not valid"));
        };
        let mut conn = self.pool.acquire().await?;
        let Some(user) = store::find_user(&mut conn, &provider.to_string(), username.as_str()).await? else {
            return Ok(deny(Reason::UnknownUser, "the user is not enrolled in Vigil"));
        };
        if let Some((reason, message)) = status_denial(&user.status) {
            return Ok(deny(reason, message));
        }
        let factors: Vec<i32> = store::user_factors(&mut conn, user.id)
            .await?
            .iter()
            .map(|f| factor_of(&f.kind) as i32)
            .collect();
        if factors.is_empty() {
            return Ok(deny(Reason::NotEnrolled, "the user has no second factor"));
        }
        Ok(rpc::PreauthReply {
            decision: Decision::Challenge as i32,
            reason: Reason::Enrolled as i32,
            message: "a second factor is required".into(),
            factors,
            error: None,
        })
    }

    pub async fn start(&self, req: rpc::StartChallengeRequest) -> Result<rpc::StartChallengeReply, ServiceError> {
        let provider = provider(&req.provider_id)?.to_string();
        let challenge_id = ChallengeId::parse(&req.challenge_id)
            .map_err(|e| ServiceError::InvalidArgument(format!("challenge_id: {e}")))?;
        let deny = |reason: Reason, message: String| rpc::StartChallengeReply {
            decision: Decision::Deny as i32,
            reason: reason as i32,
            message,
            ..Default::default()
        };
        let Ok(username) = Username::parse(&req.username) else {
            return Ok(deny(Reason::InvalidRequest, "the username is not valid".into()));
        };
        let mut tx = self.pool.begin().await?;
        // A retried request finds the challenge it created the first time.
        if let Some(existing) = store::get_challenge(&mut tx, &provider, challenge_id.as_uuid(), false).await? {
            return Ok(self.start_reply(&existing, "challenge already started".into()));
        }
        let Some(user) = store::find_user(&mut tx, &provider, username.as_str()).await? else {
            return Ok(deny(Reason::UnknownUser, "the user is not enrolled in Vigil".into()));
        };
        if let Some((reason, message)) = status_denial(&user.status) {
            return Ok(deny(reason, message.into()));
        }
        let factors = store::user_factors(&mut tx, user.id).await?;
        let wanted = Factor::try_from(req.factor).unwrap_or(Factor::Unspecified);
        let chosen = match factor_kind(wanted) {
            Some(kind) => factors.iter().find(|f| f.kind == kind),
            None => factors.first(),
        };
        let Some(factor) = chosen else {
            return Ok(deny(
                Reason::NotEnrolled,
                format!("the user has no {} factor", factor_kind(wanted).unwrap_or("second")),
            ));
        };
        if factor.kind != "sms" {
            return Ok(deny(
                Reason::NotEnrolled,
                format!("the {} factor cannot be challenged yet", factor.kind),
            ));
        }
        let phone = PhoneNumber::parse(&factor.destination)
            .map_err(|_| ServiceError::InvalidArgument("stored phone number is invalid".into()))?;

        let code = self.codes.generate();
        let now = self.clock.now();
        let expires_at = now + self.lifetime;
        let id_text = challenge_id.to_string();
        store::insert_challenge(
            &mut tx,
            store::NewChallenge {
                id: challenge_id.as_uuid(),
                provider_id: &provider,
                user_id: user.id,
                agent_id: &req.agent_id,
                factor: &factor.kind,
                code_hash: self.codes.hash(&id_text, &code),
                max_attempts: self.max_attempts,
                client_ip: &req.client_ip,
                now,
                expires_at,
            },
        )
        .await?;
        let user_id = UserId::from_uuid(user.id).to_string();
        let minutes = (self.lifetime.num_seconds() + 59) / 60;
        let body = self
            .sms_template
            .replace("{code}", &code)
            .replace("{minutes}", &minutes.to_string());
        self.outbox
            .enqueue(
                &mut tx,
                &provider,
                &ChallengeCreated {
                    challenge_id: id_text.clone(),
                    user_id: user_id.clone(),
                    agent_id: req.agent_id.clone(),
                    factor: Factor::Sms as i32,
                    expires_at: Some(timestamp(expires_at)),
                },
            )
            .await?;
        self.outbox
            .enqueue(
                &mut tx,
                &provider,
                &DeliveryRequested {
                    delivery_id: DeliveryId::new().to_string(),
                    challenge_id: id_text.clone(),
                    channel: Channel::Sms as i32,
                    destination: phone.as_str().to_owned(),
                    body,
                    expires_at: Some(timestamp(expires_at)),
                    ..Default::default()
                },
            )
            .await?;
        // One billable authentication: a challenge issued to a user.
        self.outbox
            .enqueue(
                &mut tx,
                &provider,
                &AuthenticationUsage {
                    challenge_id: id_text.clone(),
                    user_id,
                    factor: Factor::Sms as i32,
                    occurred_at: Some(timestamp(now)),
                    kind: AuthenticationKind::Challenge as i32,
                    billable: true,
                },
            )
            .await?;
        tx.commit().await?;
        self.outbox.notify();
        tracing::info!(challenge_id = %id_text, to = %phone.masked(), "challenge started");
        Ok(rpc::StartChallengeReply {
            decision: Decision::Challenge as i32,
            reason: Reason::Enrolled as i32,
            message: format!("Enter the code sent to {}", phone.masked()),
            challenge_id: id_text,
            state: ChallengeState::Pending.to_proto() as i32,
            expires_at: Some(timestamp(expires_at)),
            error: None,
        })
    }

    fn start_reply(&self, row: &ChallengeRow, message: String) -> rpc::StartChallengeReply {
        let state = row.state();
        rpc::StartChallengeReply {
            decision: if state.is_terminal() && state != ChallengeState::Approved {
                Decision::Deny
            } else {
                Decision::Challenge
            } as i32,
            reason: parse_reason(&row.reason) as i32,
            message,
            challenge_id: ChallengeId::from_uuid(row.id).to_string(),
            state: state.to_proto() as i32,
            expires_at: Some(timestamp(row.expires_at)),
            error: None,
        }
    }

    pub async fn verify(&self, req: rpc::VerifyRequest) -> Result<rpc::VerifyReply, ServiceError> {
        let provider = provider(&req.provider_id)?.to_string();
        let reply = |decision: Decision, reason: Reason, state: ChallengeState, message: &str, remaining: i32| {
            rpc::VerifyReply {
                decision: decision as i32,
                reason: reason as i32,
                message: message.to_owned(),
                state: state.to_proto() as i32,
                attempts_remaining: remaining.max(0) as u32,
                error: None,
            }
        };
        let not_found = rpc::VerifyReply {
            decision: Decision::Deny as i32,
            reason: Reason::ChallengeNotFound as i32,
            message: "no such challenge".into(),
            ..Default::default()
        };
        let Ok(challenge_id) = ChallengeId::parse(&req.challenge_id) else {
            return Ok(not_found);
        };
        let mut tx = self.pool.begin().await?;
        let Some(row) = store::get_challenge(&mut tx, &provider, challenge_id.as_uuid(), true).await? else {
            return Ok(not_found);
        };
        let state = row.state();
        if state.is_terminal() {
            let (reason, message) = match state {
                ChallengeState::Approved => (
                    Reason::AlreadyUsed,
                    "this challenge was already answered; its code cannot be used again",
                ),
                ChallengeState::Expired => (Reason::Expired, "the challenge expired"),
                _ => (parse_reason(&row.reason), "the challenge has ended"),
            };
            return Ok(reply(Decision::Deny, reason, state, message, 0));
        }
        let now = self.clock.now();
        if now >= row.expires_at {
            self.complete(&mut tx, &row, ChallengeState::Expired, Reason::Expired, now)
                .await?;
            tx.commit().await?;
            self.outbox.notify();
            return Ok(reply(
                Decision::Deny,
                Reason::Expired,
                ChallengeState::Expired,
                "the challenge expired",
                0,
            ));
        }
        let id_text = challenge_id.to_string();
        let matched = row
            .code_hash
            .as_deref()
            .is_some_and(|stored| self.codes.matches(&id_text, &req.passcode, stored));
        let response = if matched {
            self.complete(&mut tx, &row, ChallengeState::Approved, Reason::Approved, now)
                .await?;
            reply(
                Decision::Allow,
                Reason::Approved,
                ChallengeState::Approved,
                "approved",
                0,
            )
        } else {
            let attempts = store::count_attempt(&mut tx, row.id).await?;
            let remaining = row.max_attempts - attempts;
            if remaining <= 0 {
                self.complete(&mut tx, &row, ChallengeState::Denied, Reason::TooManyAttempts, now)
                    .await?;
                reply(
                    Decision::Deny,
                    Reason::TooManyAttempts,
                    ChallengeState::Denied,
                    "too many wrong codes; the challenge is denied",
                    0,
                )
            } else {
                reply(
                    Decision::Deny,
                    Reason::WrongCode,
                    state,
                    "the code is not correct",
                    remaining,
                )
            }
        };
        tx.commit().await?;
        self.outbox.notify();
        tracing::info!(challenge_id = %id_text, reason = reason_str(Reason::try_from(response.reason).unwrap_or_default()), "passcode verified");
        Ok(response)
    }

    pub async fn status(&self, req: rpc::StatusRequest) -> Result<rpc::StatusReply, ServiceError> {
        let provider = provider(&req.provider_id)?.to_string();
        let not_found = rpc::StatusReply {
            reason: Reason::ChallengeNotFound as i32,
            message: "no such challenge".into(),
            ..Default::default()
        };
        let Ok(challenge_id) = ChallengeId::parse(&req.challenge_id) else {
            return Ok(not_found);
        };
        let mut tx = self.pool.begin().await?;
        let Some(row) = store::get_challenge(&mut tx, &provider, challenge_id.as_uuid(), false).await? else {
            return Ok(not_found);
        };
        let now = self.clock.now();
        // Report expiry the moment it is due, not when the sweep next runs.
        let (state, reason) = if !row.state().is_terminal() && now >= row.expires_at {
            self.complete(&mut tx, &row, ChallengeState::Expired, Reason::Expired, now)
                .await?;
            (ChallengeState::Expired, Reason::Expired)
        } else {
            (row.state(), parse_reason(&row.reason))
        };
        tx.commit().await?;
        self.outbox.notify();
        Ok(rpc::StatusReply {
            state: state.to_proto() as i32,
            reason: reason as i32,
            message: format!("the challenge is {}", state.as_str()),
            expires_at: Some(timestamp(row.expires_at)),
            error: None,
        })
    }

    /// Ends `row` in a terminal state and records the event, in `tx`.
    pub async fn complete(
        &self,
        tx: &mut PgConnection,
        row: &ChallengeRow,
        state: ChallengeState,
        reason: Reason,
        now: DateTime<Utc>,
    ) -> Result<bool, ServiceError> {
        if !store::transition(tx, row.id, state, reason_str(reason), now).await? {
            return Ok(false);
        }
        let event = ChallengeCompleted {
            challenge_id: ChallengeId::from_uuid(row.id).to_string(),
            user_id: UserId::from_uuid(row.user_id).to_string(),
            state: state.to_proto() as i32,
            reason: reason as i32,
        };
        self.outbox.enqueue(tx, &row.provider_id, &event).await?;
        Ok(true)
    }
}

/// Ids in events are typed strings; the database keeps UUIDs.
pub fn challenge_uuid(id: &str) -> Option<Uuid> {
    ChallengeId::parse(id).ok().map(|c| c.as_uuid())
}
