-- Providers as announced by vigil.provider.created. Only what billing needs:
-- the usage model is fixed at creation, so a row is written once, never updated.
CREATE TABLE providers (
    provider_id TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    usage_model TEXT NOT NULL CHECK (usage_model IN ('per_enabled_user', 'per_authentication')),
    created_at  TIMESTAMPTZ NOT NULL
);

-- One row per billable event. Keyed by the envelope id, so a redelivered event
-- is a no-op here even if the consumer's processed-id bookkeeping is lost.
-- No foreign key to providers: usage and provider events travel on different
-- streams, and usage may well arrive first.
CREATE TABLE usage_ledger (
    event_id     UUID PRIMARY KEY,
    provider_id  TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('authentication')),
    user_id      TEXT NOT NULL,
    challenge_id TEXT NOT NULL,
    occurred_at  TIMESTAMPTZ NOT NULL,
    recorded_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Statements and the usage API count one provider's events over a period.
CREATE INDEX usage_ledger_provider_occurred ON usage_ledger (provider_id, occurred_at);
