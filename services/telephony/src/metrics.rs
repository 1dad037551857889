//! The telephony service's metrics: what carriers said to each try, and
//! where each delivery ended up.

use crate::{
    carrier::SendError,
    model::{Channel, Delivery, DeliveryState},
};

/// Counts one try at a carrier (or the push service) by how it answered.
pub fn attempt(channel: Channel, carrier: &str, outcome: Result<(), &SendError>) {
    let result = match outcome {
        Ok(()) => "accepted",
        Err(e) if e.request_invalid => "invalid_request",
        Err(e) if e.retryable => "temporary_error",
        Err(_) => "rejected",
    };
    metrics::counter!(
        "vigil_delivery_attempts_total",
        "channel" => channel.as_str(),
        "carrier" => carrier.to_owned(),
        "result" => result,
    )
    .increment(1);
}

/// Counts a delivery reaching `state` (sent, delivered, undelivered, failed),
/// once per delivery: call it where the move is announced.
pub fn delivery_state(delivery: &Delivery, state: DeliveryState) {
    let carrier = if delivery.carrier.is_empty() {
        "none"
    } else {
        delivery.carrier.as_str()
    };
    metrics::counter!(
        "vigil_deliveries_total",
        "channel" => delivery.channel.as_str(),
        "carrier" => carrier.to_owned(),
        "state" => state.as_str(),
    )
    .increment(1);
}
