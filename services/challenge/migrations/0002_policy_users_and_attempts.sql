-- Contact details, PIN and default method of a user (issue 3), one-time
-- bypass, and lockout bookkeeping.
ALTER TABLE users
    ADD COLUMN phone            TEXT NOT NULL DEFAULT '',
    ADD COLUMN email            TEXT NOT NULL DEFAULT '',
    -- argon2id PHC string of the PIN; NULL when the user has none.
    ADD COLUMN pin_hash         TEXT,
    ADD COLUMN default_factor   TEXT NOT NULL DEFAULT '',
    ADD COLUMN bypass_until     TIMESTAMPTZ,
    ADD COLUMN bypass_remaining INT NOT NULL DEFAULT 0,
    ADD COLUMN failed_attempts  INT NOT NULL DEFAULT 0,
    ADD COLUMN failure_window_start TIMESTAMPTZ,
    ADD COLUMN locked_until     TIMESTAMPTZ,
    ADD COLUMN updated_at       TIMESTAMPTZ;

UPDATE users u SET phone = f.destination
FROM factors f WHERE f.user_id = u.id AND f.kind = 'sms';

-- Search and paging of a provider's users, ordered by username.
CREATE INDEX users_provider_username ON users (provider_id, username);

-- Every decision, with its reason: "why was I (not) challenged?" has an answer.
CREATE TABLE auth_attempts (
    id           UUID PRIMARY KEY,
    provider_id  TEXT NOT NULL,
    user_id      UUID,
    username     TEXT NOT NULL,
    operation    TEXT NOT NULL CHECK (operation IN ('preauth', 'authenticate', 'verify')),
    agent_id     TEXT NOT NULL DEFAULT '',
    client_ip    TEXT NOT NULL DEFAULT '',
    decision     TEXT NOT NULL,
    reason       TEXT NOT NULL,
    challenge_id UUID,
    at           TIMESTAMPTZ NOT NULL
);
CREATE INDEX auth_attempts_by_user ON auth_attempts (provider_id, username, at DESC);

-- The last approval per agent + user + client address, for "remember me".
CREATE TABLE remembered_approvals (
    provider_id TEXT NOT NULL,
    agent_id    TEXT NOT NULL,
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_ip   TEXT NOT NULL,
    approved_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (provider_id, agent_id, user_id, client_ip)
);

-- Admin actions on users (status changes, unblock, bypass, delete).
CREATE TABLE user_audit (
    id          UUID PRIMARY KEY,
    provider_id TEXT NOT NULL,
    user_id     UUID NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT '',
    at          TIMESTAMPTZ NOT NULL
);

ALTER TABLE challenges ADD COLUMN remember_minutes INT NOT NULL DEFAULT 0;
