-- Each provider's name and message templates, learnt from
-- vigil.provider.created / vigil.provider.updated (the gateway owns
-- providers). '' is Vigil's default text. A lower revision never overwrites
-- a higher one, so a late event changes nothing.
CREATE TABLE provider_templates (
    provider_id    TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    sms_template   TEXT NOT NULL DEFAULT '',
    voice_template TEXT NOT NULL DEFAULT '',
    revision       BIGINT NOT NULL
);
