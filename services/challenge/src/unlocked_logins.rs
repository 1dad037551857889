//! Logins in one call with a right TOTP code, from users with nothing to
//! clear: most logins, decided without the user's lock (see
//! `Service::start`). Each reads its user and writes its challenge in
//! statements shared with the other such logins of the moment
//! (`vigil_runtime::batch`). A login used to pay for its own two
//! statements, a commit, and the pool's pings around them; now a batch pays
//! for them once (BENCHMARKS.md: 17–31% less CPU per login at saturation).

use std::{collections::HashSet, sync::Arc};

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use vigil_bus::outbox::OutboxBatch;
use vigil_runtime::{BatchError, Batcher};

use crate::store::{
    self, ATTEMPT_COLUMNS, ChallengeRow, FactorRow, INSERTED_CHALLENGE_COLUMNS, NewAttempt, UserDetail, UserFactorRow,
};

/// A user as a login names it.
#[derive(Debug, Clone)]
pub struct UserKey {
    pub provider_id: String,
    pub username: String,
}

pub type UserAndFactors = (UserDetail, Vec<FactorRow>);

/// A login answered with a right TOTP code, decided on its user as read
/// without a lock, to be written by [`write_claimed`]. Nothing of it is
/// written unless the user's row is still version `user_version`, the
/// code's `step` is later than the last one used and the challenge is new:
/// the statement claims the step, so of two logins with one code only one
/// is written (see `store::Unlocked`).
pub struct Claimed {
    /// The challenge, in the state its answer left it.
    pub row: ChallengeRow,
    pub now: DateTime<Utc>,
    pub attempt: Attempt,
    pub events: OutboxBatch,
    /// The login's trace context, for its events: the statement runs in
    /// the batch's task, not under the login's span.
    pub traceparent: Option<String>,
    pub user_version: i64,
    pub step: i64,
}

/// A [`NewAttempt`] that owns its fields, to wait in a batch.
pub struct Attempt {
    provider_id: String,
    user_id: Option<Uuid>,
    username: String,
    operation: String,
    agent_id: String,
    client_ip: String,
    decision: String,
    reason: String,
    challenge_id: Option<Uuid>,
    at: DateTime<Utc>,
}

impl From<&NewAttempt<'_>> for Attempt {
    fn from(a: &NewAttempt<'_>) -> Self {
        Self {
            provider_id: a.provider_id.to_owned(),
            user_id: a.user_id,
            username: a.username.to_owned(),
            operation: a.operation.to_owned(),
            agent_id: a.agent_id.to_owned(),
            client_ip: a.client_ip.to_owned(),
            decision: a.decision.to_owned(),
            reason: a.reason.to_owned(),
            challenge_id: a.challenge_id,
            at: a.at,
        }
    }
}

/// The two batched statements of a login decided without the lock.
pub struct UnlockedLogins {
    reads: Batcher<UserKey, Option<UserAndFactors>, sqlx::Error>,
    writes: Batcher<Arc<Claimed>, bool, sqlx::Error>,
}

impl UnlockedLogins {
    /// `pool` must be the batches' own (`vigil_runtime::connect_batch_pool`).
    pub fn spawn(pool: PgPool) -> Self {
        Self {
            reads: Batcher::statements("login_users", 128, pool.clone(), |conn, keys| {
                Box::pin(read_users(conn, keys))
            }),
            writes: Batcher::statements("login_challenges", 128, pool, |conn, claimed| {
                Box::pin(write_claimed(conn, claimed))
            }),
        }
    }

    /// The user and its factors, read without a lock; `None` for no such user.
    pub async fn read(&self, key: UserKey) -> Result<Option<UserAndFactors>, BatchError<sqlx::Error>> {
        self.reads.call(key).await
    }

    /// Writes `claimed` if its checks hold; returns whether it was written.
    pub async fn write(&self, claimed: Claimed) -> Result<bool, BatchError<sqlx::Error>> {
        self.writes.call(Arc::new(claimed)).await
    }
}

