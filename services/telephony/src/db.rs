//! The service's tables: `deliveries` and `inbound_messages`. Every function
//! runs on the caller's transaction, so a state change and the events it
//! causes commit together.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;
use vigil_bus::outbox::{OutboxRows, insert_rows_sql};
use vigil_core::DeliveryId;

use crate::model::{Answer, Channel, Delivery, DeliveryState, VoiceMode};

/// The columns [`DeliveryRow`] reads.
const DELIVERY_COLUMNS: &str = "id, provider_id, challenge_id, channel, state, carrier, carrier_ref, destination, \
     voice_mode, speak, device_id, device_public_key, expires_at, answered_at, answer_digest, last_error";

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: Uuid,
    provider_id: String,
    challenge_id: String,
    channel: String,
    state: String,
    carrier: String,
    carrier_ref: Option<String>,
    destination: String,
    voice_mode: Option<String>,
    speak: Option<String>,
    device_id: Option<String>,
    device_public_key: Option<Vec<u8>>,
    expires_at: Option<DateTime<Utc>>,
    answered_at: Option<DateTime<Utc>>,
    answer_digest: Option<Vec<u8>>,
    last_error: Option<String>,
}

impl TryFrom<DeliveryRow> for Delivery {
    type Error = sqlx::Error;

    fn try_from(row: DeliveryRow) -> Result<Self, Self::Error> {
        let corrupt = |column: &str, value: &str| {
            sqlx::Error::Decode(format!("deliveries.{column} holds unknown value {value:?}").into())
        };
        let voice_mode = match row.voice_mode.as_deref() {
            None => None,
            Some(m) => Some(VoiceMode::parse(m).ok_or_else(|| corrupt("voice_mode", m))?),
        };
        Ok(Self {
            id: DeliveryId::from_uuid(row.id),
            channel: Channel::parse(&row.channel).ok_or_else(|| corrupt("channel", &row.channel))?,
            state: DeliveryState::parse(&row.state).ok_or_else(|| corrupt("state", &row.state))?,
            provider_id: row.provider_id,
            challenge_id: row.challenge_id,
            carrier: row.carrier,
            carrier_ref: row.carrier_ref,
            destination: row.destination,
            voice_mode,
            speak: row.speak,
            device_id: row.device_id,
            device_public_key: row.device_public_key,
            expires_at: row.expires_at,
            answered_at: row.answered_at,
            answer_digest: row.answer_digest,
            last_error: row.last_error,
        })
    }
}

/// A delivery as first recorded, before anything is sent.
pub struct NewDelivery<'a> {
    pub id: DeliveryId,
    pub provider_id: &'a str,
    pub challenge_id: &'a str,
    pub channel: Channel,
    /// As requested; stored even when invalid, so the failure can be inspected.
    pub destination: &'a str,
    pub carrier: &'a str,
    pub voice_mode: Option<VoiceMode>,
    pub speak: Option<&'a str>,
    pub device_id: Option<&'a str>,
    pub device_public_key: Option<&'a [u8]>,
    pub expires_at: DateTime<Utc>,
}

/// Records a delivery in state `queued` and returns it, or `None` if it was
/// recorded before (a redelivered request). With `claim_first`, the same
/// statement records its first try, at `new.carrier`, as pending: a new
/// delivery costs one commit before its first send, not two.
pub async fn record_delivery(
    connection: &mut PgConnection,
    new: &NewDelivery<'_>,
    claim_first: bool,
) -> Result<Option<Delivery>, sqlx::Error> {
    let sql = format!(
        "WITH recorded AS ( \
           INSERT INTO deliveries (id, provider_id, challenge_id, channel, destination, state, carrier, \
             voice_mode, speak, device_id, device_public_key, expires_at, attempts) \
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, CASE WHEN $13 THEN 1 ELSE 0 END) \
           ON CONFLICT (id) DO NOTHING RETURNING *), \
         first_try AS ( \
           INSERT INTO delivery_attempts (delivery_id, attempt, carrier, outcome) \
           SELECT id, 1, carrier, 'pending' FROM recorded WHERE $13) \
         SELECT {DELIVERY_COLUMNS} FROM recorded"
    );
    let row: Option<DeliveryRow> = sqlx::query_as(&sql)
        .bind(new.id.as_uuid())
        .bind(new.provider_id)
        .bind(new.challenge_id)
        .bind(new.channel.as_str())
        .bind(new.destination)
        .bind(DeliveryState::Queued.as_str())
        .bind(new.carrier)
        .bind(new.voice_mode.map(VoiceMode::as_str))
        .bind(new.speak)
        .bind(new.device_id)
        .bind(new.device_public_key)
        .bind(new.expires_at)
        .bind(claim_first)
        .fetch_optional(connection)
        .await?;
    row.map(Delivery::try_from).transpose()
}

