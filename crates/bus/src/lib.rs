//! The bus every Vigil service uses from the start.
//!
//! - [`envelope`]: every message is a protobuf `Envelope` with a UUIDv7 id,
//!   published with that id as `Nats-Msg-Id` (JetStream de-duplication).
//! - [`streams`]: the JetStream streams, declared in one place.
//! - [`outbox`]: a state change and its events commit in one transaction and
//!   are relayed afterwards, so a crash between the two loses nothing.
//! - [`consumer`]: idempotent durable consumers; a redelivery never counts twice.
//! - [`rpc`]: NATS request/reply with deadlines for the latency-critical paths.
//! - [`trace`]: W3C `traceparent` in NATS headers, so one trace spans every hop.

pub mod consumer;
pub mod envelope;
pub mod error;
pub mod events;
pub mod outbox;
pub mod processed;
pub mod rpc;
pub mod schema;
pub mod streams;
pub mod subjects;
pub mod trace;

pub use consumer::{ConsumerSpec, Handler, HandlerError, Received};
pub use envelope::Event;
pub use error::BusError;
pub use outbox::{Outbox, OutboxRelay};

/// A fresh database with the bus's tables, for this crate's own tests.
#[cfg(test)]
pub(crate) async fn test_database(name: &str) -> anyhow::Result<(vigil_testkit::PgServer, sqlx::PgPool)> {
    vigil_testkit::init_test_logging();
    let pg = vigil_testkit::PgServer::start().await?;
    let pool = sqlx::PgPool::connect(&pg.create_database(name).await?).await?;
    schema::install(&pool).await?;
    Ok((pg, pool))
}
