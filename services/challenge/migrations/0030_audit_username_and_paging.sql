-- The audit log is queried by provider, user and time (issue 3): keep the
-- username beside the user id (a deleted user's id no longer resolves), and
-- give both logs an index in the order they are paged.
ALTER TABLE user_audit ADD COLUMN username TEXT NOT NULL DEFAULT '';
UPDATE user_audit a SET username = u.username FROM users u WHERE u.id = a.user_id;
UPDATE user_audit SET username = detail WHERE action = 'deleted' AND username = '';
-- One naming scheme with the gateway's events: what changed, then how.
UPDATE user_audit SET action = 'user_' || action
WHERE action IN ('enabled', 'disabled', 'unblocked', 'blocked_for_fraud', 'deleted', 'unlocked');

CREATE INDEX user_audit_by_time ON user_audit (provider_id, at DESC, id DESC);
CREATE INDEX auth_attempts_by_time ON auth_attempts (provider_id, at DESC, id DESC);
