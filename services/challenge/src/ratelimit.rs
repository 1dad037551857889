//! Rate limits per user and per agent on the login paths (Preauth,
//! Authenticate, VerifyPasscode): past a limit the answer is a deny with
//! reason `rate_limited` and the time to try again.
//!
//! Where the counters live: PostgreSQL, one row per key, updated by one
//! upsert for all the requests counted at one moment ([`Counter`]). The
//! challenge service runs several replicas, so the counters must
//! be shared; the database is already on every one of these paths (the
//! decision is recorded there), so a row costs one more statement and no new
//! moving part, and the upsert is atomic per key under any number of
//! replicas. A NATS KV bucket would need a compare-and-swap loop per request
//! (KV has no atomic increment) and a second store to keep highly available.
//!
//! The window slides: each row keeps the count of the current fixed window
//! and of the one before, and the estimate weighs the previous window by how
//! much of it still overlaps the last `window` (the "sliding window counter").
//! A plain fixed window would let twice the limit through across a boundary.
//! Requests refused for the limit count too, so a client that keeps
//! hammering stays limited; the retry time assumes it stops.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;
use vigil_proto::{rpc, v1::Reason};

use crate::{
    login,
    service::{Service, ServiceError},
};

/// At most `max` requests per `window`; `max == 0` turns the limit off.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub max: u32,
    pub window: chrono::Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub user: Limit,
    pub agent: Limit,
}

/// Who went over a limit, and from when one more request would be allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub scope: &'static str,
    pub retry_at: DateTime<Utc>,
}

impl Limited {
    pub fn message(&self, now: DateTime<Utc>) -> String {
        let seconds = (self.retry_at - now).num_seconds().max(1);
        let who = match self.scope {
            "agent" => "from this agent",
            _ => "for this user",
        };
        format!(
            "too many sign-in requests {who}; try again in {seconds} s (after {} UTC)",
            self.retry_at.format("%H:%M:%S")
        )
    }
}

/// `None` while `count` requests in the current window (this one included)
/// and `previous` in the one before stay within `limit` at `elapsed` into
/// the window; otherwise how long until one more request would be allowed,
/// if none came meanwhile.
pub fn over_limit(limit: Limit, count: i64, previous: i64, elapsed: chrono::Duration) -> Option<chrono::Duration> {
    let window = limit.window.num_milliseconds().max(1) as f64;
    let elapsed = (elapsed.num_milliseconds() as f64).clamp(0.0, window);
    let (count, previous, max) = (count as f64, previous as f64, f64::from(limit.max));
    if limit.max == 0 || previous * (window - elapsed) / window + count <= max {
        return None;
    }
    // One more request is allowed once the estimate is down to max - 1.
    let room = max - 1.0;
    let wait_ms = if count <= room && previous > 0.0 {
        // Later in this window, as the previous one slides out.
        window * (1.0 - (room - count) / previous) - elapsed
    } else {
        // In the next window, as this one slides out.
        (window - elapsed) + window * (1.0 - room / count)
    };
    // Whole seconds, rounded up: "try again in 0 s" helps nobody.
    let seconds = (wait_ms.max(0.0) / 1000.0).ceil().max(1.0);
    Some(chrono::Duration::seconds(seconds as i64))
}

/// Start of the fixed window `now` is in.
fn window_start(now: DateTime<Utc>, window: chrono::Duration) -> DateTime<Utc> {
    let size = window.num_milliseconds().max(1);
    let ms = now.timestamp_millis();
    DateTime::from_timestamp_millis(ms - ms.rem_euclid(size)).unwrap_or(now)
}

#[derive(sqlx::FromRow)]
struct Counted {
    key: String,
    window_start: DateTime<Utc>,
    count: i32,
    previous: i32,
}

