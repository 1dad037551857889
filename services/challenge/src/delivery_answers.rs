//! What the user did on their phone, as telephony reports it: an SMS reply
//! (a code or a keyword), a voice call answer (`#`, a PIN, `0#`), a push
//! answer. Telephony forwards; this decides, because users, PINs and codes
//! live here. A fraud report ends the challenge as `fraud`, blocks the user
//! when the provider says so, and is announced on `vigil.fraud.reported`.

use std::sync::Arc;

use sqlx::PgConnection;
use subtle::ConstantTimeEq;
use vigil_bus::{Handler, HandlerError, Received, envelope};
use vigil_core::{ChallengeId, UserId};
use vigil_proto::{
    events::{AnswerKind, DeliveryAnswered, FraudReported},
    v1::Reason,
};

use crate::{
    challenges::challenge_uuid,
    login,
    service::{Service, ServiceError, factor_of, timestamp},
    state::ChallengeState,
    store::{self, ChallengeRow},
};

pub struct DeliveryAnsweredHandler(pub Arc<Service>);

fn retry(e: ServiceError) -> HandlerError {
    HandlerError::Retry(e.to_string())
}

impl Handler for DeliveryAnsweredHandler {
    async fn handle(&self, tx: &mut PgConnection, event: Received<'_>) -> Result<(), HandlerError> {
        let answer: DeliveryAnswered = envelope::unwrap(event.envelope)?;
        let Some(id) = challenge_uuid(&answer.challenge_id) else {
            return Err(HandlerError::Reject(format!(
                "bad challenge id {:?}",
                answer.challenge_id
            )));
        };
        let provider = &event.envelope.provider_id;
        let Some(row) = store::get_challenge(tx, provider, id, true).await? else {
            tracing::warn!(challenge_id = %answer.challenge_id, "answer for an unknown challenge");
            return Ok(());
        };
        if row.state().is_terminal() {
            // A late or repeated answer: the challenge already has its final state.
            tracing::info!(challenge_id = %answer.challenge_id, state = row.state().as_str(), "answer after the end; ignored");
            return Ok(());
        }
        let service = &self.0;
        let now = service.clock.now();
        let (state, reason) = if now >= row.expires_at {
            (ChallengeState::Expired, Reason::Expired)
        } else {
            match AnswerKind::try_from(answer.kind).unwrap_or_default() {
                AnswerKind::Approve if row.factor == "push" => number_matched(service, tx, &row, answer.matched_number)
                    .await
                    .map_err(retry)?,
                AnswerKind::Approve => (ChallengeState::Approved, Reason::Approved),
                AnswerKind::Deny => (ChallengeState::Denied, Reason::Denied),
                AnswerKind::Fraud => (ChallengeState::Fraud, Reason::Fraud),
                AnswerKind::Code => {
                    let id_text = ChallengeId::from_uuid(row.id).to_string();
                    let right = row
                        .code_hash
                        .as_deref()
                        .is_some_and(|stored| service.codes.matches(&id_text, answer.body.trim(), stored));
                    if right {
                        (ChallengeState::Approved, Reason::Approved)
                    } else {
                        (ChallengeState::Denied, Reason::WrongCode)
                    }
                }
                AnswerKind::Pin => pin_answer(service, tx, &row, &answer.body).await.map_err(retry)?,
                AnswerKind::Unspecified => {
                    return Err(HandlerError::Reject("answer without a kind".into()));
                }
            }
        };
        if !service.complete(tx, &row, state, reason, now).await.map_err(retry)? {
            return Ok(());
        }
        match state {
            ChallengeState::Approved => service.approved(tx, &row, None, now).await.map_err(retry)?,
            ChallengeState::Fraud => fraud(service, tx, &row).await.map_err(retry)?,
            _ => {}
        }
        let username = store::user_by_id(tx, provider, row.user_id, false)
            .await?
            .map(|u| u.username)
            .unwrap_or_default();
        let decision = if state == ChallengeState::Approved {
            vigil_proto::v1::Decision::Allow
        } else {
            vigil_proto::v1::Decision::Deny
        };
        login::record_answer(tx, &row, &username, "verify", (decision, reason), now)
            .await
            .map_err(retry)?;
        tracing::info!(challenge_id = %answer.challenge_id, state = state.as_str(), "challenge answered on the phone");
        Ok(())
    }

    fn committed(&self) {
        self.0.outbox.notify();
    }
}

/// A push approval counts only with the number the login screen showed: a
/// user approving a push they did not start (push fatigue) cannot know it.
async fn number_matched(
    service: &Service,
    tx: &mut PgConnection,
    row: &ChallengeRow,
    picked: u32,
) -> Result<(ChallengeState, Reason), ServiceError> {
    // No number was offered (a RADIUS login has no screen): a plain approval.
    let right = match row.match_number.and_then(|n| u32::try_from(n).ok()) {
        Some(n) => bool::from(n.to_be_bytes().ct_eq(&picked.to_be_bytes())),
        None => true,
    };
    if right {
        return Ok((ChallengeState::Approved, Reason::Approved));
    }
    if let Some(user) = store::user_by_id(tx, &row.provider_id, row.user_id, true).await? {
        service.failed(tx, &user, service.clock.now()).await?;
    }
    Ok((ChallengeState::Denied, Reason::WrongNumber))
}

/// A PIN typed on the phone keypad, checked against the user's hash.
async fn pin_answer(
    service: &Service,
    tx: &mut PgConnection,
    row: &ChallengeRow,
    digits: &str,
) -> Result<(ChallengeState, Reason), ServiceError> {
    let user = store::user_by_id(tx, &row.provider_id, row.user_id, true).await?;
    let right = match user.as_ref().and_then(|u| u.pin_hash.as_deref()) {
        Some(hash) => service
            .pin_hasher
            .verify(digits.trim().as_bytes(), hash)
            .map_err(|e| ServiceError::Secret(e.to_string()))?,
        None => false,
    };
    if right {
        return Ok((ChallengeState::Approved, Reason::Approved));
    }
    if let Some(user) = &user {
        service.failed(tx, user, service.clock.now()).await?;
    }
    Ok((ChallengeState::Denied, Reason::WrongCode))
}

async fn fraud(service: &Service, tx: &mut PgConnection, row: &ChallengeRow) -> Result<(), ServiceError> {
    let now = service.clock.now();
    let mut blocked = false;
    if row.block_user_on_fraud
        && let Some(user) = store::user_by_id(tx, &row.provider_id, row.user_id, true).await?
        && user.status != "blocked_for_fraud"
    {
        service
            .change_status(tx, &user, "blocked_for_fraud", "fraud_report", now)
            .await?;
        blocked = true;
    }
    let event = FraudReported {
        challenge_id: ChallengeId::from_uuid(row.id).to_string(),
        user_id: UserId::from_uuid(row.user_id).to_string(),
        factor: factor_of(&row.factor) as i32,
        user_blocked: blocked,
        occurred_at: Some(timestamp(now)),
    };
    service.outbox.enqueue(tx, &row.provider_id, &event).await?;
    tracing::warn!(challenge_id = %event.challenge_id, user_blocked = blocked, "fraud reported by the user");
    Ok(())
}
