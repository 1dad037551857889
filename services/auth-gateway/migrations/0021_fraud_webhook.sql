-- Signed fraud notifications to each provider's webhook (issue 4).
-- The signing secret is kept encrypted (AES-256-GCM under the gateway keyring,
-- AAD bound to the provider): signing needs the secret itself.
ALTER TABLE providers ADD COLUMN webhook_secret_ciphertext BYTEA;

-- One row per fraud event (its envelope id): a redelivered event finds its
-- row and sends nothing more. Attempts, the last error and the next try are
-- kept here, so retries survive restarts and any replica may send them.
CREATE TABLE fraud_notifications (
    event_id        UUID PRIMARY KEY,
    provider_id     UUID NOT NULL REFERENCES providers (id) ON DELETE CASCADE,
    challenge_id    TEXT NOT NULL,
    -- The JSON body, fixed at the first attempt so every retry signs the same bytes.
    body            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INT NOT NULL DEFAULT 0,
    last_error      TEXT NOT NULL DEFAULT '',
    created_at      TIMESTAMPTZ NOT NULL,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    delivered_at    TIMESTAMPTZ
);
CREATE INDEX fraud_notifications_due ON fraud_notifications (next_attempt_at) WHERE status = 'pending';
CREATE INDEX fraud_notifications_by_provider ON fraud_notifications (provider_id, created_at DESC);
