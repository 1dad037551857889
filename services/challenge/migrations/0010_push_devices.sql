-- Push (issue 4): a user's enrolled device. One per user: enrolling a new
-- phone replaces the old one. The device's Ed25519 public key and its push
-- registration token are AES-256-GCM ciphertext in secret_ciphertext (bound
-- to provider, user and device); destination holds the device's name.
ALTER TABLE factors ADD COLUMN device_id UUID;

-- One-time enrolment codes: only a keyed hash is kept, so the code itself
-- cannot be read back; a used or expired code stays to say which it was.
CREATE TABLE push_enrollments (
    id          UUID PRIMARY KEY,
    provider_id TEXT NOT NULL,
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash   BYTEA NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ,
    device_id   UUID
);
CREATE INDEX push_enrollments_by_user ON push_enrollments (user_id);

-- Number matching: the number the login screen shows. Kept as it is (not
-- hashed): it is shown in the clear on the login screen anyway, one of 90,
-- and a retried start must be able to return it again. Telephony never sees it.
ALTER TABLE challenges ADD COLUMN match_number SMALLINT;
