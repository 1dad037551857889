//! The service's tables: `deliveries` and `inbound_messages`. Every function
//! runs on the caller's transaction, so a state change and the events it
//! causes commit together.

use sqlx::PgConnection;
use uuid::Uuid;
use vigil_core::DeliveryId;

use crate::model::{Channel, Delivery, DeliveryState};

/// The columns [`DeliveryRow`] reads.
const DELIVERY_COLUMNS: &str = "id, provider_id, challenge_id, channel, state, carrier, carrier_ref";

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: Uuid,
    provider_id: String,
    challenge_id: String,
    channel: String,
    state: String,
    carrier: String,
    carrier_ref: Option<String>,
}

impl TryFrom<DeliveryRow> for Delivery {
    type Error = sqlx::Error;

    fn try_from(row: DeliveryRow) -> Result<Self, Self::Error> {
        let corrupt = |column: &str, value: &str| {
            sqlx::Error::Decode(format!("deliveries.{column} holds unknown value {value:?}").into())
        };
        Ok(Self {
            id: DeliveryId::from_uuid(row.id),
            channel: Channel::parse(&row.channel).ok_or_else(|| corrupt("channel", &row.channel))?,
            state: DeliveryState::parse(&row.state).ok_or_else(|| corrupt("state", &row.state))?,
            provider_id: row.provider_id,
            challenge_id: row.challenge_id,
            carrier: row.carrier,
            carrier_ref: row.carrier_ref,
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
}

/// Records a delivery in state `queued` unless it is already recorded.
pub async fn insert_delivery(tx: &mut PgConnection, new: &NewDelivery<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO deliveries (id, provider_id, challenge_id, channel, destination, state, carrier) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
    )
    .bind(new.id.as_uuid())
    .bind(new.provider_id)
    .bind(new.challenge_id)
    .bind(new.channel.as_str())
    .bind(new.destination)
    .bind(DeliveryState::Queued.as_str())
    .bind(new.carrier)
    .execute(tx)
    .await?;
    Ok(())
}

/// Reads a delivery and locks it until the transaction ends, so concurrent
/// handlers and callbacks for the same delivery take turns.
pub async fn lock_delivery(tx: &mut PgConnection, id: DeliveryId) -> Result<Option<Delivery>, sqlx::Error> {
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1 FOR UPDATE");
    let row: Option<DeliveryRow> = sqlx::query_as(&sql).bind(id.as_uuid()).fetch_optional(tx).await?;
    row.map(Delivery::try_from).transpose()
}

/// Like [`lock_delivery`], by the carrier's message id.
pub async fn lock_by_carrier_ref(tx: &mut PgConnection, carrier_ref: &str) -> Result<Option<Delivery>, sqlx::Error> {
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE carrier_ref = $1 FOR UPDATE");
    let row: Option<DeliveryRow> = sqlx::query_as(&sql).bind(carrier_ref).fetch_optional(tx).await?;
    row.map(Delivery::try_from).transpose()
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

/// The carrier accepted the message after `attempts` tries.
pub async fn record_sent(
    tx: &mut PgConnection,
    id: DeliveryId,
    carrier_ref: &str,
    attempts: u32,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE deliveries SET state = $2, carrier_ref = $3, attempts = attempts + $4, updated_at = now() \
         WHERE id = $1",
    )
    .bind(id.as_uuid())
    .bind(DeliveryState::Sent.as_str())
    .bind(carrier_ref)
    .bind(count(attempts))
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