/// Reads a delivery without locking it.
pub async fn delivery(connection: &mut PgConnection, id: DeliveryId) -> Result<Option<Delivery>, sqlx::Error> {
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1");
    let row: Option<DeliveryRow> = sqlx::query_as(&sql)
        .bind(id.as_uuid())
        .fetch_optional(connection)
        .await?;
    row.map(Delivery::try_from).transpose()
}

/// Reads a delivery and locks it until the transaction ends, so concurrent
/// handlers and callbacks for the same delivery take turns.
pub async fn lock_delivery(tx: &mut PgConnection, id: DeliveryId) -> Result<Option<Delivery>, sqlx::Error> {
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1 FOR UPDATE");
    let row: Option<DeliveryRow> = sqlx::query_as(&sql).bind(id.as_uuid()).fetch_optional(tx).await?;
    row.map(Delivery::try_from).transpose()
}

/// Reads the delivery the carrier knows as `carrier_ref`, without locking
/// it: the columns a status event names never change once a carrier took it.
pub async fn delivery_by_carrier_ref(
    connection: &mut PgConnection,
    carrier_ref: &str,
) -> Result<Option<Delivery>, sqlx::Error> {
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE carrier_ref = $1");
    let row: Option<DeliveryRow> = sqlx::query_as(&sql)
        .bind(carrier_ref)
        .fetch_optional(connection)
        .await?;
    row.map(Delivery::try_from).transpose()
}

/// What [`record_status`] found and did.
pub struct StatusRecorded {
    /// The delivery's state before the callback.
    pub previous: DeliveryState,
    /// Whether it moved to the callback's state (and its event was written).
    pub moved: bool,
}

/// One statement, so one commit and one round trip per callback: locks the
/// delivery known as `callback.carrier_ref`, records `callback` against it,
/// and, if its state still advances to `next`, moves it there (an `error`
/// replaces the last one) and writes `events`, its announcement. States only
/// move forward, so a repeated or late callback records itself and changes
/// nothing. `None` when no delivery has that reference.
pub async fn record_status(
    connection: &mut PgConnection,
    callback: &Callback<'_>,
    next: DeliveryState,
    error: Option<&str>,
    events: &OutboxRows<'_>,
) -> Result<Option<StatusRecorded>, sqlx::Error> {
    let advancing: Vec<&str> = DeliveryState::ALL
        .into_iter()
        .filter(|s| s.advances_to(next))
        .map(DeliveryState::as_str)
        .collect();
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let announced = insert_rows_sql(10, "WHERE EXISTS (SELECT 1 FROM moved)");
        format!(
            "WITH found AS (SELECT id, state FROM deliveries WHERE carrier_ref = $1 FOR UPDATE), \
             recorded AS ( \
               INSERT INTO carrier_callbacks (id, delivery_id, carrier, kind, carrier_ref, status, detail) \
               SELECT $2, id, $3, $4, $1, $5, $6 FROM found), \
             moved AS ( \
               UPDATE deliveries d SET state = $7, last_error = COALESCE($8, d.last_error), updated_at = now() \
               FROM found WHERE d.id = found.id AND found.state = ANY($9::text[]) RETURNING d.id), \
             announced AS ({announced}) \
             SELECT found.state, EXISTS (SELECT 1 FROM moved) FROM found"
        )
    });
    let row: Option<(String, bool)> = sqlx::query_as(&SQL)
        .bind(callback.carrier_ref)
        .bind(Uuid::now_v7())
        .bind(callback.carrier)
        .bind(callback.kind)
        .bind(callback.status)
        .bind(callback.detail)
        .bind(next.as_str())
        .bind(error)
        .bind(&advancing)
        .bind(events.ids)
        .bind(events.subjects)
        .bind(events.envelopes)
        .bind(events.traceparent.as_deref())
        .fetch_optional(connection)
        .await?;
    row.map(|(state, moved)| {
        let previous = DeliveryState::parse(&state)
            .ok_or_else(|| sqlx::Error::Decode(format!("deliveries.state holds unknown value {state:?}").into()))?;
        Ok(StatusRecorded { previous, moved })
    })
    .transpose()
}

/// The most recent delivery on `channel` to `destination` (E.164).
pub async fn latest_delivery_to(
    tx: &mut PgConnection,
    destination: &str,
    channel: Channel,
) -> Result<Option<Delivery>, sqlx::Error> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE destination = $1 AND channel = $2 \
         ORDER BY created_at DESC, id DESC LIMIT 1"
    );
    let row: Option<DeliveryRow> = sqlx::query_as(&sql)
        .bind(destination)
        .bind(channel.as_str())
        .fetch_optional(tx)
        .await?;
    row.map(Delivery::try_from).transpose()
}

