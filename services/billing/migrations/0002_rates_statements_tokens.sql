-- The ledger now holds every usage event billing consumes: authentications
-- (billable or not), telephony cost lines and user status events. Still one
-- row per envelope id. `statement_period` is the first day of the month whose
-- statement accounted for the row: NULL until a statement closes over it, so a
-- row still NULL when an earlier month is already closed arrived late and
-- becomes an adjustment on the next statement.
ALTER TABLE usage_ledger DROP CONSTRAINT usage_ledger_kind_check;
ALTER TABLE usage_ledger
    ADD CONSTRAINT usage_ledger_kind_check CHECK (kind IN ('authentication', 'telephony', 'user')),
    ALTER COLUMN user_id DROP NOT NULL,
    ALTER COLUMN challenge_id DROP NOT NULL,
    -- authentication: challenge | trusted_network | bypass | remembered
    ADD COLUMN auth_kind TEXT,
    ADD COLUMN billable BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN factor TEXT,
    -- telephony
    ADD COLUMN delivery_id TEXT,
    ADD COLUMN channel TEXT,
    ADD COLUMN destination_country TEXT,
    ADD COLUMN carrier TEXT,
    ADD COLUMN sms_segments BIGINT NOT NULL DEFAULT 0 CHECK (sms_segments >= 0),
    ADD COLUMN voice_seconds BIGINT NOT NULL DEFAULT 0 CHECK (voice_seconds >= 0),
    -- Each call is billed per started minute.
    ADD COLUMN voice_minutes BIGINT NOT NULL DEFAULT 0 CHECK (voice_minutes >= 0),
    -- user: created | status_changed | deleted, and the status from then on
    -- (enabled | disabled | blocked_for_fraud | deleted) and just before.
    ADD COLUMN user_event TEXT,
    ADD COLUMN user_status TEXT,
    ADD COLUMN previous_status TEXT,
    ADD COLUMN statement_period DATE;

-- Rows written before this migration were all challenges issued.
UPDATE usage_ledger SET auth_kind = 'challenge', billable = TRUE WHERE kind = 'authentication';

CREATE INDEX usage_ledger_provider_kind_occurred ON usage_ledger (provider_id, kind, occurred_at);
CREATE INDEX usage_ledger_unaccounted ON usage_ledger (provider_id, occurred_at) WHERE statement_period IS NULL;

-- A provider's prices: exact decimals, one currency for the provider's lifetime.
CREATE TABLE rates (
    provider_id            TEXT PRIMARY KEY,
    currency               TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    per_authentication     NUMERIC NOT NULL CHECK (per_authentication >= 0),
    per_enabled_user_month NUMERIC NOT NULL CHECK (per_enabled_user_month >= 0),
    per_sms_segment        NUMERIC NOT NULL CHECK (per_sms_segment >= 0),
    per_voice_minute       NUMERIC NOT NULL CHECK (per_voice_minute >= 0),
    updated_at             TIMESTAMPTZ NOT NULL
);

-- Monthly statements. Written once when the period closes, never changed.
CREATE TABLE statements (
    provider_id TEXT NOT NULL,
    period      DATE NOT NULL CHECK (extract(day FROM period) = 1),
    usage_model TEXT NOT NULL,
    currency    TEXT NOT NULL,
    total       NUMERIC NOT NULL,
    closed_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (provider_id, period)
);

CREATE TABLE statement_lines (
    provider_id TEXT NOT NULL,
    period      DATE NOT NULL,
    line_no     INT NOT NULL,
    -- authentications | enabled_users | sms_segments | voice_minutes
    item        TEXT NOT NULL,
    -- The month the quantity belongs to: `period` itself, or an earlier one
    -- for an adjustment (late events).
    for_period  DATE NOT NULL,
    quantity    BIGINT NOT NULL,
    unit_price  NUMERIC NOT NULL,
    amount      NUMERIC NOT NULL,
    PRIMARY KEY (provider_id, period, line_no),
    FOREIGN KEY (provider_id, period) REFERENCES statements (provider_id, period)
);
CREATE INDEX statement_lines_for_period ON statement_lines (provider_id, for_period, item);

CREATE FUNCTION billing_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'closed statements are immutable (% on %)', TG_OP, TG_TABLE_NAME;
END;
$$;
CREATE TRIGGER statements_immutable BEFORE UPDATE OR DELETE ON statements
    FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
CREATE TRIGGER statement_lines_immutable BEFORE UPDATE OR DELETE ON statement_lines
    FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();

-- Read-only API tokens, one provider each. Only the SHA-256 of the secret is kept.
CREATE TABLE api_tokens (
    token_id      UUID PRIMARY KEY,
    provider_id   TEXT NOT NULL,
    secret_sha256 BYTEA NOT NULL,
    label         TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    revoked_at    TIMESTAMPTZ
);
CREATE INDEX api_tokens_provider ON api_tokens (provider_id);
