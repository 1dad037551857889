//! Signed fraud notifications to each provider's admin webhook.
//!
//! A durable consumer of `vigil.fraud.reported` records one notification per
//! fraud event (keyed by the event id, in the consumer's transaction), so a
//! redelivered event never notifies twice. A sender loop then POSTs each due
//! notification with Standard Webhooks headers (`webhook-id`,
//! `webhook-timestamp`, `webhook-signature`), retries failures, non-2xx
//! answers and timeouts with exponential backoff, and records every attempt
//! (status, attempts, last error). Rows are claimed with `FOR UPDATE SKIP
//! LOCKED`, so of several gateway replicas exactly one sends each attempt.
//! What stays at-least-once: a crash between the receiver's 2xx and the
//! commit sends once more, with the same `webhook-id` for the receiver to
//! drop.

mod sign;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use sqlx::PgConnection;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vigil_bus::{Handler, HandlerError, Received, envelope};
use vigil_core::ProviderId;
use vigil_proto::{events::FraudReported, v1::Factor};
use vigil_secrets::Aad;

pub use sign::new_secret;

use crate::{app::Gateway, error::GatewayError, store};

/// Durable name of the consumer.
pub const CONSUMER: &str = "gateway-fraud-webhook";

/// Fraud events older than this are not notified: a consumer created on an
/// upgrade must not post the stream's month of history to every webhook.
const MAX_EVENT_AGE: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// How patiently notifications are sent.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Wait after the first failure; doubles after each further one (at most an hour).
    pub retry_base: Duration,
    /// Attempts before a notification is given up as `failed`.
    pub max_attempts: i32,
    /// Per attempt: connecting, sending and the receiver's answer.
    pub timeout: Duration,
}

impl Settings {
    /// Wait before the next attempt after `attempts` failed ones.
    pub fn backoff(&self, attempts: i32) -> Duration {
        let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(0);
        self.retry_base
            .saturating_mul(2u32.saturating_pow(doublings))
            .min(Duration::from_secs(3600))
    }
}

pub fn secret_aad(provider_id: Uuid) -> Aad {
    Aad::new("webhook_secret").with("provider", ProviderId::from_uuid(provider_id).to_string())
}

/// The notification's id as receivers see it (`webhook-id`).
pub fn webhook_id(event_id: Uuid) -> String {
    format!("evt_{}", event_id.simple())
}

fn factor_name(factor: i32) -> String {
    let factor = Factor::try_from(factor).unwrap_or_default();
    factor
        .as_str_name()
        .strip_prefix("FACTOR_")
        .unwrap_or("UNSPECIFIED")
        .to_lowercase()
}

/// The JSON body: Standard Webhooks' `type` / `timestamp` / `data` shape.
pub fn body(event_id: Uuid, provider_id: &str, report: &FraudReported, at: DateTime<Utc>) -> String {
    let occurred_at = vigil_proto::from_timestamp(report.occurred_at.as_ref())
        .map(DateTime::<Utc>::from)
        .unwrap_or(at);
    serde_json::json!({
        "type": "fraud.reported",
        "timestamp": occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": {
            "id": webhook_id(event_id),
            "provider_id": provider_id,
            "challenge_id": report.challenge_id,
            "user_id": report.user_id,
            "factor": factor_name(report.factor),
            "user_blocked": report.user_blocked,
            "occurred_at": occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    })
    .to_string()
}

/// Records a notification for each fraud event of a provider with a webhook.
pub struct FraudReportedHandler {
    pub gateway: Arc<Gateway>,
    pub wake: Arc<Notify>,
}