/// [`read_users`]'s statement. Each user is a lateral subquery fenced by
/// `OFFSET 0`, so it stays a lookup by key for each name: as a join, the
/// plan made while `users` was new and empty (the batches' connections
/// cache one, `force_generic_plan`) hashed the names and read every user,
/// until an analyze of the table made PostgreSQL plan again.
static READ_USERS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT q.n, {} FROM UNNEST($1::text[], $2::text[]) WITH ORDINALITY AS q (provider_id, username, n)
         CROSS JOIN LATERAL (
             SELECT *, xmin FROM users WHERE provider_id = q.provider_id AND username = q.username OFFSET 0) u
         LEFT JOIN factors f ON f.user_id = u.id
         ORDER BY q.n, f.created_at, f.id",
        store::user_and_factor_columns()
    )
});

/// Reads each key's user and factors, in the keys' order.
pub async fn read_users(conn: &mut PgConnection, keys: &[UserKey]) -> Result<Vec<Option<UserAndFactors>>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Numbered {
        n: i64,
        #[sqlx(flatten)]
        row: UserFactorRow,
    }
    let rows: Vec<Numbered> = sqlx::query_as(&READ_USERS)
        .bind(keys.iter().map(|k| k.provider_id.as_str()).collect::<Vec<_>>())
        .bind(keys.iter().map(|k| k.username.as_str()).collect::<Vec<_>>())
        .fetch_all(conn)
        .await?;
    let mut found: Vec<Vec<UserFactorRow>> = keys.iter().map(|_| Vec::new()).collect();
    for Numbered { n, row } in rows {
        // ORDINALITY counts from 1.
        if let Some(rows) = usize::try_from(n - 1).ok().and_then(|i| found.get_mut(i)) {
            rows.push(row);
        }
    }
    Ok(found.into_iter().map(store::user_with_factors).collect())
}

/// The statement of [`write_claimed`].
// Items are numbered (ORDINALITY) so that events follow their own item,
// not just its challenge id. Of a user's logins in a batch only the
// first may claim a step (an update changes a row once per statement,
// with whichever of the joined items it meets first); the others write
// nothing and go to the lock, which decides them one after the other.
// The claim also checks that the challenge is new: a retried request
// must not spend a step it then writes nothing for.
//
// That check ends in OFFSET 0, which keeps it a probe of the primary key
// for each item. Without it PostgreSQL may join the batch to the whole
// table instead (a hash anti join over a sequential scan): the plan it
// caches for this statement is made once, often when the table is new
// and its statistics say it is nearly empty, and such a plan then read
// every challenge on every batch, slower as the table grew (6 ms a
// batch at 13,000 challenges).
static WRITE_CLAIMED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    // The user's row is locked (FOR KEY SHARE, the lock the challenge's
    // foreign key takes anyway) before the factor's: the order a login
    // under the lock takes them in. Taken the other way, a batch that
    // had claimed a factor waited for the user's row, held by a locked
    // login that waited for the factor: a deadlock, which PostgreSQL
    // ends after a second by failing one of them. A user changed under
    // that lock fails the version check once the lock is let go.
    let unchanged = "EXISTS (SELECT 1 FROM users WHERE id = i.user_id AND xmin::text::bigint = i.user_version \
                     FOR KEY SHARE)";
    let attempt_columns = ATTEMPT_COLUMNS
        .split(", ")
        .map(|c| format!("a.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "WITH item AS (
           SELECT DISTINCT ON (i.id) i.*
           FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[],
                       $8::bytea[], $9::int[], $10::int[], $11::text[], $12::timestamptz[], $13::timestamptz[],
                       $14::timestamptz[], $15::int[], $16::bool[], $17::smallint[],
                       $18::bigint[], $19::bigint[])
                WITH ORDINALITY AS i ({INSERTED_CHALLENGE_COLUMNS}, user_version, step, n)
           ORDER BY i.id, i.n
         ), claim AS (
           UPDATE factors f SET last_step = i.step
           FROM (SELECT DISTINCT ON (user_id) * FROM item ORDER BY user_id, n) i
           WHERE f.user_id = i.user_id AND f.kind = 'totp' AND (f.last_step IS NULL OR f.last_step < i.step)
             AND {unchanged} AND NOT EXISTS (SELECT 1 FROM challenges c WHERE c.id = i.id OFFSET 0)
           RETURNING i.n
         ), challenge AS (
           INSERT INTO challenges ({INSERTED_CHALLENGE_COLUMNS})
           SELECT {INSERTED_CHALLENGE_COLUMNS} FROM item JOIN claim USING (n)
           ON CONFLICT (id) DO NOTHING
           RETURNING id
         ), attempt AS (
           INSERT INTO auth_attempts ({ATTEMPT_COLUMNS})
           SELECT {attempt_columns}
           FROM UNNEST($20::uuid[], $21::text[], $22::uuid[], $23::text[], $24::text[], $25::text[], $26::text[],
                       $27::text[], $28::text[], $29::uuid[], $30::timestamptz[])
                WITH ORDINALITY AS a ({ATTEMPT_COLUMNS}, n)
           JOIN item i ON i.n = a.n JOIN challenge c ON c.id = i.id
         ), events AS (
           INSERT INTO vigil_outbox (id, subject, envelope, traceparent)
           SELECT e.id, e.subject, e.envelope, e.traceparent
           FROM UNNEST($31::uuid[], $32::bigint[], $33::text[], $34::bytea[], $35::text[])
                AS e (id, n, subject, envelope, traceparent)
           JOIN item i ON i.n = e.n JOIN challenge c ON c.id = i.id
         )
         SELECT id FROM challenge"
    )
});