/// `carrier` accepted the delivery as `carrier_ref`.
pub async fn record_sent(
    tx: &mut PgConnection,
    id: DeliveryId,
    carrier: &str,
    carrier_ref: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE deliveries SET state = $2, carrier = $3, carrier_ref = $4, updated_at = now() WHERE id = $1")
        .bind(id.as_uuid())
        .bind(DeliveryState::Sent.as_str())
        .bind(carrier)
        .bind(carrier_ref)
        .execute(tx)
        .await?;
    Ok(())
}

/// What [`record_accepted`] found.
pub struct AcceptedRecorded {
    /// The delivery was queued, so it moved to `sent` and `sent` was announced.
    pub to_sent: bool,
    /// Its usage was not reported yet and is now, with the usage event.
    pub usage_claimed: bool,
}

/// Settles try `attempt` as accepted by `carrier` as `carrier_ref`, in one
/// statement (one round trip, one commit) that locks the delivery and then
/// decides: a queued delivery moves to `sent` under that carrier and
/// `sent_event` is written; any other keeps its state (a call's final status
/// can outrun this) and only learns the reference. With `usage_event`, the
/// delivery's usage is marked reported and the event written, unless it was
/// reported before. `None` if the delivery is gone.
pub async fn record_accepted(
    connection: &mut PgConnection,
    id: DeliveryId,
    attempt: i32,
    carrier: &str,
    carrier_ref: &str,
    sent_event: &OutboxRows<'_>,
    usage_event: Option<&OutboxRows<'_>>,
) -> Result<Option<AcceptedRecorded>, sqlx::Error> {
    // The two events' rows side by side, each tagged with what it announces.
    let mut tagged = vec![(sent_event, "sent")];
    tagged.extend(usage_event.map(|usage| (usage, "usage")));
    let (mut ids, mut subjects, mut envelopes, mut tags) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (events, tag) in tagged {
        ids.extend_from_slice(events.ids);
        subjects.extend_from_slice(events.subjects);
        envelopes.extend_from_slice(events.envelopes);
        tags.extend(std::iter::repeat_n(tag, events.ids.len()));
    }
    let row: Option<(bool, bool)> = sqlx::query_as(
        "WITH found AS ( \
           SELECT id, state = $5 AS to_sent, $6 AND usage_reported_at IS NULL AS claim_usage \
           FROM deliveries WHERE id = $1 FOR UPDATE), \
         settled AS ( \
           UPDATE delivery_attempts SET outcome = 'accepted', carrier_ref = $4, finished_at = now() \
           WHERE delivery_id = $1 AND attempt = $2 AND EXISTS (SELECT 1 FROM found)), \
         updated AS ( \
           UPDATE deliveries d SET carrier_ref = $4, updated_at = now(), \
             state = CASE WHEN found.to_sent THEN $7 ELSE d.state END, \
             carrier = CASE WHEN found.to_sent THEN $3 ELSE d.carrier END, \
             usage_reported_at = CASE WHEN found.claim_usage THEN now() ELSE d.usage_reported_at END \
           FROM found WHERE d.id = found.id), \
         announced AS ( \
           INSERT INTO vigil_outbox (id, subject, envelope, traceparent) \
           SELECT e.id, e.subject, e.envelope, $12 \
           FROM UNNEST($8::uuid[], $9::text[], $10::bytea[], $11::text[]) AS e (id, subject, envelope, tag), found \
           WHERE (e.tag = 'sent' AND found.to_sent) OR (e.tag = 'usage' AND found.claim_usage)) \
         SELECT to_sent, claim_usage FROM found",
    )
    .bind(id.as_uuid())
    .bind(attempt)
    .bind(carrier)
    .bind(carrier_ref)
    .bind(DeliveryState::Queued.as_str())
    .bind(usage_event.is_some())
    .bind(DeliveryState::Sent.as_str())
    .bind(&ids)
    .bind(&subjects)
    .bind(&envelopes)
    .bind(&tags)
    .bind(sent_event.traceparent.as_deref())
    .fetch_optional(connection)
    .await?;
    Ok(row.map(|(to_sent, usage_claimed)| AcceptedRecorded { to_sent, usage_claimed }))
}

/// Remembers the error a delivery will fail with if nothing better comes.
pub async fn set_last_error(tx: &mut PgConnection, id: DeliveryId, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE deliveries SET last_error = $2, updated_at = now() WHERE id = $1")
        .bind(id.as_uuid())
        .bind(error)
        .execute(tx)
        .await?;
    Ok(())
}

/// Records the user's answer; `digest` identifies the exact answer given.
pub async fn record_answer(
    tx: &mut PgConnection,
    id: DeliveryId,
    answer: Answer,
    digest: Option<&[u8]>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE deliveries SET answered_at = now(), answer_kind = $2, answer_digest = $3, updated_at = now() \
         WHERE id = $1",
    )
    .bind(id.as_uuid())
    .bind(answer.as_str())
    .bind(digest)
    .execute(tx)
    .await?;
    Ok(())
}

