//! The challenge service's tables. Runtime-checked queries: no database is
//! needed at build time.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;
use vigil_bus::outbox::{OutboxRows, insert_rows_sql};

use crate::state::ChallengeState;

#[derive(Debug, sqlx::FromRow)]
pub struct FactorRow {
    pub kind: String,
    pub destination: String,
    /// Read with the factor so that a code typed with the login needs no
    /// second query; empty for factors without a seed.
    #[sqlx(flatten)]
    pub token: OtpToken,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChallengeRow {
    pub id: Uuid,
    pub provider_id: String,
    pub user_id: Uuid,
    pub state: String,
    pub reason: String,
    pub code_hash: Option<Vec<u8>>,
    pub max_attempts: i32,
    pub expires_at: DateTime<Utc>,
    pub agent_id: String,
    pub client_ip: String,
    pub remember_minutes: i32,
    pub factor: String,
    pub block_user_on_fraud: bool,
    /// Push number matching: the number the login screen shows.
    pub match_number: Option<i16>,
    /// Wrong codes so far.
    pub attempts: i32,
}

impl ChallengeRow {
    pub fn state(&self) -> ChallengeState {
        // The CHECK constraint admits only known states.
        ChallengeState::parse(&self.state).unwrap_or(ChallengeState::Failed)
    }
}

pub struct NewUser<'a> {
    pub id: Uuid,
    pub provider_id: &'a str,
    pub username: &'a str,
    pub display_name: &'a str,
    pub now: DateTime<Utc>,
}

/// Inserts the user; `false` when the username is taken in that provider.
pub async fn insert_user(conn: &mut PgConnection, user: NewUser<'_>) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO users (id, provider_id, username, display_name, status, created_at)
         VALUES ($1, $2, $3, $4, 'enabled', $5) ON CONFLICT (provider_id, username) DO NOTHING",
    )
    .bind(user.id)
    .bind(user.provider_id)
    .bind(user.username)
    .bind(user.display_name)
    .bind(user.now)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

pub async fn insert_factor(
    conn: &mut PgConnection,
    user_id: Uuid,
    kind: &str,
    destination: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO factors (id, user_id, kind, destination, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(Uuid::now_v7())
        .bind(user_id)
        .bind(kind)
        .bind(destination)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn user_factors(conn: &mut PgConnection, user_id: Uuid) -> Result<Vec<FactorRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT kind, destination, secret_ciphertext, counter, last_step FROM factors WHERE user_id = $1 ORDER BY created_at",
    )
        .bind(user_id)
        .fetch_all(conn)
        .await
}

/// An answer decided without the user's lock, as the statement that writes
/// it checks it: nothing is written unless the user's row is still the
/// version the answer was decided on (policy, failures, lockout) and, for a
/// TOTP code, the code's step is still unused, claimed by that statement.
/// Of two answers with one code, the second's claim waits for the first's
/// and then finds the step used.
#[derive(Debug, Clone, Copy)]
pub struct Unlocked {
    /// [`UserDetail::version`] as read.
    pub user_version: i64,
    /// The TOTP step the code matched, for a TOTP code.
    pub step: Option<i64>,
}

/// The checks a statement that writes an answer makes, each variant its
/// own statement text: a parameter that switched a part on or off made
/// PostgreSQL plan the statement anew on every call (it folds a NULL
/// parameter into each custom plan, which then always looks cheaper than
/// the generic one).
#[derive(Debug, Clone, Copy)]
enum Checks {
    /// Under the caller's lock: none.
    Locked,
    /// The user's version.
    UserVersion,
    /// The user's version, and a TOTP step claimed.
    UserVersionAndStep,
}

impl Checks {
    const ALL: [Self; 3] = [Self::Locked, Self::UserVersion, Self::UserVersionAndStep];

    fn of(unlocked: Option<Unlocked>) -> Self {
        match unlocked {
            None => Self::Locked,
            Some(Unlocked { step: None, .. }) => Self::UserVersion,
            Some(Unlocked { step: Some(_), .. }) => Self::UserVersionAndStep,
        }
    }

    /// The statement's text for each variant, in [`Self::ALL`]'s order.
    fn texts(statement: impl Fn(Self) -> String) -> [String; 3] {
        Self::ALL.map(statement)
    }

    fn text(self, texts: &[String; 3]) -> &str {
        &texts[self as usize]
    }

    /// The two parts these checks add to a statement that writes an
    /// answer: the `claim` CTE to put first (see [`claim_cte`]), and the
    /// condition on the write itself, after `keyword` (`WHERE` or `AND`).
    /// `(user, version, step)` are the statement's parameters; `challenge`
    /// is the claim's condition on the challenge. Both empty under the lock.
    fn parts(self, keyword: &str, (user, version, step): (&str, &str, &str), challenge: &str) -> (String, String) {
        match self {
            Self::Locked => (String::new(), String::new()),
            Self::UserVersion => (String::new(), format!("{keyword} {}", user_is_version(user, version))),
            Self::UserVersionAndStep => (
                claim_cte(user, version, step, challenge),
                format!("{keyword} EXISTS (SELECT 1 FROM claim)"),
            ),
        }
    }
}

/// `claim`: the TOTP step `$step` taken for user `$user` if it is later than
/// the last one used and the user's row is still version `$version`, and
/// `challenge` holds (a condition on the challenge). Its update waits for a
/// concurrent claim of the same factor and then checks the step again.
fn claim_cte(user: &str, version: &str, step: &str, challenge: &str) -> String {
    let unchanged = user_is_version(user, version);
    format!(
        "claim AS (
           UPDATE factors SET last_step = {step}
           WHERE user_id = {user} AND kind = 'totp' AND (last_step IS NULL OR last_step < {step})
             AND {unchanged} AND {challenge}
           RETURNING 1
         ), "
    )
}