impl Handler for FraudReportedHandler {
    async fn handle(&self, tx: &mut PgConnection, event: Received<'_>) -> Result<(), HandlerError> {
        let report: FraudReported = envelope::unwrap(event.envelope)?;
        let event_id = envelope::envelope_id(event.envelope)?;
        let provider = ProviderId::parse(&event.envelope.provider_id)
            .map_err(|e| HandlerError::Reject(format!("provider_id: {e}")))?;
        let Some(row) = store::get_provider(tx, provider.as_uuid()).await? else {
            tracing::warn!(%provider, "fraud report for an unknown provider; no notification");
            return Ok(());
        };
        if row.fraud_webhook_url.is_empty() {
            tracing::debug!(%provider, "no fraud webhook configured");
            return Ok(());
        }
        let now = self.gateway.clock.now();
        let published = vigil_proto::from_timestamp(event.envelope.time.as_ref()).map(DateTime::<Utc>::from);
        if published.is_some_and(|at| now - at > MAX_EVENT_AGE) {
            tracing::warn!(%provider, challenge_id = %report.challenge_id, "fraud event older than a day; not notified");
            return Ok(());
        }
        let body = body(event_id, &provider.to_string(), &report, now);
        sqlx::query(
            "INSERT INTO fraud_notifications (event_id, provider_id, challenge_id, body, status, created_at, next_attempt_at)
             VALUES ($1, $2, $3, $4, 'pending', $5, $5) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(event_id)
        .bind(row.id)
        .bind(&report.challenge_id)
        .bind(&body)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    fn committed(&self) {
        // The sender also polls; this wakes it for what was just committed.
        self.wake.notify_one();
    }
}

/// Sends due notifications until `shutdown`.
pub async fn run(gateway: Arc<Gateway>, settings: Settings, wake: Arc<Notify>, shutdown: CancellationToken) {
    let http = match reqwest::Client::builder()
        .timeout(settings.timeout)
        // A webhook that redirects is a misconfiguration, not somewhere else to post.
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(http) => http,
        Err(error) => {
            tracing::error!(%error, "cannot build the webhook HTTP client; fraud notifications are off");
            return;
        }
    };
    loop {
        loop {
            match send_next(&gateway, &settings, &http).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(error) => {
                    tracing::warn!(%error, "sending a fraud notification failed");
                    break;
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

#[derive(sqlx::FromRow)]
struct Due {
    event_id: Uuid,
    provider_id: Uuid,
    body: String,
    attempts: i32,
    fraud_webhook_url: String,
    webhook_secret_ciphertext: Option<Vec<u8>>,
}

/// One attempt of the most overdue notification; `false` when none is due.
/// The row stays locked during the POST so no other replica sends it too.
async fn send_next(gateway: &Gateway, settings: &Settings, http: &reqwest::Client) -> Result<bool, GatewayError> {
    let now = gateway.clock.now();
    let mut tx = gateway.pool.begin().await?;
    let due: Option<Due> = sqlx::query_as(
        "SELECT n.event_id, n.provider_id, n.body, n.attempts, p.fraud_webhook_url, p.webhook_secret_ciphertext
         FROM fraud_notifications n JOIN providers p ON p.id = n.provider_id
         WHERE n.status = 'pending' AND n.next_attempt_at <= $1
         ORDER BY n.next_attempt_at LIMIT 1 FOR UPDATE OF n SKIP LOCKED",
    )
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(due) = due else {
        return Ok(false);
    };
    let outcome = attempt(gateway, http, &due, now).await;
    let attempts = due.attempts + 1;
    let id = webhook_id(due.event_id);
    match outcome {
        Ok(()) => {
            sqlx::query(
                "UPDATE fraud_notifications SET status = 'delivered', attempts = $2, delivered_at = $3 WHERE event_id = $1",
            )
            .bind(due.event_id)
            .bind(attempts)
            .bind(gateway.clock.now())
            .execute(&mut *tx)
            .await?;
            tracing::info!(webhook_id = %id, attempts, "fraud notification delivered");
        }
        Err(error) => {
            let gave_up = attempts >= settings.max_attempts;
            let next = now + chrono::Duration::from_std(settings.backoff(attempts)).unwrap_or_default();
            sqlx::query(
                "UPDATE fraud_notifications SET status = $2, attempts = $3, last_error = $4, next_attempt_at = $5
                 WHERE event_id = $1",
            )
            .bind(due.event_id)
            .bind(if gave_up { "failed" } else { "pending" })
            .bind(attempts)
            .bind(&error)
            .bind(next)
            .execute(&mut *tx)
            .await?;
            tracing::warn!(webhook_id = %id, attempts, gave_up, %error, "fraud notification not accepted");
        }
    }
    tx.commit().await?;
    Ok(true)
}

/// POSTs the signed notification; `Err` says why it did not land.
async fn attempt(gateway: &Gateway, http: &reqwest::Client, due: &Due, now: DateTime<Utc>) -> Result<(), String> {
    if due.fraud_webhook_url.is_empty() {
        return Err("the provider has no fraud webhook URL any more".into());
    }
    let Some(ciphertext) = due.webhook_secret_ciphertext.as_deref() else {
        return Err("no webhook signing secret: create one with RotateWebhookSecret".into());
    };
    let secret = gateway
        .keyring
        .decrypt(ciphertext, &secret_aad(due.provider_id))
        .map_err(|e| format!("the webhook secret cannot be decrypted: {e}"))?;
    let id = webhook_id(due.event_id);
    let timestamp = now.timestamp();
    let signature =
        sign::signature(secret.expose_secret(), &id, timestamp, &due.body).ok_or("the webhook secret is malformed")?;
    let response = http
        .post(&due.fraud_webhook_url)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(due.body.clone())
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                "timed out".to_owned()
            } else {
                format!("request failed: {e}")
            }
        })?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", status.as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        let settings = Settings {
            retry_base: Duration::from_secs(2),
            max_attempts: 8,
            timeout: Duration::from_secs(10),
        };
        assert_eq!(settings.backoff(1), Duration::from_secs(2));
        assert_eq!(settings.backoff(2), Duration::from_secs(4));
        assert_eq!(settings.backoff(4), Duration::from_secs(16));
        assert_eq!(settings.backoff(40), Duration::from_secs(3600));
    }

    #[test]
    fn the_body_carries_ids_not_secrets() {
        let id = Uuid::now_v7();
        let report = FraudReported {
            challenge_id: "chl_1".into(),
            user_id: "usr_1".into(),
            factor: Factor::Voice as i32,
            user_blocked: true,
            occurred_at: None,
        };
        let body: serde_json::Value = serde_json::from_str(&body(id, "prv_1", &report, Utc::now())).unwrap_or_default();
        assert_eq!(body["type"], "fraud.reported");
        assert_eq!(body["data"]["id"], webhook_id(id));
        assert_eq!(body["data"]["factor"], "voice");
        assert_eq!(body["data"]["user_blocked"], true);
    }
}
