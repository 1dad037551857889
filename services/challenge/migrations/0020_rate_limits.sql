-- Rate-limit counters per key ("user:<provider>:<username>", "agent:<id>"),
-- shared by every replica: one row per key, the count of the current fixed
-- window and of the one before (sliding-window estimate, see ratelimit.rs).
-- UNLOGGED: losing them in a crash only resets the limits for one window.
CREATE UNLOGGED TABLE rate_limit_windows (
    key          TEXT PRIMARY KEY,
    window_start TIMESTAMPTZ NOT NULL,
    window_ms    BIGINT NOT NULL,
    count        INT NOT NULL,
    previous     INT NOT NULL
);
CREATE INDEX rate_limit_windows_by_start ON rate_limit_windows (window_start);