/// The user's row is still version `$version`.
fn user_is_version(user: &str, version: &str) -> String {
    format!("EXISTS (SELECT 1 FROM users WHERE id = {user} AND xmin::text::bigint = {version})")
}

/// Writes a new challenge as `row` says, in whatever state it starts (a
/// login answered in the same call is written final, never pending and then
/// updated), together with its audit record and its events, in one
/// statement: a start is on every login, and each round trip is CPU on both
/// ends. Run under the user's lock; a login decided without it is written
/// by `crate::unlocked_logins`. Nothing is written when that id exists
/// already (a retried request); returns whether it was written.
pub async fn insert_challenge(
    conn: &mut PgConnection,
    row: &ChallengeRow,
    now: DateTime<Utc>,
    attempt: &NewAttempt<'_>,
    events: &OutboxRows<'_>,
) -> Result<bool, sqlx::Error> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let events = insert_rows_sql(29, "WHERE EXISTS (SELECT 1 FROM challenge)");
        format!(
            "WITH challenge AS (
               INSERT INTO challenges ({INSERTED_CHALLENGE_COLUMNS})
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
               ON CONFLICT (id) DO NOTHING
               RETURNING id
             ), attempt AS (
               INSERT INTO auth_attempts ({ATTEMPT_COLUMNS})
               SELECT $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28 FROM challenge
             ), events AS ({events})
             SELECT count(*) FROM challenge"
        )
    });
    let completed_at = row.state().is_terminal().then_some(now);
    let query = sqlx::query_as::<_, (i64,)>(&SQL)
        .bind(row.id)
        .bind(&row.provider_id)
        .bind(row.user_id)
        .bind(&row.agent_id)
        .bind(&row.factor)
        .bind(&row.state)
        .bind(&row.reason)
        .bind(&row.code_hash)
        .bind(row.attempts)
        .bind(row.max_attempts)
        .bind(&row.client_ip)
        .bind(now)
        .bind(row.expires_at)
        .bind(completed_at)
        .bind(row.remember_minutes)
        .bind(row.block_user_on_fraud)
        .bind(row.match_number);
    let (written,) = bind_attempt_and_events(query, attempt, events).fetch_one(conn).await?;
    Ok(written == 1)
}

/// The columns a new challenge is written with, in the order of
/// [`insert_challenge`]'s parameters.
pub const INSERTED_CHALLENGE_COLUMNS: &str = "id, provider_id, user_id, agent_id, factor, state, reason, code_hash, \
     attempts, max_attempts, client_ip, created_at, expires_at, completed_at, remember_minutes, block_user_on_fraud, \
     match_number";

/// An audit record's columns, in the order [`bind_attempt_and_events`] binds them.
pub const ATTEMPT_COLUMNS: &str =
    "id, provider_id, user_id, username, operation, agent_id, client_ip, decision, reason, challenge_id, at";

/// Binds an unlocked answer's checks after a statement's other parameters:
/// the user's version, `between` (parameters of the statement's own), then
/// the step, as many as [`Checks::of`] the answer has.
fn bind_unlocked<'q>(mut query: CountQuery<'q>, unlocked: Option<Unlocked>, between: &[Uuid]) -> CountQuery<'q> {
    if let Some(Unlocked { user_version, step }) = unlocked {
        query = query.bind(user_version);
        for id in between {
            query = query.bind(*id);
        }
        if let Some(step) = step {
            query = query.bind(step);
        }
    }
    query
}

type CountQuery<'q> = sqlx::query::QueryAs<'q, sqlx::Postgres, (i64,), sqlx::postgres::PgArguments>;

/// Binds an audit record (a fresh id, then the record's ten fields) and an
/// outbox batch (four parameters) after a statement's own parameters.
fn bind_attempt_and_events<'q>(
    query: CountQuery<'q>,
    attempt: &NewAttempt<'q>,
    events: &'q OutboxRows<'q>,
) -> CountQuery<'q> {
    query
        .bind(Uuid::now_v7())
        .bind(attempt.provider_id)
        .bind(attempt.user_id)
        .bind(attempt.username)
        .bind(attempt.operation)
        .bind(attempt.agent_id)
        .bind(attempt.client_ip)
        .bind(attempt.decision)
        .bind(attempt.reason)
        .bind(attempt.challenge_id)
        .bind(attempt.at)
        .bind(events.ids)
        .bind(events.subjects)
        .bind(events.envelopes)
        .bind(&events.traceparent)
}

const CHALLENGE_COLUMNS: &str = "id, provider_id, user_id, state, reason, code_hash, max_attempts, expires_at, agent_id, client_ip, remember_minutes, factor, block_user_on_fraud, match_number, attempts";

/// Reads a challenge of `provider_id`; another provider's challenge is "not found".
pub async fn get_challenge(
    conn: &mut PgConnection,
    provider_id: &str,
    id: Uuid,
    lock: bool,
) -> Result<Option<ChallengeRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE id = $1 AND provider_id = $2{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    sqlx::query_as(&sql)
        .bind(id)
        .bind(provider_id)
        .fetch_optional(conn)
        .await
}

