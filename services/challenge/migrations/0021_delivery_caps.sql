-- Toll-fraud caps: SMS and calls sent per provider, channel, destination
-- prefix and clock hour (see caps.rs). Rows older than a day are pruned.
CREATE TABLE delivery_caps (
    provider_id TEXT NOT NULL,
    channel     TEXT NOT NULL CHECK (channel IN ('sms', 'voice')),
    prefix      TEXT NOT NULL,
    hour        TIMESTAMPTZ NOT NULL,
    count       INT NOT NULL,
    PRIMARY KEY (provider_id, channel, prefix, hour)
);
CREATE INDEX delivery_caps_by_hour ON delivery_caps (hour);
