-- The audit log says who did it (actor: "operator", "admin_token:<id>",
-- "activation:<login>") and to what (target: an agent, token or RADIUS
-- client id) in columns of their own, and is paged by time (issue 3).
-- `source` keeps the caller's network address.
ALTER TABLE security_audit
    ADD COLUMN actor  TEXT NOT NULL DEFAULT '',
    ADD COLUMN target TEXT NOT NULL DEFAULT '';
UPDATE security_audit SET actor = source, source = ''
WHERE source = 'operator' OR source LIKE 'admin_token:%';
CREATE INDEX security_audit_by_time ON security_audit (at DESC, id DESC);
CREATE INDEX security_audit_by_provider_time ON security_audit (provider_id, at DESC, id DESC);