/// Writes each claimed login whose checks hold (its challenge, its audit
/// record, its events) in one statement, and returns for each whether it
/// was written. An id twice in one batch (a retried request beside its
/// first try) is written at most once, for its first item.
pub async fn write_claimed(conn: &mut PgConnection, claimed: &[Arc<Claimed>]) -> Result<Vec<bool>, sqlx::Error> {
    let mut events = ClaimedEvents::default();
    for (n, c) in (1_i64..).zip(claimed) {
        events.add(n, c);
    }
    let written: Vec<(Uuid,)> = sqlx::query_as(&WRITE_CLAIMED)
        .bind(each(claimed, |c| c.row.id))
        .bind(each(claimed, |c| c.row.provider_id.as_str()))
        .bind(each(claimed, |c| c.row.user_id))
        .bind(each(claimed, |c| c.row.agent_id.as_str()))
        .bind(each(claimed, |c| c.row.factor.as_str()))
        .bind(each(claimed, |c| c.row.state.as_str()))
        .bind(each(claimed, |c| c.row.reason.as_str()))
        .bind(each(claimed, |c| c.row.code_hash.as_deref()))
        .bind(each(claimed, |c| c.row.attempts))
        .bind(each(claimed, |c| c.row.max_attempts))
        .bind(each(claimed, |c| c.row.client_ip.as_str()))
        .bind(each(claimed, |c| c.now))
        .bind(each(claimed, |c| c.row.expires_at))
        .bind(each(claimed, |c| c.row.state().is_terminal().then_some(c.now)))
        .bind(each(claimed, |c| c.row.remember_minutes))
        .bind(each(claimed, |c| c.row.block_user_on_fraud))
        .bind(each(claimed, |c| c.row.match_number))
        .bind(each(claimed, |c| c.user_version))
        .bind(each(claimed, |c| c.step))
        .bind(each(claimed, |_| Uuid::now_v7()))
        .bind(each(claimed, |c| c.attempt.provider_id.as_str()))
        .bind(each(claimed, |c| c.attempt.user_id))
        .bind(each(claimed, |c| c.attempt.username.as_str()))
        .bind(each(claimed, |c| c.attempt.operation.as_str()))
        .bind(each(claimed, |c| c.attempt.agent_id.as_str()))
        .bind(each(claimed, |c| c.attempt.client_ip.as_str()))
        .bind(each(claimed, |c| c.attempt.decision.as_str()))
        .bind(each(claimed, |c| c.attempt.reason.as_str()))
        .bind(each(claimed, |c| c.attempt.challenge_id))
        .bind(each(claimed, |c| c.attempt.at))
        .bind(events.ids)
        .bind(events.items)
        .bind(events.subjects)
        .bind(events.envelopes)
        .bind(events.traceparents)
        .fetch_all(conn)
        .await?;
    let mut written: HashSet<Uuid> = written.into_iter().map(|(id,)| id).collect();
    // The first item of an id is the one written (DISTINCT ON keeps it).
    Ok(claimed.iter().map(|c| written.remove(&c.row.id)).collect())
}

