-- Fraud settings and trusted networks per provider (issue 3).
ALTER TABLE providers
    ADD COLUMN block_user_on_fraud BOOLEAN NOT NULL DEFAULT TRUE,
    ADD COLUMN fraud_webhook_url   TEXT NOT NULL DEFAULT '',
    -- CIDR networks whose logins skip the second factor.
    ADD COLUMN trusted_networks    TEXT[] NOT NULL DEFAULT '{}';

-- Per-agent policy; the agent key is kept encrypted (AES-256-GCM) because
-- request signatures are checked with it. Agents made before signing keep
-- only their hash.
ALTER TABLE agents
    ADD COLUMN require_user_match BOOLEAN NOT NULL DEFAULT TRUE,
    ADD COLUMN remember_minutes   INT NOT NULL DEFAULT 0,
    ADD COLUMN key_ciphertext     BYTEA;

-- One-time activation credentials: argon2 hash of the password only.
CREATE TABLE activation_credentials (
    login         TEXT PRIMARY KEY,
    provider_id   UUID NOT NULL REFERENCES providers (id) ON DELETE CASCADE,
    password_hash TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    used_at       TIMESTAMPTZ,
    -- Set when newer credentials replaced these.
    revoked_at    TIMESTAMPTZ,
    agent_id      UUID
);
CREATE INDEX activation_by_provider ON activation_credentials (provider_id);

-- Per-provider admin tokens: a keyed hash only (HMAC-SHA256 with the pepper).
CREATE TABLE admin_tokens (
    id          UUID PRIMARY KEY,
    provider_id UUID NOT NULL REFERENCES providers (id) ON DELETE CASCADE,
    token_hash  BYTEA NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at  TIMESTAMPTZ NOT NULL
);

-- Nonces of signed agent requests within the clock-skew window, so a
-- captured request cannot be replayed. UNLOGGED: they only matter for
-- minutes, and a crash that loses them is bounded by the skew window.
CREATE UNLOGGED TABLE agent_nonces (
    agent_id UUID NOT NULL,
    nonce    TEXT NOT NULL,
    seen_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (agent_id, nonce)
);
CREATE INDEX agent_nonces_by_time ON agent_nonces (seen_at);

-- Registration and admin security events.
CREATE TABLE security_audit (
    id          UUID PRIMARY KEY,
    provider_id UUID,
    event       TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT '',
    source      TEXT NOT NULL DEFAULT '',
    at          TIMESTAMPTZ NOT NULL
);
