CREATE TABLE providers (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL,
    -- Fixed at creation: nothing updates this column.
    usage_model TEXT NOT NULL CHECK (usage_model IN ('per_enabled_user', 'per_authentication')),
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE agents (
    id          UUID PRIMARY KEY,
    provider_id UUID NOT NULL REFERENCES providers (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('rdp', 'radius', 'app')),
    -- SHA-256 of the agent key. The key is 256 random bits, so a fast hash
    -- is enough; only the hash is stored.
    key_hash    BYTEA NOT NULL,
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  TIMESTAMPTZ NOT NULL
);