/// One column of a batch: `f` of each item.
fn each<'a, T>(claimed: &'a [Arc<Claimed>], f: impl Fn(&'a Claimed) -> T) -> Vec<T> {
    claimed.iter().map(|c| f(c)).collect()
}

/// Every item's events as one set of columns, each row naming its item.
#[derive(Default)]
struct ClaimedEvents<'a> {
    ids: Vec<Uuid>,
    items: Vec<i64>,
    subjects: Vec<&'static str>,
    envelopes: Vec<&'a [u8]>,
    traceparents: Vec<Option<&'a str>>,
}

impl<'a> ClaimedEvents<'a> {
    fn add(&mut self, n: i64, claimed: &'a Claimed) {
        let rows = claimed.events.rows_traced(None);
        self.ids.extend_from_slice(rows.ids);
        self.subjects.extend_from_slice(rows.subjects);
        for envelope in rows.envelopes {
            self.items.push(n);
            self.envelopes.push(envelope.as_slice());
            self.traceparents.push(claimed.traceparent.as_deref());
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use vigil_bus::Outbox;
    use vigil_proto::events::ChallengeCompleted;

    use super::*;
    use crate::store::tests::{
        PROVIDER, approval, approved_challenge, audit_records, challenges, database, database_pool, enrolled,
        last_step, until_a_statement_waits_for_a_lock,
    };

    /// `row` approved by a code of `step`, as read at `user_version`, with
    /// two events of its own.
    pub fn claimed(row: &ChallengeRow, user_version: i64, step: i64) -> Claimed {
        let mut events = Outbox::new().batch(PROVIDER);
        for _ in 0..2 {
            events
                .push(&ChallengeCompleted {
                    challenge_id: row.id.to_string(),
                    ..Default::default()
                })
                .unwrap();
        }
        Claimed {
            row: row.clone(),
            now: Utc::now(),
            attempt: (&approval(row, "authenticate")).into(),
            events,
            traceparent: Some(format!("00-{}-0000000000000001-01", row.id.simple())),
            user_version,
            step,
        }
    }

    /// Each login of a batch is written or not on its own checks, and what
    /// is written is its own: its challenge, its audit record, its events
    /// with its trace context.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_batch_writes_each_login_whose_checks_hold_and_nothing_of_the_others() {
        let (_pg, mut conn) = database().await;
        let now = Utc::now();
        let [alice, bob, carol, dave, erin] = [
            enrolled(&mut conn, "alice").await,
            enrolled(&mut conn, "bob").await,
            enrolled(&mut conn, "carol").await,
            enrolled(&mut conn, "dave").await,
            enrolled(&mut conn, "erin").await,
        ];
        sqlx::query("UPDATE factors SET last_step = 60 WHERE user_id = $1")
            .bind(carol.id)
            .execute(&mut conn)
            .await
            .unwrap();
        // Erin's challenge exists already (a retried request's first try).
        let erins = approved_challenge(&erin, now);
        let first = Arc::new(claimed(&erins, erin.version, 10));
        assert!(write_claimed(&mut conn, std::slice::from_ref(&first)).await.unwrap()[0]);
        let written_before = challenges(&mut conn).await;
        let daves = approved_challenge(&dave, now);
        let batch = [
            claimed(&approved_challenge(&alice, now), alice.version, 100), // written
            claimed(&approved_challenge(&bob, now), bob.version + 1, 100), // bob changed since the read
            claimed(&approved_challenge(&carol, now), carol.version, 50),  // a step before carol's last
            claimed(&approved_challenge(&alice, now), alice.version, 101), // alice's second in the batch
            claimed(&daves, dave.version, 7),                              // written
            claimed(&daves, dave.version, 8),                              // dave's retried beside its first
            claimed(&erins, erin.version, 11),                             // exists already
        ]
        .map(Arc::new);
        let written = write_claimed(&mut conn, &batch).await.unwrap();
        assert_eq!(written, [true, false, false, false, true, false, false]);

        assert_eq!(challenges(&mut conn).await, written_before + 2);
        assert_eq!(audit_records(&mut conn).await, written_before + 2);
        assert_eq!(last_step(&mut conn, &alice).await, Some(100));
        assert_eq!(last_step(&mut conn, &bob).await, None);
        assert_eq!(last_step(&mut conn, &carol).await, Some(60));
        assert_eq!(last_step(&mut conn, &dave).await, Some(7));
        assert_eq!(last_step(&mut conn, &erin).await, Some(10));
        // The written logins' events and no others, each with its trace.
        let mut events: Vec<(Uuid, Option<String>)> = sqlx::query_as("SELECT id, traceparent FROM vigil_outbox")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        events.sort();
        let mut expected: Vec<(Uuid, Option<String>)> = [&*first, &*batch[0], &*batch[4]]
            .into_iter()
            .flat_map(|c| {
                let rows = c.events.rows_traced(None);
                rows.ids
                    .iter()
                    .map(|id| (*id, c.traceparent.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        expected.sort();
        assert_eq!(events, expected);
        // Each audit record names its own challenge.
        let unmatched: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM auth_attempts a WHERE NOT EXISTS (SELECT 1 FROM challenges c WHERE c.id = a.challenge_id AND c.user_id = a.user_id)",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(unmatched, 0);
    }

    /// Users are read in the keys' order, each with its factors, and only
    /// within the provider the key names.
    #[tokio::test(flavor = "multi_thread")]
    async fn users_are_read_in_order_each_within_its_provider() {
        let (_pg, mut conn) = database().await;
        let alice = enrolled(&mut conn, "alice").await;
        let bob = enrolled(&mut conn, "bob").await;
        crate::store::insert_factor(&mut conn, bob.id, "sms", "+15550100", Utc::now())
            .await
            .unwrap();
        let key = |provider: &str, username: &str| UserKey {
            provider_id: provider.into(),
            username: username.into(),
        };
        let keys = [
            key(PROVIDER, "bob"),
            key(PROVIDER, "nobody"),
            key("prv_other", "alice"),
            key(PROVIDER, "alice"),
            key(PROVIDER, "bob"),
        ];
        let read = read_users(&mut conn, &keys).await.unwrap();
        let found: Vec<Option<(Uuid, Vec<String>)>> = read
            .into_iter()
            .map(|f| f.map(|(user, factors)| (user.id, factors.into_iter().map(|f| f.kind).collect())))
            .collect();
        let bobs = Some((bob.id, vec!["totp".to_owned(), "sms".to_owned()]));
        assert_eq!(
            found,
            [
                bobs.clone(),
                None,
                None,
                Some((alice.id, vec!["totp".to_owned()])),
                bobs
            ]
        );
    }

    /// 10,000 users of `prv_plan` with a TOTP factor each, known to the
    /// statistics.
    async fn provider_of_analyzed_users(conn: &mut PgConnection) {
        for statement in [
            "INSERT INTO users (id, provider_id, username, status, created_at)
                 SELECT gen_random_uuid(), 'prv_plan', 'user' || n, 'enabled', now() FROM generate_series(1, 10000) n",
            "INSERT INTO factors (id, user_id, kind, destination, created_at)
                 SELECT gen_random_uuid(), id, 'totp', '', now() FROM users",
            "ANALYZE users",
            "ANALYZE factors",
        ] {
            sqlx::raw_sql(statement).execute(&mut *conn).await.unwrap();
        }
    }

    /// The read finds users and their factors by key in the plans
    /// PostgreSQL makes for it (the one cached for every call included),
    /// both on new, empty tables, as just after an install, and on a
    /// provider's analyzed users.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_read_finds_users_by_key_in_any_plan() {
        let (_pg, mut conn) = database().await;
        let arrays = "'{prv_plan}', '{user1}'";
        let mut plans = vigil_testkit::prepared_plans(&mut conn, &READ_USERS, arrays)
            .await
            .unwrap();
        provider_of_analyzed_users(&mut conn).await;
        plans.extend(
            vigil_testkit::prepared_plans(&mut conn, &READ_USERS, arrays)
                .await
                .unwrap(),
        );
        for (mode, plan) in plans {
            for table in ["users", "factors"] {
                assert!(
                    !plan.contains(&format!("Seq Scan on {table}")),
                    "{mode}: each batch reads all of {table}:\n{plan}"
                );
            }
            assert!(plan.contains("on users"), "{mode}: no users read:\n{plan}");
        }
    }

    /// The write looks up each login's challenge by its key in the plan made
    /// for a new, empty table: the plan PostgreSQL caches for the statement
    /// is often made then, and kept while the table grows. A plan that
    /// scanned the table read every challenge on every batch.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_write_finds_challenges_by_their_key_in_a_plan_made_while_the_table_is_empty() {
        let (_pg, mut conn) = database().await;
        // Users and factors as a provider has them, known to the statistics;
        // challenges none yet, the table never vacuumed.
        provider_of_analyzed_users(&mut conn).await;
        let params = (1..).take_while(|n| WRITE_CLAIMED.contains(&format!("${n}::"))).count();
        let empty_arrays = vec!["'{}'"; params].join(", ");
        for (mode, plan) in vigil_testkit::prepared_plans(&mut conn, &WRITE_CLAIMED, &empty_arrays)
            .await
            .unwrap()
        {
            assert!(
                !plan.contains("Seq Scan on challenges"),
                "{mode}: each batch reads every challenge:\n{plan}"
            );
            assert!(
                plan.contains("using challenges_pkey on challenges"),
                "{mode}: a challenge is not looked up by its key:\n{plan}"
            );
        }
    }

    /// Many logins at once through the batches, five of each user with one
    /// code: each user's code is written once, whatever the batches held.
    #[tokio::test(flavor = "multi_thread")]
    async fn one_code_raced_through_the_batches_is_written_once() {
        let (_pg, pool) = database_pool().await;
        let mut conn = pool.acquire().await.unwrap();
        let mut users = Vec::new();
        for i in 0..20 {
            users.push(enrolled(&mut conn, &format!("user{i}")).await);
        }
        let logins = Arc::new(UnlockedLogins::spawn(pool.clone()));
        let now = Utc::now();
        let tries: Vec<_> = (0..5)
            .flat_map(|_| users.iter())
            .map(|user| {
                let logins = logins.clone();
                let claimed = claimed(&approved_challenge(user, now), user.version, 42);
                tokio::spawn(async move { logins.write(claimed).await.unwrap() })
            })
            .collect();
        let written = futures::future::join_all(tries)
            .await
            .into_iter()
            .filter(|w| *w.as_ref().unwrap())
            .count();
        assert_eq!(written, users.len());
        assert_eq!(challenges(&mut conn).await, 20);
        let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM vigil_outbox")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(outbox, 40);
    }

    /// A login under the user's lock and a batch with a login of the same
    /// user take the user's row and the factor's in one order: the batch
    /// waits for the lock, then finds the step spent, and neither fails.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_batch_waits_for_a_login_under_the_users_lock_without_a_deadlock() {
        let (_pg, pool) = database_pool().await;
        let mut conn = pool.acquire().await.unwrap();
        let alice = enrolled(&mut conn, "alice").await;
        let mut locked = pool.begin().await.unwrap();
        crate::store::user_and_factors_by_name(&mut locked, PROVIDER, "alice", true)
            .await
            .unwrap();
        let batch = {
            let pool = pool.clone();
            let claimed = Arc::new(claimed(&approved_challenge(&alice, Utc::now()), alice.version, 100));
            tokio::spawn(async move {
                let mut conn = pool.acquire().await.unwrap();
                write_claimed(&mut conn, &[claimed]).await
            })
        };
        until_a_statement_waits_for_a_lock(&mut conn).await;
        // The login under the lock spends the step itself.
        sqlx::query("UPDATE factors SET last_step = 100 WHERE user_id = $1")
            .bind(alice.id)
            .execute(&mut *locked)
            .await
            .unwrap();
        locked.commit().await.unwrap();
        assert_eq!(batch.await.unwrap().unwrap(), [false]);
        assert_eq!(challenges(&mut conn).await, 0);
    }
}