/// What verifying a passcode reads, locked: the challenge, its user and the
/// user's token for the challenge's factor (absent for factors without one).
/// One statement, taking the locks in one order (challenge, user, token).
#[derive(Debug)]
pub struct Verification {
    pub challenge: ChallengeRow,
    pub user: UserDetail,
    pub token: OtpToken,
}

/// A user's OTP token: the encrypted seed and how far it has been used.
#[derive(Debug, Default, sqlx::FromRow)]
pub struct OtpToken {
    pub secret_ciphertext: Option<Vec<u8>>,
    pub counter: Option<i64>,
    pub last_step: Option<i64>,
}

// By hand: the challenge and the user both have `id` and `provider_id`.
impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for Verification {
    fn from_row(row: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row as _;
        Ok(Self {
            challenge: ChallengeRow::from_row(row)?,
            user: UserDetail {
                id: row.try_get("u_id")?,
                provider_id: row.try_get("u_provider_id")?,
                username: row.try_get("username")?,
                display_name: row.try_get("display_name")?,
                status: row.try_get("status")?,
                phone: row.try_get("phone")?,
                email: row.try_get("email")?,
                pin_hash: row.try_get("pin_hash")?,
                default_factor: row.try_get("default_factor")?,
                bypass_until: row.try_get("bypass_until")?,
                bypass_remaining: row.try_get("bypass_remaining")?,
                failed_attempts: row.try_get("failed_attempts")?,
                failure_window_start: row.try_get("failure_window_start")?,
                locked_until: row.try_get("locked_until")?,
                created_at: row.try_get("created_at")?,
                version: row.try_get("version")?,
            },
            token: OtpToken::from_row(row)?,
        })
    }
}

/// A challenge of `provider_id`, its user and the user's token for the
/// challenge's factor, locked (the challenge and the user) or not.
pub async fn read_verification(
    conn: &mut PgConnection,
    provider_id: &str,
    id: Uuid,
    lock: bool,
) -> Result<Option<Verification>, sqlx::Error> {
    // Every challenge has its user (ON DELETE CASCADE), so the join is inner.
    // The token is on the nullable side of an outer join and cannot be
    // locked here; its writers guard themselves (see otp_factors).
    static SQL: std::sync::LazyLock<[String; 2]> = std::sync::LazyLock::new(|| {
        let sql = "SELECT c.id, c.provider_id, c.user_id, c.state, c.reason, c.code_hash, c.max_attempts, c.expires_at,
                c.agent_id, c.client_ip, c.remember_minutes, c.factor, c.block_user_on_fraud, c.match_number, c.attempts,
                u.id AS u_id, u.provider_id AS u_provider_id, u.username, u.display_name, u.status, u.phone, u.email,
                u.pin_hash, u.default_factor, u.bypass_until, u.bypass_remaining, u.failed_attempts,
                u.failure_window_start, u.locked_until, u.created_at, u.xmin::text::bigint AS version,
                f.secret_ciphertext, f.counter, f.last_step
         FROM challenges c
         JOIN users u ON u.id = c.user_id
         LEFT JOIN factors f ON f.user_id = c.user_id AND f.kind = c.factor
         WHERE c.id = $1 AND c.provider_id = $2";
        [format!("{sql} FOR UPDATE OF c, u"), sql.to_owned()]
    });
    sqlx::query_as(&SQL[usize::from(!lock)])
        .bind(id)
        .bind(provider_id)
        .fetch_optional(conn)
        .await
}

/// Moves an open challenge to `state`; `false` if it was no longer open.
pub async fn transition(
    conn: &mut PgConnection,
    id: Uuid,
    state: ChallengeState,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    transition_announcing(conn, id, state, reason, now, &OutboxRows::default()).await
}

/// [`transition`] and, only if the challenge moved, its events, in one
/// statement: outside a transaction, one round trip and one commit.
pub async fn transition_announcing(
    conn: &mut PgConnection,
    id: Uuid,
    state: ChallengeState,
    reason: &str,
    now: DateTime<Utc>,
    events: &OutboxRows<'_>,
) -> Result<bool, sqlx::Error> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let announced = insert_rows_sql(5, "WHERE EXISTS (SELECT 1 FROM moved)");
        format!(
            "WITH moved AS ( \
               UPDATE challenges SET state = $2, reason = $3, completed_at = $4 \
               WHERE id = $1 AND state IN ('pending', 'delivered') AND ($2 <> 'delivered' OR state = 'pending') \
               RETURNING id), \
             announced AS ({announced}) \
             SELECT EXISTS (SELECT 1 FROM moved)"
        )
    });
    let completed_at = state.is_terminal().then_some(now);
    sqlx::query_scalar(&SQL)
        .bind(id)
        .bind(state.as_str())
        .bind(reason)
        .bind(completed_at)
        .bind(events.ids)
        .bind(events.subjects)
        .bind(events.envelopes)
        .bind(events.traceparent.as_deref())
        .fetch_one(conn)
        .await
}

