-- Message templates per provider (SMS code text, voice greeting); '' means
-- Vigil's default. `revision` grows with every update and travels in
-- vigil.provider.updated, so telephony keeps the newest settings.
ALTER TABLE providers
    ADD COLUMN sms_template   TEXT NOT NULL DEFAULT '',
    ADD COLUMN voice_template TEXT NOT NULL DEFAULT '',
    ADD COLUMN revision       BIGINT NOT NULL DEFAULT 0;
