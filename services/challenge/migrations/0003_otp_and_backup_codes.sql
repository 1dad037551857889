-- OATH tokens (issue 4): the seed is AES-256-GCM ciphertext under the
-- service's key-encryption keys, bound to its provider and user.
ALTER TABLE factors
    ADD COLUMN secret_ciphertext BYTEA,
    -- HOTP: the next expected counter. TOTP: the last accepted time step,
    -- so a code is never accepted twice.
    ADD COLUMN counter   BIGINT,
    ADD COLUMN last_step BIGINT;

-- Ten single-use backup codes per user, stored as keyed hashes.
CREATE TABLE backup_codes (
    user_id   UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash BYTEA NOT NULL,
    used_at   TIMESTAMPTZ,
    PRIMARY KEY (user_id, code_hash)
);