/// Writes what an answer to an open challenge did, in one statement: its
/// audit record, one more attempt if the code was wrong, the challenge's end
/// if it ends there (guarded as [`transition`] is), and the events, written
/// only if the challenge moved. Returns whether it did. The challenge is
/// locked by the caller, or the answer is `unlocked`: then nothing at all
/// is written, not even the audit record, unless its checks hold.
#[allow(clippy::too_many_arguments)]
pub async fn settle_answer(
    conn: &mut PgConnection,
    row: &ChallengeRow,
    attempt: &NewAttempt<'_>,
    wrong: bool,
    end: Option<(ChallengeState, &str)>,
    events: &OutboxRows<'_>,
    now: DateTime<Utc>,
    unlocked: Option<Unlocked>,
) -> Result<bool, sqlx::Error> {
    static SQL: std::sync::LazyLock<[String; 3]> = std::sync::LazyLock::new(|| {
        Checks::texts(|checks| {
            // The claim locks the challenge before the factor: a verify
            // under the lock takes the challenge (and the user) first and
            // the factor last. Taken the other way, an answer given twice
            // at once, one on each path, deadlocked.
            let (claim, condition) = checks.parts(
                "AND",
                ("$22", "$21", "$23"),
                "EXISTS (SELECT 1 FROM challenges WHERE id = $1 AND state IN ('pending', 'delivered') \
                 FOR NO KEY UPDATE)",
            );
            // Under the lock the audit record is written whatever happens
            // to the challenge (a wrong code counts); unlocked, only with it.
            let recorded = match checks {
                Checks::Locked => "",
                Checks::UserVersion | Checks::UserVersionAndStep => "WHERE EXISTS (SELECT 1 FROM settled)",
            };
            let events = insert_rows_sql(17, "WHERE EXISTS (SELECT 1 FROM settled)");
            format!(
                "WITH {claim}settled AS (
                   UPDATE challenges SET attempts = attempts + $2, state = COALESCE($3, state),
                     reason = COALESCE($4, reason), completed_at = COALESCE($5, completed_at)
                   WHERE id = $1
                     AND ($3::text IS NULL OR (state IN ('pending', 'delivered') AND ($3 <> 'delivered' OR state = 'pending')))
                     {condition}
                   RETURNING id
                 ), attempt AS (
                   INSERT INTO auth_attempts ({ATTEMPT_COLUMNS})
                   SELECT $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16 {recorded}
                 ), events AS ({events})
                 SELECT count(*) FROM settled"
            )
        })
    });
    let (state, reason) = end.map_or((None, None), |(state, reason)| (Some(state.as_str()), Some(reason)));
    let completed_at = end.filter(|(state, _)| state.is_terminal()).map(|_| now);
    let query = sqlx::query_as::<_, (i64,)>(Checks::of(unlocked).text(&SQL))
        .bind(row.id)
        .bind(i32::from(wrong))
        .bind(state)
        .bind(reason)
        .bind(completed_at);
    let (settled,) = bind_unlocked(
        bind_attempt_and_events(query, attempt, events),
        unlocked,
        &[row.user_id],
    )
    .fetch_one(conn)
    .await?;
    Ok(settled == 1)
}

#[derive(Debug, sqlx::FromRow)]
pub struct ExpiredRow {
    pub id: Uuid,
    pub provider_id: String,
    pub user_id: Uuid,
}

/// How an expiry sweep's transaction begins: its plans never scan the
/// table. The sweep runs every second from the service's start, so the plan
/// its connection caches may be made while the table is new and its
/// statistics say it is nearly empty; such a plan looks up the picked rows
/// by reading every challenge, on every sweep, until autovacuum next
/// analyzes the table (in a benchmark's first minute: 1.75 ms a sweep at 30,000
/// challenges, and growing with them).
pub const EXPIRY_TRANSACTION: &str = "BEGIN; SET LOCAL enable_seqscan = off";

// The batch is picked once, in an `ARRAY(...)` evaluated before the update:
// as `id IN (subquery)` a plan may run the locking subquery again and take
// more than `limit`.
const EXPIRE_OVERDUE: &str = "UPDATE challenges SET state = 'expired', reason = 'EXPIRED', completed_at = $1
     WHERE id = ANY (ARRAY (
         SELECT id FROM challenges WHERE state IN ('pending', 'delivered') AND expires_at <= $1
         ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED))
     RETURNING id, provider_id, user_id";

