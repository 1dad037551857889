//! `TelephonyUsage`: the cost side of a delivery, reported exactly once
//! (guarded by `deliveries.usage_reported_at` in the same transaction).

use sqlx::PgConnection;
use vigil_bus::{BusError, Outbox};
use vigil_proto::events::{self as wire, TelephonyUsage};

use crate::{db, model::Delivery};

/// Queues the usage of `delivery` unless it was reported before.
pub async fn report(
    tx: &mut PgConnection,
    outbox: &Outbox,
    delivery: &Delivery,
    carrier: &str,
    sms_segments: u32,
    voice_seconds: u32,
) -> Result<(), UsageError> {
    if !db::claim_usage(tx, delivery.id).await? {
        return Ok(());
    }
    outbox
        .enqueue(
            tx,
            &delivery.provider_id,
            &event(delivery, carrier, sms_segments, voice_seconds),
        )
        .await?;
    Ok(())
}

/// The usage event of `delivery`, for a caller that claimed it itself.
pub fn event(delivery: &Delivery, carrier: &str, sms_segments: u32, voice_seconds: u32) -> TelephonyUsage {
    TelephonyUsage {
        delivery_id: delivery.id.to_string(),
        challenge_id: delivery.challenge_id.clone(),
        channel: wire::Channel::from(delivery.channel).into(),
        destination_country: country_of(&delivery.destination).unwrap_or_default().to_owned(),
        carrier: carrier.to_owned(),
        sms_segments,
        voice_seconds,
        occurred_at: Some(vigil_proto::to_timestamp(std::time::SystemTime::now())),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Outbox(#[from] BusError),
}

/// Calling codes of common destinations, longest first where they nest.
/// `+1` is the whole North American plan; it is reported as `US`.
const COUNTRY_CODES: &[(&str, &str)] = &[
    ("1", "US"),
    ("7", "RU"),
    ("20", "EG"),
    ("27", "ZA"),
    ("30", "GR"),
    ("31", "NL"),
    ("32", "BE"),
    ("33", "FR"),
    ("34", "ES"),
    ("36", "HU"),
    ("39", "IT"),
    ("40", "RO"),
    ("41", "CH"),
    ("43", "AT"),
    ("44", "GB"),
    ("45", "DK"),
    ("46", "SE"),
    ("47", "NO"),
    ("48", "PL"),
    ("49", "DE"),
    ("51", "PE"),
    ("52", "MX"),
    ("54", "AR"),
    ("55", "BR"),
    ("56", "CL"),
    ("57", "CO"),
    ("60", "MY"),
    ("61", "AU"),
    ("62", "ID"),
    ("63", "PH"),
    ("64", "NZ"),
    ("65", "SG"),
    ("66", "TH"),
    ("81", "JP"),
    ("82", "KR"),
    ("84", "VN"),
    ("86", "CN"),
    ("90", "TR"),
    ("91", "IN"),
    ("92", "PK"),
    ("234", "NG"),
    ("254", "KE"),
    ("351", "PT"),
    ("352", "LU"),
    ("353", "IE"),
    ("358", "FI"),
    ("420", "CZ"),
    ("852", "HK"),
    ("886", "TW"),
    ("966", "SA"),
    ("971", "AE"),
    ("972", "IL"),
];

/// ISO 3166-1 alpha-2 of an E.164 number's calling code, when known.
pub fn country_of(e164: &str) -> Option<&'static str> {
    let digits = e164.strip_prefix('+')?;
    COUNTRY_CODES
        .iter()
        .filter(|(code, _)| digits.starts_with(code))
        .max_by_key(|(code, _)| code.len())
        .map(|(_, country)| *country)
}

#[cfg(test)]
mod tests {
    use super::country_of;

    #[test]
    fn maps_calling_codes_longest_first() {
        assert_eq!(country_of("+15551234567"), Some("US"));
        assert_eq!(country_of("+447700900123"), Some("GB"));
        assert_eq!(country_of("+353861234567"), Some("IE"));
        assert_eq!(country_of("+4915112345678"), Some("DE"));
        assert_eq!(country_of("+97150123456"), Some("AE"));
        assert_eq!(country_of("+99912345678"), None);
        assert_eq!(country_of("sim-token-abc"), None, "push tokens have no country");
    }
}