/// One request's counters: each `(scope, key, limit)` is counted once.
#[derive(Debug, Clone)]
pub struct Hit {
    pub keys: Vec<(&'static str, String, Limit)>,
    pub now: DateTime<Utc>,
}

/// Counts the requests waiting at the moment in one upsert (see
/// `vigil_runtime::batch`). Every login of an agent bumps that agent's
/// counter: one upsert per batch also means the row is locked once per
/// batch instead of once per login.
pub type Counter = vigil_runtime::Batcher<Hit, Option<Limited>, sqlx::Error>;

/// `pool` must be the batches' own, and may defer its commits
/// (`vigil_runtime::connect_deferred_commit_batch_pool`): a login does not
/// wait for the disk to count, nor does the next batch wait for it on the
/// agent's row. A count is still on disk before the answer of any request
/// that writes anything durable after it (its challenge, its attempt, a
/// deny), as WAL is flushed in order. So a crash of PostgreSQL can forget
/// only the counts of its last moment (up to three times
/// `wal_writer_delay`) whose requests wrote nothing since: at most that
/// moment's tries, to whoever can crash the database.
pub fn counter(pool: sqlx::PgPool) -> Counter {
    vigil_runtime::Batcher::statements("rate_limit_windows", 128, pool, |conn, hits| Box::pin(hit(conn, hits)))
}

/// The keys `hit` counts against: a limit of 0 is off, and a request
/// without an agent has no agent key.
fn active(hit: &Hit) -> impl Iterator<Item = (&'static str, &String, Limit)> {
    hit.keys
        .iter()
        .filter(|(_, key, l)| l.max > 0 && !key.is_empty())
        .map(|(scope, key, limit)| (*scope, key, *limit))
}

/// Counts each request against each of its keys, in the requests' order (as
/// if one upsert ran per request), and returns for each the first limit it
/// exceeds.
pub async fn hit(conn: &mut PgConnection, hits: &[Hit]) -> Result<Vec<Option<Limited>>, sqlx::Error> {
    // Each key once, with how many requests count against it and the
    // latest window any of them is in.
    let mut counted: std::collections::BTreeMap<String, (DateTime<Utc>, i64, i32)> = Default::default();
    for hit in hits {
        for (_, key, limit) in active(hit) {
            let start = window_start(hit.now, limit.window);
            let entry = counted
                .entry(key.clone())
                .or_insert((start, limit.window.num_milliseconds().max(1), 0));
            entry.0 = entry.0.max(start);
            entry.2 += 1;
        }
    }
    if counted.is_empty() {
        return Ok(vec![None; hits.len()]);
    }
    // Keys in order (the map's), so that two batches never wait on each
    // other's rows in opposite orders. Old values on the right-hand side:
    // a row from the window just before becomes `previous`; an older one is
    // forgotten. A replica whose clock lags counts into the newer window
    // another replica already opened.
    let rows: Vec<Counted> = sqlx::query_as(
        "INSERT INTO rate_limit_windows AS r (key, window_start, window_ms, count, previous)
         SELECT u.*, 0 FROM UNNEST($1::text[], $2::timestamptz[], $3::bigint[], $4::int[]) AS u
         ON CONFLICT (key) DO UPDATE SET
             previous = CASE
                 WHEN r.window_start >= EXCLUDED.window_start THEN r.previous
                 WHEN r.window_ms = EXCLUDED.window_ms
                      AND r.window_start + EXCLUDED.window_ms * INTERVAL '1 millisecond' = EXCLUDED.window_start
                     THEN r.count
                 ELSE 0 END,
             count = CASE WHEN r.window_start >= EXCLUDED.window_start THEN r.count + EXCLUDED.count
                          ELSE EXCLUDED.count END,
             window_start = GREATEST(r.window_start, EXCLUDED.window_start),
             window_ms = EXCLUDED.window_ms
         RETURNING key, window_start, count, previous",
    )
    .bind(counted.keys().collect::<Vec<_>>())
    .bind(counted.values().map(|c| c.0).collect::<Vec<_>>())
    .bind(counted.values().map(|c| c.1).collect::<Vec<_>>())
    .bind(counted.values().map(|c| c.2).collect::<Vec<_>>())
    .fetch_all(conn)
    .await?;
    let rows: std::collections::HashMap<&str, &Counted> = rows.iter().map(|r| (r.key.as_str(), r)).collect();
    // The requests of a batch are counted in their order: the first of n
    // against one key sees the count before the batch plus one.
    let mut before: std::collections::HashMap<&str, i32> = Default::default();
    Ok(hits
        .iter()
        .map(|hit| {
            let mut limited = None;
            for (scope, key, limit) in active(hit) {
                let (Some(row), Some(batch)) = (rows.get(key.as_str()), counted.get(key)) else {
                    continue;
                };
                let seen = before.entry(key.as_str()).or_insert(0);
                *seen += 1;
                let count = row.count - batch.2 + *seen;
                let elapsed = hit.now - row.window_start;
                if limited.is_none()
                    && let Some(wait) = over_limit(limit, i64::from(count), i64::from(row.previous), elapsed)
                {
                    limited = Some(Limited {
                        scope,
                        retry_at: hit.now + wait,
                    });
                }
            }
            limited
        })
        .collect())
}

/// What is counted for one request.
pub(crate) struct Request<'a> {
    pub provider: &'a str,
    pub username: &'a str,
    pub user_id: Option<Uuid>,
    pub operation: &'a str,
    pub policy: Option<&'a rpc::PolicyContext>,
    pub challenge_id: Option<Uuid>,
}

impl<'a> Request<'a> {
    /// A login's first question (preauth, authenticate): the user is known
    /// by name only and no challenge exists yet.
    pub fn login(
        provider: &'a str,
        username: &'a str,
        operation: &'a str,
        policy: Option<&'a rpc::PolicyContext>,
    ) -> Self {
        Self {
            provider,
            username,
            user_id: None,
            operation,
            policy,
            challenge_id: None,
        }
    }
}