/// Ends open challenges whose time is up, a batch at a time, in a
/// transaction begun with [`EXPIRY_TRANSACTION`].
pub async fn expire_overdue(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<ExpiredRow>, sqlx::Error> {
    sqlx::query_as(EXPIRE_OVERDUE)
        .bind(now)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// A user with everything policy and the admin API need.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserDetail {
    pub id: Uuid,
    pub provider_id: String,
    pub username: String,
    pub display_name: String,
    pub status: String,
    pub phone: String,
    pub email: String,
    pub pin_hash: Option<String>,
    pub default_factor: String,
    pub bypass_until: Option<DateTime<Utc>>,
    pub bypass_remaining: i32,
    pub failed_attempts: i32,
    pub failure_window_start: Option<DateTime<Utc>>,
    pub locked_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The row's version as read (PostgreSQL's `xmin`, which every update
    /// of the row changes): see [`Unlocked`].
    pub version: i64,
}

const USER_COLUMNS: &str = "id, provider_id, username, display_name, status, phone, email, pin_hash, default_factor, \
     bypass_until, bypass_remaining, failed_attempts, failure_window_start, locked_until, created_at, \
     xmin::text::bigint AS version";

/// A user of `provider_id` by username, optionally locked for update.
pub async fn user_by_name(
    conn: &mut PgConnection,
    provider_id: &str,
    username: &str,
    lock: bool,
) -> Result<Option<UserDetail>, sqlx::Error> {
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users WHERE provider_id = $1 AND username = $2{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    sqlx::query_as(&sql)
        .bind(provider_id)
        .bind(username)
        .fetch_optional(conn)
        .await
}

/// [`user_by_name`] and the user's factors (oldest first) in one statement:
/// every login reads both.
pub async fn user_and_factors_by_name(
    conn: &mut PgConnection,
    provider_id: &str,
    username: &str,
    lock: bool,
) -> Result<Option<(UserDetail, Vec<FactorRow>)>, sqlx::Error> {
    // One row per factor (one with NULLs if none), the user repeated: a join
    // reads each table once, where subqueries per column read factors again
    // for each.
    static SQL: std::sync::LazyLock<[String; 2]> = std::sync::LazyLock::new(|| {
        let sql = format!(
            "SELECT {} FROM users u LEFT JOIN factors f ON f.user_id = u.id
             WHERE u.provider_id = $1 AND u.username = $2
             ORDER BY f.created_at, f.id",
            user_and_factor_columns()
        );
        [format!("{sql} FOR UPDATE OF u"), sql]
    });
    let rows: Vec<UserFactorRow> = sqlx::query_as(&SQL[usize::from(!lock)])
        .bind(provider_id)
        .bind(username)
        .fetch_all(conn)
        .await?;
    Ok(user_with_factors(rows))
}

/// A user and one of its factors (NULLs if it has none), as
/// [`user_and_factor_columns`] reads them from `users u LEFT JOIN factors f`.
#[derive(sqlx::FromRow)]
pub struct UserFactorRow {
    #[sqlx(flatten)]
    user: UserDetail,
    kind: Option<String>,
    destination: Option<String>,
    #[sqlx(flatten)]
    token: OtpToken,
}

/// The columns of a [`UserFactorRow`].
pub fn user_and_factor_columns() -> String {
    let user_columns = USER_COLUMNS
        .split(',')
        .map(|c| format!("u.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    format!("{user_columns}, f.kind, f.destination, f.secret_ciphertext, f.counter, f.last_step")
}

/// One user's rows (in factor order) as the user and its factors.
pub fn user_with_factors(rows: impl IntoIterator<Item = UserFactorRow>) -> Option<(UserDetail, Vec<FactorRow>)> {
    let mut user = None;
    let factors = rows
        .into_iter()
        .filter_map(|row| {
            user.get_or_insert(row.user);
            Some(FactorRow {
                kind: row.kind?,
                destination: row.destination?,
                token: row.token,
            })
        })
        .collect();
    user.map(|user| (user, factors))
}

/// [`user_by_id`]'s statement, without and with the row lock.
///
/// `provider_id || ''` keeps the (provider, username) key out of the plan.
/// While the table is small its cost ties with the primary key's, and
/// PostgreSQL took it (seen in the test below): a plan cached then would
/// read all of a provider's users on every answer once they are many.
static USER_BY_ID: std::sync::LazyLock<[String; 2]> = std::sync::LazyLock::new(|| {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $2 AND provider_id || '' = $1");
    [sql.clone(), format!("{sql} FOR UPDATE")]
});

pub async fn user_by_id(
    conn: &mut PgConnection,
    provider_id: &str,
    id: Uuid,
    lock: bool,
) -> Result<Option<UserDetail>, sqlx::Error> {
    sqlx::query_as(&USER_BY_ID[usize::from(lock)])
        .bind(provider_id)
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// One page of a provider's users ordered by username, after `after`.
pub async fn list_users(
    conn: &mut PgConnection,
    provider_id: &str,
    query: &str,
    after: &str,
    limit: i64,
) -> Result<Vec<UserDetail>, sqlx::Error> {
    // The search term is a bound parameter; LIKE wildcards in it are escaped.
    let pattern = format!(
        "%{}%",
        query
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users WHERE provider_id = $1 AND username > $2
           AND (username LIKE $3 OR lower(display_name) LIKE $3 OR lower(email) LIKE $3)
         ORDER BY username LIMIT $4"
    );
    sqlx::query_as(&sql)
        .bind(provider_id)
        .bind(after)
        .bind(pattern)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// When this agent + user + client address was last approved.
pub async fn last_approval(
    conn: &mut PgConnection,
    provider_id: &str,
    agent_id: &str,
    user_id: Uuid,
    client_ip: &str,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT approved_at FROM remembered_approvals
         WHERE provider_id = $1 AND agent_id = $2 AND user_id = $3 AND client_ip = $4",
    )
    .bind(provider_id)
    .bind(agent_id)
    .bind(user_id)
    .bind(client_ip)
    .fetch_optional(conn)
    .await
}

pub async fn remember_approval(
    conn: &mut PgConnection,
    provider_id: &str,
    agent_id: &str,
    user_id: Uuid,
    client_ip: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO remembered_approvals (provider_id, agent_id, user_id, client_ip, approved_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (provider_id, agent_id, user_id, client_ip) DO UPDATE SET approved_at = EXCLUDED.approved_at",
    )
    .bind(provider_id)
    .bind(agent_id)
    .bind(user_id)
    .bind(client_ip)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Uses one bypass; `false` when none was left (a concurrent login took it).
pub async fn consume_bypass(conn: &mut PgConnection, user_id: Uuid, now: DateTime<Utc>) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE users SET bypass_remaining = bypass_remaining - 1
         WHERE id = $1 AND bypass_remaining > 0 AND bypass_until > $2",
    )
    .bind(user_id)
    .bind(now)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

pub async fn set_failures(
    conn: &mut PgConnection,
    user_id: Uuid,
    failed_attempts: i32,
    window_start: Option<DateTime<Utc>>,
    locked_until: Option<DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET failed_attempts = $2, failure_window_start = $3, locked_until = $4 WHERE id = $1")
        .bind(user_id)
        .bind(failed_attempts)
        .bind(window_start)
        .bind(locked_until)
        .execute(conn)
        .await?;
    Ok(())
}

pub struct NewAttempt<'a> {
    pub provider_id: &'a str,
    pub user_id: Option<Uuid>,
    pub username: &'a str,
    pub operation: &'a str,
    pub agent_id: &'a str,
    pub client_ip: &'a str,
    pub decision: &'a str,
    pub reason: &'a str,
    pub challenge_id: Option<Uuid>,
    pub at: DateTime<Utc>,
}

pub async fn record_attempt(conn: &mut PgConnection, a: NewAttempt<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO auth_attempts (id, provider_id, user_id, username, operation, agent_id, client_ip, decision, reason, challenge_id, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(Uuid::now_v7())
    .bind(a.provider_id)
    .bind(a.user_id)
    .bind(a.username)
    .bind(a.operation)
    .bind(a.agent_id)
    .bind(a.client_ip)
    .bind(a.decision)
    .bind(a.reason)
    .bind(a.challenge_id)
    .bind(a.at)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
pub struct AttemptRow {
    pub at: DateTime<Utc>,
    pub operation: String,
    pub agent_id: String,
    pub client_ip: String,
    pub decision: String,
    pub reason: String,
    pub challenge_id: Option<Uuid>,
}

pub async fn recent_attempts(
    conn: &mut PgConnection,
    provider_id: &str,
    username: &str,
    limit: i64,
) -> Result<Vec<AttemptRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT at, operation, agent_id, client_ip, decision, reason, challenge_id FROM auth_attempts
         WHERE provider_id = $1 AND username = $2 ORDER BY at DESC, id DESC LIMIT $3",
    )
    .bind(provider_id)
    .bind(username)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// The user an audit line is about. The username is kept beside the id: a
/// deleted user's id no longer resolves, and the log is searched by name.
#[derive(Debug, Clone, Copy)]
pub struct Audited<'a> {
    pub provider_id: &'a str,
    pub user_id: Uuid,
    pub username: &'a str,
}

impl UserDetail {
    /// No failed attempts on record and no lockout: an approval has nothing
    /// to clear.
    pub fn has_no_failures(&self) -> bool {
        self.failed_attempts == 0 && self.failure_window_start.is_none() && self.locked_until.is_none()
    }

    pub fn audited(&self) -> Audited<'_> {
        Audited {
            provider_id: &self.provider_id,
            user_id: self.id,
            username: &self.username,
        }
    }
}

/// One admin action on a user. `detail` must never hold a secret (a PIN, a
/// seed, a code): name what changed, not the new value.
pub async fn audit_user(
    conn: &mut PgConnection,
    user: Audited<'_>,
    actor: &str,
    action: &str,
    detail: &str,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO user_audit (id, provider_id, user_id, username, actor, action, detail, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(Uuid::now_v7())
    .bind(user.provider_id)
    .bind(user.user_id)
    .bind(user.username)
    .bind(actor)
    .bind(action)
    .bind(detail)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use sqlx::{Connection, PgConnection};
    use vigil_testkit::PgServer;

    use super::*;

    pub const PROVIDER: &str = "prv_test";

    pub async fn database() -> (PgServer, PgConnection) {
        let (pg, pool) = database_pool().await;
        let conn = pool.acquire().await.unwrap().detach();
        (pg, conn)
    }

    /// The challenge service's database, migrated, on a server of its own.
    pub async fn database_pool() -> (PgServer, sqlx::PgPool) {
        let pg = PgServer::start().await.unwrap();
        let url = pg.create_database("vigil_challenge").await.unwrap();
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::migrate!().run(&pool).await.unwrap();
        vigil_bus::schema::install(&pool).await.unwrap();
        (pg, pool)
    }

    /// A TOTP challenge answered with a right code, as a login in one call
    /// writes it.
    pub fn approved_challenge(user: &UserDetail, now: DateTime<Utc>) -> ChallengeRow {
        ChallengeRow {
            id: Uuid::now_v7(),
            provider_id: PROVIDER.into(),
            user_id: user.id,
            state: "approved".into(),
            reason: "approved".into(),
            code_hash: None,
            max_attempts: 5,
            expires_at: now + chrono::Duration::minutes(5),
            agent_id: String::new(),
            client_ip: String::new(),
            remember_minutes: 0,
            factor: "totp".into(),
            block_user_on_fraud: true,
            match_number: None,
            attempts: 0,
        }
    }

    pub fn approval(row: &ChallengeRow, operation: &'static str) -> NewAttempt<'static> {
        NewAttempt {
            provider_id: PROVIDER,
            user_id: Some(row.user_id),
            username: "alice",
            operation,
            agent_id: "",
            client_ip: "",
            decision: "ALLOW",
            reason: "APPROVED",
            challenge_id: Some(row.id),
            at: Utc::now(),
        }
    }

    /// A TOTP challenge of `user` waiting for its answer, written.
    async fn open_challenge(conn: &mut PgConnection, user: &UserDetail, now: DateTime<Utc>) -> ChallengeRow {
        let mut open = approved_challenge(user, now);
        open.state = "pending".into();
        open.reason = "ENROLLED".into();
        let attempt = approval(&open, "authenticate");
        assert!(
            insert_challenge(conn, &open, now, &attempt, &OutboxRows::default())
                .await
                .unwrap()
        );
        open
    }

    /// Returns once a statement of another connection waits for a row lock.
    pub async fn until_a_statement_waits_for_a_lock(conn: &mut PgConnection) {
        while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            .fetch_one(&mut *conn)
            .await
            .unwrap()
            == 0
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// A login in one call as it is written without the lock, alone in its
    /// batch (see `crate::unlocked_logins`).
    async fn write(conn: &mut PgConnection, row: &ChallengeRow, unlocked: Unlocked) -> bool {
        let claimed = crate::unlocked_logins::tests::claimed(row, unlocked.user_version, unlocked.step.unwrap());
        crate::unlocked_logins::write_claimed(conn, &[std::sync::Arc::new(claimed)])
            .await
            .unwrap()[0]
    }

    /// Alice, with a TOTP factor, as read without a lock.
    async fn enrolled_alice(conn: &mut PgConnection) -> UserDetail {
        enrolled(conn, "alice").await
    }

    /// `username` of [`PROVIDER`], with a TOTP factor, as read without a lock.
    pub async fn enrolled(conn: &mut PgConnection, username: &str) -> UserDetail {
        let now = Utc::now();
        let user_id = Uuid::now_v7();
        let new_user = NewUser {
            id: user_id,
            provider_id: PROVIDER,
            username,
            display_name: username,
            now,
        };
        assert!(insert_user(conn, new_user).await.unwrap());
        insert_factor(conn, user_id, "totp", "", now).await.unwrap();
        user_and_factors_by_name(conn, PROVIDER, username, false)
            .await
            .unwrap()
            .unwrap()
            .0
    }

    async fn disable_alice(conn: &mut PgConnection) {
        sqlx::query("UPDATE users SET status = 'disabled' WHERE username = 'alice'")
            .execute(conn)
            .await
            .unwrap();
    }

    pub async fn audit_records(conn: &mut PgConnection) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM auth_attempts")
            .fetch_one(conn)
            .await
            .unwrap()
    }

    async fn alice(conn: &mut PgConnection) -> UserDetail {
        user_and_factors_by_name(conn, PROVIDER, "alice", false)
            .await
            .unwrap()
            .unwrap()
            .0
    }

    /// The last TOTP step `user` used.
    pub async fn last_step(conn: &mut PgConnection, user: &UserDetail) -> Option<i64> {
        sqlx::query_scalar("SELECT last_step FROM factors WHERE user_id = $1 AND kind = 'totp'")
            .bind(user.id)
            .fetch_one(conn)
            .await
            .unwrap()
    }

    /// `open` approved by a verify without the lock, on `unlocked`'s checks.
    async fn approve_unlocked(
        conn: &mut PgConnection,
        open: &ChallengeRow,
        now: DateTime<Utc>,
        unlocked: Unlocked,
    ) -> Result<bool, sqlx::Error> {
        let attempt = approval(open, "verify");
        let end = Some((ChallengeState::Approved, "APPROVED"));
        settle_answer(
            conn,
            open,
            &attempt,
            false,
            end,
            &OutboxRows::default(),
            now,
            Some(unlocked),
        )
        .await
    }

    pub async fn challenges(conn: &mut PgConnection) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM challenges")
            .fetch_one(conn)
            .await
            .unwrap()
    }

    /// A sweep's plan looks up the challenges it ends by their key, also when
    /// it is made while the table is new (the plan its connection caches
    /// from the service's first seconds).
    #[tokio::test(flavor = "multi_thread")]
    async fn the_expiry_sweep_finds_its_challenges_by_key_in_a_plan_made_while_the_table_is_empty() {
        let (_pg, mut conn) = database().await;
        let mut tx = conn.begin_with(EXPIRY_TRANSACTION).await.unwrap();
        for (mode, plan) in vigil_testkit::prepared_plans(&mut tx, EXPIRE_OVERDUE, "now(), 500")
            .await
            .unwrap()
        {
            assert!(
                !plan.contains("Seq Scan"),
                "{mode}: a sweep reads every challenge:\n{plan}"
            );
            assert!(
                plan.contains("Index Cond: (id = ANY"),
                "{mode}: the swept challenges are not found by their key:\n{plan}"
            );
        }
    }

    /// An answer finds its user by key, also in a plan made while the users
    /// were few: by (provider, username), it would read all of a provider's
    /// users on every answer.
    #[tokio::test(flavor = "multi_thread")]
    async fn an_answer_finds_its_user_by_key_in_a_plan_made_while_there_were_none() {
        let (_pg, mut conn) = database().await;
        for sql in USER_BY_ID.iter() {
            let args = format!("'acme', '{}'", Uuid::nil());
            for (mode, plan) in vigil_testkit::prepared_plans(&mut conn, sql, &args).await.unwrap() {
                assert!(
                    plan.contains("users_pkey"),
                    "{mode}: an answer does not find its user by key:\n{plan}"
                );
            }
        }
    }

    /// A login decided without the user's lock writes its challenge only if
    /// the code's step is unused and the user is as read; otherwise it
    /// writes nothing at all, and the locked path decides again.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_step_claim_writes_only_for_an_unused_step_and_an_unchanged_user() {
        let (_pg, mut conn) = database().await;
        let now = Utc::now();
        let read = enrolled_alice(&mut conn).await;

        // The first use of a step: written, and the step moves.
        let first = approved_challenge(&read, now);
        let claim = |step| Unlocked {
            step: Some(step),
            user_version: read.version,
        };
        assert!(write(&mut conn, &first, claim(100)).await);
        assert_eq!(last_step(&mut conn, &read).await, Some(100));

        // The same step again, or an earlier one: nothing.
        assert!(!write(&mut conn, &approved_challenge(&read, now), claim(100)).await);
        assert!(!write(&mut conn, &approved_challenge(&read, now), claim(99)).await);
        // A retried request (its challenge exists): nothing, the step stays.
        assert!(!write(&mut conn, &first, claim(101)).await);
        assert_eq!(last_step(&mut conn, &read).await, Some(100));
        assert_eq!(challenges(&mut conn).await, 1);

        // Locking the user's row (another login under the lock) is no change.
        let mut tx = conn.begin().await.unwrap();
        user_and_factors_by_name(&mut tx, PROVIDER, "alice", true)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(alice(&mut conn).await.version, read.version);

        // The user disabled since the read: the claim does not hold.
        disable_alice(&mut conn).await;
        assert!(!write(&mut conn, &approved_challenge(&read, now), claim(101)).await);
        assert_eq!(last_step(&mut conn, &read).await, Some(100));
        assert_eq!(challenges(&mut conn).await, 1);

        // Read again, the user's new version holds.
        let reread = alice(&mut conn).await;
        assert_ne!(reread.version, read.version);
        let claim = Unlocked {
            step: Some(101),
            user_version: reread.version,
        };
        assert!(write(&mut conn, &approved_challenge(&reread, now), claim).await);
        assert_eq!(last_step(&mut conn, &read).await, Some(101));
        assert_eq!(challenges(&mut conn).await, 2);
    }

    /// An answer to an open challenge settled without the lock: written
    /// whole (the end, the audit record) only while the challenge is open,
    /// the user as read and the step unused; otherwise nothing at all.
    #[tokio::test(flavor = "multi_thread")]
    async fn an_unlocked_answer_settles_only_an_open_challenge_of_an_unchanged_user() {
        let (_pg, mut conn) = database().await;
        let now = Utc::now();
        let read = enrolled_alice(&mut conn).await;
        let open = open_challenge(&mut conn, &read, now).await;
        let settle = async |conn: &mut PgConnection, unlocked: Unlocked| {
            approve_unlocked(conn, &open, now, unlocked).await.unwrap()
        };
        let state = async |conn: &mut PgConnection| -> String {
            sqlx::query_scalar("SELECT state FROM challenges")
                .fetch_one(conn)
                .await
                .unwrap()
        };
        let as_read = |step| Unlocked {
            user_version: read.version,
            step,
        };

        // A step used already: nothing, not even the audit record.
        sqlx::query("UPDATE factors SET last_step = 100")
            .execute(&mut conn)
            .await
            .unwrap();
        assert!(!settle(&mut conn, as_read(Some(100))).await);
        assert_eq!(state(&mut conn).await, "pending");
        assert_eq!(audit_records(&mut conn).await, 1);

        // The user changed since the read: nothing, and the step stays unused.
        disable_alice(&mut conn).await;
        assert!(!settle(&mut conn, as_read(Some(101))).await);
        assert!(!settle(&mut conn, as_read(None)).await);
        assert_eq!(last_step(&mut conn, &read).await, Some(100));
        assert_eq!(state(&mut conn).await, "pending");
        assert_eq!(audit_records(&mut conn).await, 1);

        // As read: approved, the step claimed, one audit record.
        let reread = alice(&mut conn).await;
        let current = |step| Unlocked {
            user_version: reread.version,
            step,
        };
        assert!(settle(&mut conn, current(Some(101))).await);
        assert_eq!(state(&mut conn).await, "approved");
        assert_eq!(last_step(&mut conn, &read).await, Some(101));
        assert_eq!(audit_records(&mut conn).await, 2);

        // Answered already: nothing more, and a later step is not spent.
        assert!(!settle(&mut conn, current(Some(102))).await);
        assert!(!settle(&mut conn, current(None)).await);
        assert_eq!(last_step(&mut conn, &read).await, Some(101));
        assert_eq!(audit_records(&mut conn).await, 2);
    }

    /// An answer settled without the lock and a verify under it, for one
    /// challenge, take the challenge's row and the factor's in one order:
    /// the unlocked one waits, then finds the challenge answered, and
    /// neither fails.
    #[tokio::test(flavor = "multi_thread")]
    async fn an_unlocked_answer_waits_for_a_verify_under_the_lock_without_a_deadlock() {
        let (_pg, pool) = database_pool().await;
        let mut conn = pool.acquire().await.unwrap();
        let now = Utc::now();
        let read = enrolled(&mut conn, "alice").await;
        let open = open_challenge(&mut conn, &read, now).await;
        // The verify under the lock reads the challenge and its user, locked.
        let mut locked = pool.begin().await.unwrap();
        assert!(
            read_verification(&mut locked, PROVIDER, open.id, true)
                .await
                .unwrap()
                .is_some()
        );
        let unlocked = {
            let pool = pool.clone();
            let open = open.clone();
            tokio::spawn(async move {
                let mut conn = pool.acquire().await.unwrap();
                let checks = Unlocked {
                    user_version: read.version,
                    step: Some(100),
                };
                approve_unlocked(&mut conn, &open, now, checks).await
            })
        };
        until_a_statement_waits_for_a_lock(&mut conn).await;
        // The verify under the lock spends the step and approves.
        sqlx::query("UPDATE factors SET last_step = 100")
            .execute(&mut *locked)
            .await
            .unwrap();
        sqlx::query("UPDATE challenges SET state = 'approved'")
            .execute(&mut *locked)
            .await
            .unwrap();
        locked.commit().await.unwrap();
        assert!(!unlocked.await.unwrap().unwrap());
        assert_eq!(audit_records(&mut conn).await, 1);
    }
}
