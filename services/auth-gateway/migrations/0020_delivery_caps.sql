-- Toll-fraud caps per provider: SMS and voice calls per destination prefix
-- (the first cap_prefix_digits digits of the E.164 number) per hour; 0 is no
-- cap. The defaults match store::DeliveryCapsRow::DEFAULT.
ALTER TABLE providers
    ADD COLUMN sms_cap_per_hour   INT NOT NULL DEFAULT 100 CHECK (sms_cap_per_hour >= 0),
    ADD COLUMN voice_cap_per_hour INT NOT NULL DEFAULT 50 CHECK (voice_cap_per_hour >= 0),
    ADD COLUMN cap_prefix_digits  INT NOT NULL DEFAULT 4 CHECK (cap_prefix_digits BETWEEN 1 AND 15);
