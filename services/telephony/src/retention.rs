//! What telephony forgets, and when (see [`vigil_runtime::retention`]): a
//! delivery with its attempts, its carrier's reports and the replies to it,
//! together; then reports and replies that matched no delivery. Billing
//! keeps what a delivery cost in its own ledger, so nothing billed is lost.

use vigil_runtime::retention::Rule;

use crate::config::Config;

pub fn rules(config: &Config) -> Vec<Rule> {
    let days = config.delivery_retention_days;
    vec![
        // The children first, in the same statement: their foreign keys
        // name the delivery (an index on each keeps these lookups short).
        // The batch is picked once, as an array (see `Rule::rows`).
        Rule::days(
            "deliveries",
            days,
            "WITH doomed AS (
               SELECT ARRAY (
                 SELECT id FROM deliveries WHERE id < $2 AND created_at < $1
                 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) AS ids
             ), attempts AS (
               DELETE FROM delivery_attempts WHERE delivery_id = ANY ((SELECT ids FROM doomed)::uuid[])
             ), callbacks AS (
               DELETE FROM carrier_callbacks WHERE delivery_id = ANY ((SELECT ids FROM doomed)::uuid[])
             ), replies AS (
               DELETE FROM inbound_messages WHERE delivery_id = ANY ((SELECT ids FROM doomed)::uuid[])
             )
             DELETE FROM deliveries WHERE id = ANY ((SELECT ids FROM doomed)::uuid[])",
        ),
        Rule::rows("carrier_callbacks", days, "received_at", " AND delivery_id IS NULL"),
        Rule::rows("inbound_messages", days, "received_at", " AND delivery_id IS NULL"),
    ]
}
