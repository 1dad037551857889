//! Forgets what is kept for a while only. Every login leaves rows behind (a
//! challenge, an audit record, a delivery and its carrier's reports); kept
//! for ever they grow a database by gigabytes a day at a busy site, and
//! every index on them with it. Each service names its tables, how long
//! each is kept, and the statement that deletes one batch of them.
//!
//! Batches are bounded, so that no statement holds many locks or runs long
//! beside the logins, and their rows are taken `FOR UPDATE SKIP LOCKED`, so
//! that replicas pruning at once share the work instead of queueing on it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use vigil_core::ids::v7_floor;

/// Rows deleted by one statement at most.
pub const BATCH: i64 = 1_000;

/// How often a service looks for rows past their time: often enough that
/// a pass is short (a minute of logins), since a long one takes CPU from
/// the logins for as long as it runs.
const PERIOD: Duration = Duration::from_secs(60);

/// How each batch's transaction begins. Every rule finds its rows by an
/// index (a key range, a timestamp); a plan PostgreSQL caches while a table
/// is new and nearly empty would read the whole table instead once it has
/// grown (seen for the nonces' batch, where a `ctid` list was matched by a
/// sequential scan). Without sequential scans, a plan stays a lookup; a
/// table with no other way (a small one) is still scanned.
pub const BATCH_TRANSACTION: &str = "BEGIN; SET LOCAL enable_seqscan = off";

/// What one table keeps, and for how long.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Names the rule in logs and in `vigil_retention_deleted_total{table}`.
    pub table: &'static str,
    /// How long a row is kept; `None` keeps rows for ever.
    pub keep: Option<Duration>,
    /// Deletes at most `$3` rows older than `$1` (a timestamptz) and returns
    /// them as its row count. `$2` is [`v7_floor`] of `$1`: every table
    /// pruned has UUIDv7 keys, so the rows to delete are a range of its
    /// primary key, found without an index of their own.
    pub delete: String,
}

impl Rule {
    /// A rule keeping rows `days` days (0: for ever), deleted by `delete`.
    pub fn days(table: &'static str, days: u32, delete: impl Into<String>) -> Self {
        Self {
            table,
            keep: (days > 0).then(|| Duration::from_secs(u64::from(days) * 24 * 60 * 60)),
            delete: delete.into(),
        }
    }

    /// The usual rule: rows of `table` (keyed `id`) whose `stamp` column is
    /// past the cutoff and that also match `also` (SQL: `""`, or
    /// `" AND ..."`). The batch is picked once, in an `ARRAY(...)`, as the
    /// outbox relay picks its own: as `id IN (subquery)` a plan could run
    /// the locking subquery again past the rows just deleted, and a batch
    /// would no longer be bounded.
    pub fn rows(table: &'static str, days: u32, stamp: &str, also: &str) -> Self {
        Self::days(
            table,
            days,
            format!(
                "DELETE FROM {table} WHERE id = ANY (ARRAY (
                   SELECT id FROM {table} WHERE id < $2 AND {stamp} < $1{also}
                   ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED))"
            ),
        )
    }
}

/// Deletes, in batches of at most `batch` rows, every row `rules` no longer
/// keep at `now`; returns how many rows each rule deleted. After each full
/// batch it rests as long as the batch took, so that a backlog (retention
/// turned on over a year of rows) is worked off at half speed beside the
/// logins rather than at their expense.
pub async fn prune(
    pool: &PgPool,
    rules: &[Rule],
    now: DateTime<Utc>,
    batch: i64,
) -> Result<Vec<(&'static str, u64)>, sqlx::Error> {
    let mut deleted = Vec::with_capacity(rules.len());
    for rule in rules {
        let Some(keep) = rule.keep else { continue };
        // A retention beyond the calendar's range keeps rows for ever.
        let Some(cutoff) = chrono::Duration::from_std(keep)
            .ok()
            .and_then(|keep| now.checked_sub_signed(keep))
        else {
            continue;
        };
        let mut total = 0;
        loop {
            let started = std::time::Instant::now();
            let mut tx = pool.begin_with(BATCH_TRANSACTION).await?;
            let gone = sqlx::query(&rule.delete)
                .bind(cutoff)
                .bind(v7_floor(cutoff))
                .bind(batch)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            metrics::counter!("vigil_retention_deleted_total", "table" => rule.table).increment(gone);
            total += gone;
            // A short batch was the last (and a batch of 0 would never end).
            if gone == 0 || gone < u64::try_from(batch).unwrap_or(0) {
                break;
            }
            tokio::time::sleep(started.elapsed()).await;
        }
        deleted.push((rule.table, total));
    }
    Ok(deleted)
}

/// Prunes every [`PERIOD`] until shutdown, which stops a pass at once: a
/// statement in flight then deletes its rows or not, and either way the
/// next start finds what is left. A failure is logged and tried again next
/// time, since nothing is lost by deleting later.
pub async fn run(pool: PgPool, rules: Vec<Rule>, shutdown: CancellationToken) {
    if rules.iter().all(|rule| rule.keep.is_none()) {
        tracing::info!("retention: every table is kept for ever");
        return;
    }
    loop {
        tokio::select! {
            () = tokio::time::sleep(PERIOD) => {}
            () = shutdown.cancelled() => return,
        }
        let started = std::time::Instant::now();
        let pruned = tokio::select! {
            pruned = prune(&pool, &rules, Utc::now(), BATCH) => pruned,
            () = shutdown.cancelled() => return,
        };
        match pruned {
            Ok(deleted) => {
                let pass_seconds = started.elapsed().as_secs_f64();
                for (table, rows) in deleted.into_iter().filter(|(_, rows)| *rows > 0) {
                    tracing::info!(table, rows, pass_seconds, "retention: deleted rows past their time");
                }
            }
            Err(error) => tracing::warn!(%error, "retention: pruning failed; trying again later"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[tokio::test]
    async fn a_retention_beyond_the_calendar_deletes_nothing_and_does_not_panic() {
        // Never connects: the rule is skipped before any statement.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nowhere.invalid/none")
            .unwrap();
        let rules = [Rule::days("t", u32::MAX, "DELETE FROM t")];
        assert_eq!(prune(&pool, &rules, Utc::now(), 10).await.unwrap(), vec![]);
    }

    #[test]
    fn zero_days_keeps_for_ever() {
        assert_eq!(Rule::days("t", 0, "").keep, None);
        assert_eq!(Rule::days("t", 2, "").keep, Some(Duration::from_secs(2 * 86_400)));
    }
}
