//! The HTTP surface carriers and devices call: message status callbacks,
//! inbound SMS, the voice call flow and push answers. Carrier requests must
//! carry a valid `X-Twilio-Signature` over the public URL they were sent to,
//! push answers a valid device signature, or they change nothing.

mod form;
mod inbound;
mod status;
mod voice;

use std::sync::Arc;

use axum::{Router, extract::DefaultBodyLimit, routing::post};
use secrecy::SecretString;
use sqlx::PgPool;
use vigil_bus::Outbox;
use vigil_core::Clock;

use crate::{
    config::{Config, INBOUND_SMS_PATH, PUSH_ANSWER_PATH, PUSH_ENROLL_PATH, STATUS_CALLBACK_PATH, VOICE_PATH},
    push,
    sms::Keywords,
};

/// Carrier forms are a few hundred bytes; refuse anything far larger.
const MAX_BODY: usize = 64 * 1024;

/// What the webhook handlers share.
pub struct Webhooks {
    pub pool: PgPool,
    pub outbox: Outbox,
    /// Each carrier's name and webhook signing token.
    pub carriers: Vec<(String, SecretString)>,
    /// The URLs exactly as the carrier calls (and signs) them.
    pub status_url: String,
    pub inbound_url: String,
    /// `public_base_url` without a trailing slash.
    pub public_base: String,
    pub clock: Arc<dyn Clock>,
    pub push_max_skew_seconds: u32,
    pub gather_timeout_seconds: u32,
    pub keywords: Keywords,
    /// Device enrolments are forwarded to the challenge service over NATS.
    pub nats: async_nats::Client,
    pub rpc_timeout: std::time::Duration,
}

impl Webhooks {
    pub fn new(config: &Config, pool: PgPool, outbox: Outbox, clock: Arc<dyn Clock>, nats: async_nats::Client) -> Self {
        Self {
            pool,
            outbox,
            carriers: config
                .carrier_list()
                .into_iter()
                .map(|c| (c.name, c.auth_token))
                .collect(),
            status_url: config.public_url(STATUS_CALLBACK_PATH),
            inbound_url: config.public_url(INBOUND_SMS_PATH),
            public_base: config.public_base_url.trim_end_matches('/').to_owned(),
            clock,
            push_max_skew_seconds: config.push_answer_max_skew_seconds,
            gather_timeout_seconds: config.gather_timeout_seconds,
            keywords: Keywords::new(&config.sms_keywords),
            nats,
            rpc_timeout: std::time::Duration::from_millis(config.rpc_timeout_ms),
        }
    }

    /// The signing token of carrier `name`, if it is still configured.
    pub fn token_of(&self, name: &str) -> Option<&SecretString> {
        self.carriers.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

pub fn router(webhooks: Arc<Webhooks>) -> Router {
    Router::new()
        .route(STATUS_CALLBACK_PATH, post(status::handle))
        .route(INBOUND_SMS_PATH, post(inbound::handle))
        .route(&format!("{VOICE_PATH}/{{delivery_id}}"), post(voice::answered))
        .route(&format!("{VOICE_PATH}/{{delivery_id}}/gather"), post(voice::gather))
        .route(&format!("{VOICE_PATH}/{{delivery_id}}/status"), post(voice::status))
        .route(PUSH_ANSWER_PATH, post(push::answer::handle))
        .route(PUSH_ENROLL_PATH, post(push::enroll::handle))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(webhooks)
}
