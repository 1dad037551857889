//! The carrier's webhooks: message status callbacks and inbound SMS. Every
//! request must carry a valid `X-Twilio-Signature` over the public URL it
//! was sent to, or it changes nothing.

mod form;
mod inbound;
mod status;

use std::sync::Arc;

use axum::{Router, extract::DefaultBodyLimit, routing::post};
use secrecy::SecretString;
use sqlx::PgPool;
use vigil_bus::Outbox;

use crate::config::{Config, INBOUND_SMS_PATH, STATUS_CALLBACK_PATH};

/// Carrier forms are a few hundred bytes; refuse anything far larger.
const MAX_BODY: usize = 64 * 1024;

/// What the webhook handlers share.
pub struct Webhooks {
    pub pool: PgPool,
    pub outbox: Outbox,
    pub auth_token: SecretString,
    /// The URLs exactly as the carrier calls (and signs) them.
    pub status_url: String,
    pub inbound_url: String,
}

impl Webhooks {
    pub fn new(config: &Config, pool: PgPool, outbox: Outbox) -> Self {
        Self {
            pool,
            outbox,
            auth_token: config.twilio.auth_token.clone(),
            status_url: config.public_url(STATUS_CALLBACK_PATH),
            inbound_url: config.public_url(INBOUND_SMS_PATH),
        }
    }
}

pub fn router(webhooks: Arc<Webhooks>) -> Router {
    Router::new()
        .route(STATUS_CALLBACK_PATH, post(status::handle))
        .route(INBOUND_SMS_PATH, post(inbound::handle))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(webhooks)
}