/// Claims the right to report a delivery's usage: `true` exactly once.
pub async fn claim_usage(tx: &mut PgConnection, id: DeliveryId) -> Result<bool, sqlx::Error> {
    let claimed =
        sqlx::query("UPDATE deliveries SET usage_reported_at = now() WHERE id = $1 AND usage_reported_at IS NULL")
            .bind(id.as_uuid())
            .execute(tx)
            .await?
            .rows_affected();
    Ok(claimed == 1)
}

/// The latest attempt at a delivery.
#[derive(Debug, sqlx::FromRow)]
pub struct Attempt {
    pub attempt: i32,
    pub outcome: String,
    pub started_at: DateTime<Utc>,
}

pub async fn latest_attempt(tx: &mut PgConnection, id: DeliveryId) -> Result<Option<Attempt>, sqlx::Error> {
    sqlx::query_as(
        "SELECT attempt, outcome, started_at FROM delivery_attempts WHERE delivery_id = $1 \
         ORDER BY attempt DESC LIMIT 1",
    )
    .bind(id.as_uuid())
    .fetch_optional(tx)
    .await
}

/// Records that try `attempt` at `carrier` is about to start, and counts it.
pub async fn begin_attempt(
    tx: &mut PgConnection,
    id: DeliveryId,
    attempt: i32,
    carrier: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO delivery_attempts (delivery_id, attempt, carrier, outcome) VALUES ($1, $2, $3, 'pending')",
    )
    .bind(id.as_uuid())
    .bind(attempt)
    .bind(carrier)
    .execute(&mut *tx)
    .await?;
    // The carrier being tried owns the delivery's callbacks from now on.
    sqlx::query("UPDATE deliveries SET attempts = attempts + 1, carrier = $2, updated_at = now() WHERE id = $1")
        .bind(id.as_uuid())
        .bind(carrier)
        .execute(tx)
        .await?;
    Ok(())
}

/// Settles a try: `accepted` with the carrier's reference, `failed` with an
/// error, or `unknown` when its outcome was lost.
pub async fn finish_attempt(
    tx: &mut PgConnection,
    id: DeliveryId,
    attempt: i32,
    outcome: &str,
    carrier_ref: Option<&str>,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE delivery_attempts SET outcome = $3, carrier_ref = $4, error = $5, finished_at = now() \
         WHERE delivery_id = $1 AND attempt = $2",
    )
    .bind(id.as_uuid())
    .bind(attempt)
    .bind(outcome)
    .bind(carrier_ref)
    .bind(error)
    .execute(tx)
    .await?;
    Ok(())
}

/// A callback received about a delivery (never its digits or body).
pub struct Callback<'a> {
    pub delivery: Option<DeliveryId>,
    pub carrier: &'a str,
    pub kind: &'a str,
    pub carrier_ref: Option<&'a str>,
    pub status: &'a str,
    pub detail: Option<&'a str>,
}

pub async fn record_callback(tx: &mut PgConnection, cb: &Callback<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO carrier_callbacks (id, delivery_id, carrier, kind, carrier_ref, status, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(Uuid::now_v7())
    .bind(cb.delivery.map(|d| d.as_uuid()))
    .bind(cb.carrier)
    .bind(cb.kind)
    .bind(cb.carrier_ref)
    .bind(cb.status)
    .bind(cb.detail)
    .execute(tx)
    .await?;
    Ok(())
}

/// Moves a delivery to `state`; `error`, when given, replaces the last error.
/// `attempts` adds send attempts made on the way.
pub async fn set_state(
    tx: &mut PgConnection,
    id: DeliveryId,
    state: DeliveryState,
    error: Option<&str>,
    attempts: u32,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE deliveries SET state = $2, last_error = COALESCE($3, last_error), \
         attempts = attempts + $4, updated_at = now() WHERE id = $1",
    )
    .bind(id.as_uuid())
    .bind(state.as_str())
    .bind(error)
    .bind(count(attempts))
    .execute(tx)
    .await?;
    Ok(())
}

/// A message a phone sent us.
pub struct InboundMessage<'a> {
    pub carrier_ref: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub body: &'a str,
    pub delivery: Option<DeliveryId>,
}

/// Records an inbound message; `false` if the carrier already delivered it.
pub async fn insert_inbound(tx: &mut PgConnection, msg: &InboundMessage<'_>) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO inbound_messages (id, carrier_ref, from_number, to_number, body, delivery_id) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (carrier_ref) DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(msg.carrier_ref)
    .bind(msg.from)
    .bind(msg.to)
    .bind(msg.body)
    .bind(msg.delivery.map(|d| d.as_uuid()))
    .execute(tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

fn count(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
