CREATE TABLE users (
    id           UUID PRIMARY KEY,
    provider_id  TEXT NOT NULL,
    -- Lower-cased: Windows and RADIUS logins are case-insensitive.
    username     TEXT NOT NULL,
    display_name TEXT NOT NULL DEFAULT '',
    status       TEXT NOT NULL CHECK (status IN ('enabled', 'disabled', 'blocked_for_fraud')),
    created_at   TIMESTAMPTZ NOT NULL,
    UNIQUE (provider_id, username)
);

CREATE TABLE factors (
    id          UUID PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('sms', 'voice', 'push', 'totp', 'hotp', 'backup_code')),
    -- E.164 number for sms and voice.
    destination TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (user_id, kind)
);

CREATE TABLE challenges (
    id           UUID PRIMARY KEY,
    provider_id  TEXT NOT NULL,
    user_id      UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    agent_id     TEXT NOT NULL,
    factor       TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'approved', 'denied', 'expired', 'fraud', 'failed')),
    reason       TEXT NOT NULL,
    -- HMAC-SHA256 of the one-time code under the service's code key: the
    -- code itself is never stored.
    code_hash    BYTEA,
    attempts     INT NOT NULL DEFAULT 0,
    max_attempts INT NOT NULL,
    client_ip    TEXT NOT NULL DEFAULT '',
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    completed_at TIMESTAMPTZ
);

-- The expiry sweep only looks at open challenges.
CREATE INDEX challenges_open_by_expiry ON challenges (expires_at) WHERE state IN ('pending', 'delivered');
