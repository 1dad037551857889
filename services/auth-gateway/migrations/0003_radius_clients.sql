-- RADIUS clients (NPS, RD Gateway, VPN concentrators), issue 6. Each is tied
-- to an agent of kind radius, whose policy (require_user_match,
-- remember_minutes, enabled) its logins follow.
CREATE TABLE radius_clients (
    id                UUID PRIMARY KEY,
    agent_id          UUID NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    provider_id       UUID NOT NULL REFERENCES providers (id) ON DELETE CASCADE,
    name              TEXT NOT NULL,
    -- Normalised CIDR text (10.1.0.0/16, 192.0.2.10/32). Unique across
    -- providers: RADIUS tells clients apart by source address only.
    source_cidr       TEXT NOT NULL UNIQUE,
    -- AES-256-GCM under the gateway keyring, AAD bound to the client id:
    -- the server needs the secret itself to verify and sign packets.
    secret_ciphertext BYTEA NOT NULL,
    mode              TEXT NOT NULL CHECK (mode IN ('second_factor', 'challenge', 'password_code')),
    -- Second-factor mode: how long to wait for the user's answer.
    timeout_secs      INT NOT NULL CHECK (timeout_secs BETWEEN 1 AND 600),
    created_at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX radius_clients_by_provider ON radius_clients (provider_id);
