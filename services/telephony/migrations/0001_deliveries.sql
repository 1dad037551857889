-- One row per DeliveryRequested: what was asked, where it stands, and the
-- carrier's reference for it, so carrier callbacks can find it again.
CREATE TABLE deliveries (
    -- The uuid inside DeliveryRequested.delivery_id (`dlv_<uuid>`).
    id           UUID PRIMARY KEY,
    provider_id  TEXT NOT NULL,
    challenge_id TEXT NOT NULL,
    -- sms | voice | push
    channel      TEXT NOT NULL,
    -- Full E.164 number: needed to resend and to match replies. Never logged.
    destination  TEXT NOT NULL,
    -- queued -> sent -> delivered | undelivered | failed; only ever forward.
    state        TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'delivered', 'undelivered', 'failed')),
    carrier      TEXT NOT NULL,
    -- The carrier's id for the message (a Twilio Message SID), once accepted.
    carrier_ref  TEXT UNIQUE,
    attempts     INT NOT NULL DEFAULT 0,
    last_error   TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- An inbound reply is matched to the latest delivery sent to its sender.
CREATE INDEX deliveries_destination_recent ON deliveries (destination, created_at DESC);

-- Messages phones sent us (SMS replies), recorded once per carrier message.
CREATE TABLE inbound_messages (
    id          UUID PRIMARY KEY,
    carrier_ref TEXT NOT NULL UNIQUE,
    from_number TEXT NOT NULL,
    to_number   TEXT NOT NULL,
    body        TEXT NOT NULL,
    -- The delivery this message answers, if one was found.
    delivery_id UUID REFERENCES deliveries (id),
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
