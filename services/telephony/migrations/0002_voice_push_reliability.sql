-- Voice, push and reliable sending.

-- What a call or a push needs after the request is gone. SMS bodies hold
-- one-time codes and are never stored; `speak` is the voice sentence only.
ALTER TABLE deliveries
    ADD COLUMN voice_mode        TEXT CHECK (voice_mode IN ('press_pound', 'pin')),
    ADD COLUMN speak             TEXT,
    ADD COLUMN device_id         TEXT,
    ADD COLUMN device_public_key BYTEA,
    ADD COLUMN expires_at        TIMESTAMPTZ,
    -- The user's answer (voice gather, push), once: approve | deny | fraud | pin.
    ADD COLUMN answered_at       TIMESTAMPTZ,
    ADD COLUMN answer_kind       TEXT,
    -- SHA-256 of the exact push answer body, so the same answer repeated is
    -- recognised (200) and a different one refused (409).
    ADD COLUMN answer_digest     BYTEA,
    -- Set with the TelephonyUsage event, in the same transaction: exactly once.
    ADD COLUMN usage_reported_at TIMESTAMPTZ;

-- Every try at a carrier. A row is committed as `pending` before the carrier
-- is called and settled right after it answers, so a redelivered request
-- sees that the carrier already accepted and does not send again.
CREATE TABLE delivery_attempts (
    delivery_id UUID NOT NULL REFERENCES deliveries (id),
    attempt     INT NOT NULL,
    carrier     TEXT NOT NULL,
    -- unknown: the service stopped between calling the carrier and hearing
    -- back; the next try sends again (the documented at-least-once window).
    outcome     TEXT NOT NULL CHECK (outcome IN ('pending', 'accepted', 'failed', 'unknown')),
    carrier_ref TEXT,
    error       TEXT,
    started_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at TIMESTAMPTZ,
    PRIMARY KEY (delivery_id, attempt)
);

-- Every callback a carrier, a phone or a device made about a delivery.
-- Never digits, codes or bodies: only what kind of callback and its status.
CREATE TABLE carrier_callbacks (
    id          UUID PRIMARY KEY,
    delivery_id UUID REFERENCES deliveries (id),
    carrier     TEXT NOT NULL,
    -- message_status | call_answered | call_gather | call_status | push_answer
    kind        TEXT NOT NULL,
    carrier_ref TEXT,
    status      TEXT NOT NULL,
    detail      TEXT,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX carrier_callbacks_delivery ON carrier_callbacks (delivery_id, received_at);
