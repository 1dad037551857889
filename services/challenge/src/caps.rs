//! Toll-fraud caps: a provider sends at most so many SMS and voice calls per
//! destination prefix (country code and first digits) per clock hour. Past a
//! cap the challenge is not created, nothing is sent, and the agent is told
//! `delivery_capped` at once.
//!
//! Counted here, in the transaction that enqueues the delivery request, so
//! each delivery counts exactly once: a rolled-back start counts nothing,
//! and telephony's retries and failovers of one request are one delivery.
//! The count is one conditional upsert on a row per provider, channel,
//! prefix and hour, shared by every replica.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use vigil_core::PhoneNumber;
use vigil_proto::rpc::DeliveryCaps;

/// The caps when the gateway sends none; its defaults for a new provider.
pub const DEFAULT: DeliveryCaps = DeliveryCaps {
    sms_per_hour: 100,
    voice_per_hour: 50,
    prefix_digits: 4,
};

/// A cap that was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capped {
    pub channel: String,
    pub prefix: String,
    pub cap: u32,
}

impl Capped {
    pub fn message(&self) -> String {
        let what = if self.channel == "voice" { "calls" } else { "SMS" };
        format!(
            "the provider's limit of {} {what} per hour to numbers starting {} is reached; nothing was sent",
            self.cap, self.prefix
        )
    }
}

/// `+` and the first `digits` digits of the number.
pub fn prefix(phone: &PhoneNumber, digits: u32) -> String {
    let digits = usize::try_from(digits.clamp(1, 15)).unwrap_or(15);
    let number = phone.as_str().trim_start_matches('+');
    format!("+{}", number.get(..digits).unwrap_or(number))
}

/// Counts one delivery on `channel` ("sms" or "voice") to `phone`, or
/// returns the cap it would exceed (counting nothing).
pub async fn take(
    tx: &mut PgConnection,
    provider: &str,
    channel: &str,
    phone: &PhoneNumber,
    caps: Option<&DeliveryCaps>,
    now: DateTime<Utc>,
) -> Result<Option<Capped>, sqlx::Error> {
    let caps = caps.unwrap_or(&DEFAULT);
    let cap = if channel == "voice" {
        caps.voice_per_hour
    } else {
        caps.sms_per_hour
    };
    if cap == 0 {
        return Ok(None);
    }
    let prefix = prefix(phone, caps.prefix_digits);
    // No row comes back when the hour's row is already at the cap.
    let counted: Option<i32> = sqlx::query_scalar(
        "INSERT INTO delivery_caps AS d (provider_id, channel, prefix, hour, count)
         VALUES ($1, $2, $3, date_trunc('hour', $4::timestamptz), 1)
         ON CONFLICT (provider_id, channel, prefix, hour) DO UPDATE SET count = d.count + 1
         WHERE d.count < $5
         RETURNING count",
    )
    .bind(provider)
    .bind(channel)
    .bind(&prefix)
    .bind(now)
    .bind(i64::from(cap))
    .fetch_optional(tx)
    .await?;
    if counted.is_some() {
        return Ok(None);
    }
    tracing::warn!(
        provider_id = provider,
        channel,
        prefix,
        cap,
        "delivery cap reached; nothing sent"
    );
    Ok(Some(Capped {
        channel: channel.to_owned(),
        prefix,
        cap,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_the_first_digits() {
        let phone = PhoneNumber::parse("+44 20 7946 0018").unwrap_or_else(|_| unreachable!());
        assert_eq!(prefix(&phone, 4), "+4420");
        assert_eq!(prefix(&phone, 2), "+44");
        assert_eq!(prefix(&phone, 0), "+4", "at least one digit");
        assert_eq!(prefix(&phone, 15), "+442079460018", "never past the number");
    }

    #[test]
    fn the_message_names_channel_cap_and_prefix() {
        let capped = Capped {
            channel: "voice".into(),
            prefix: "+882".into(),
            cap: 5,
        };
        assert_eq!(
            capped.message(),
            "the provider's limit of 5 calls per hour to numbers starting +882 is reached; nothing was sent"
        );
    }
}