impl Service {
    /// Counts `request` against its user's and its agent's limits. Over
    /// either, the deny is recorded like every decision (on `conn`, or on a
    /// connection taken for it) and its message returned. A login counts
    /// before it takes a connection, so that the logins waiting for one are
    /// counted together. The counters commit on their own, in a statement
    /// shared with the other requests counted at that moment ([`Counter`],
    /// on connections of its own): a request that later fails still
    /// counted, and the agent's counter, which all its logins share, is
    /// never held locked for the length of a login's transaction.
    pub(crate) async fn rate_limited(
        &self,
        conn: Option<&mut PgConnection>,
        request: Request<'_>,
    ) -> Result<Option<String>, ServiceError> {
        let now = self.clock.now();
        let agent = request.policy.map_or("", |p| p.agent_id.as_str());
        let keys = vec![
            (
                "user",
                format!("user:{}:{}", request.provider, request.username),
                self.limits.user,
            ),
            (
                "agent",
                if agent.is_empty() {
                    String::new()
                } else {
                    format!("agent:{agent}")
                },
                self.limits.agent,
            ),
        ];
        let counted = self.counter.call(Hit { keys, now }).await?;
        let Some(limited) = counted else {
            return Ok(None);
        };
        let mut taken = None;
        let conn = match conn {
            Some(conn) => conn,
            None => &mut **taken.insert(vigil_runtime::acquire(&self.pool).await?),
        };
        login::record(
            conn,
            request.provider,
            request.username,
            request.user_id,
            request.operation,
            request.policy,
            (vigil_proto::v1::Decision::Deny, Reason::RateLimited),
            request.challenge_id,
            now,
        )
        .await?;
        tracing::warn!(
            scope = limited.scope,
            agent_id = agent,
            operation = request.operation,
            "rate limited"
        );
        Ok(Some(limited.message(now)))
    }

    /// [`Self::rate_limited`] for a passcode: the challenge's user, the agent
    /// asking. Limited, also the wrong codes the challenge still accepts (a
    /// refused request is not one).
    pub(crate) async fn verify_rate_limited(
        &self,
        conn: &mut PgConnection,
        req: &rpc::VerifyRequest,
        row: &crate::store::ChallengeRow,
        username: &str,
    ) -> Result<Option<(String, i32)>, ServiceError> {
        let context = rpc::PolicyContext {
            agent_id: req.agent_id.clone(),
            client_ip: row.client_ip.clone(),
            ..Default::default()
        };
        let Some(message) = self
            .rate_limited(
                Some(conn),
                Request {
                    provider: &row.provider_id,
                    username,
                    user_id: Some(row.user_id),
                    operation: "verify",
                    policy: Some(&context),
                    challenge_id: Some(row.id),
                },
            )
            .await?
        else {
            return Ok(None);
        };
        // The peeked row carries its attempts: no second read.
        Ok(Some((message, row.max_attempts - row.attempts)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(max: u32, secs: i64) -> Limit {
        Limit {
            max,
            window: chrono::Duration::seconds(secs),
        }
    }

    fn s(n: i64) -> chrono::Duration {
        chrono::Duration::seconds(n)
    }

    #[test]
    fn within_the_limit_nothing_is_refused() {
        assert_eq!(over_limit(limit(3, 60), 3, 0, s(10)), None);
        assert_eq!(over_limit(limit(0, 60), 1000, 1000, s(0)), None, "0 is off");
    }

    #[test]
    fn over_the_limit_the_wait_ends_when_one_more_fits() {
        // 4 in this window, none before: at 80 s the next window is half
        // through, the estimate is 4 * 0.5 = 2, so a third request fits.
        assert_eq!(over_limit(limit(3, 60), 4, 0, s(10)), Some(s(80)));
        // Checked from the other side: 30 s into the next window, 4 before.
        assert_eq!(over_limit(limit(3, 60), 1, 4, s(30)), None);
        assert!(over_limit(limit(3, 60), 1, 4, s(29)).is_some());
    }

    #[test]
    fn the_previous_window_counts_while_it_overlaps() {
        // 6 before, 1 now, 30 s in: 6 * 0.5 + 1 = 4 > 3.
        let wait = over_limit(limit(3, 60), 1, 6, s(30));
        // Room for the next: 6 * (60 - t) / 60 <= 1  =>  t >= 50.
        assert_eq!(wait, Some(s(20)));
        assert_eq!(over_limit(limit(3, 60), 2, 6, s(50)), None);
        // Late in the window the previous one barely counts.
        assert_eq!(over_limit(limit(3, 60), 1, 6, s(55)), None);
    }

    #[test]
    fn a_limit_of_one_waits_for_the_window_to_slide_by() {
        assert_eq!(over_limit(limit(1, 60), 2, 0, s(0)), Some(s(120)));
    }

    #[test]
    fn windows_are_aligned() {
        let now = DateTime::from_timestamp(1_000_000_123, 0).unwrap_or_default();
        let start = window_start(now, s(60));
        assert_eq!(start.timestamp() % 60, 0);
        assert!(start <= now && now - start < s(60));
    }

    #[test]
    fn the_message_says_when() {
        let now = DateTime::from_timestamp(0, 0).unwrap_or_default();
        let limited = Limited {
            scope: "user",
            retry_at: now + s(42),
        };
        assert_eq!(
            limited.message(now),
            "too many sign-in requests for this user; try again in 42 s (after 00:00:42 UTC)"
        );
    }
}
