//! A provider's prices: exact decimals (never floating point), one currency
//! for the provider's lifetime. Stored as PostgreSQL `NUMERIC`, moved as text.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use sqlx::{PgExecutor, Row};

/// Prices carry at most this many decimal places (0.000001).
const MAX_SCALE: u32 = 6;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RatesError {
    #[error("`currency` must be an ISO 4217 code of three capital letters, such as EUR")]
    Currency,
    #[error("`{field}` must be a decimal string such as \"0.05\" with at most 6 decimal places, from 0 to 1000000")]
    Price { field: &'static str },
}

/// Rates as the API receives them: every price a string, so no JSON number
/// (a float to most parsers) ever carries money.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatesInput {
    pub currency: String,
    pub per_authentication: String,
    pub per_enabled_user_month: String,
    pub per_sms_segment: String,
    pub per_voice_minute: String,
}

/// Validated rates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rates {
    pub currency: String,
    #[serde(serialize_with = "as_string")]
    pub per_authentication: Decimal,
    #[serde(serialize_with = "as_string")]
    pub per_enabled_user_month: Decimal,
    #[serde(serialize_with = "as_string")]
    pub per_sms_segment: Decimal,
    #[serde(serialize_with = "as_string")]
    pub per_voice_minute: Decimal,
}

pub fn as_string<S: serde::Serializer>(value: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&value.normalize().to_string())
}

/// Money in a statement: two decimal places, always.
pub fn money<S: serde::Serializer>(value: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{:.2}", round_money(*value)))
}

/// Rounds to the cent, halves away from zero (0.125 → 0.13, -0.125 → -0.13).
pub fn round_money(value: Decimal) -> Decimal {
    value.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

impl Rates {
    pub fn parse(input: &RatesInput) -> Result<Self, RatesError> {
        let currency = input.currency.trim();
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(RatesError::Currency);
        }
        Ok(Self {
            currency: currency.to_owned(),
            per_authentication: price(&input.per_authentication, "per_authentication")?,
            per_enabled_user_month: price(&input.per_enabled_user_month, "per_enabled_user_month")?,
            per_sms_segment: price(&input.per_sms_segment, "per_sms_segment")?,
            per_voice_minute: price(&input.per_voice_minute, "per_voice_minute")?,
        })
    }
}

fn price(text: &str, field: &'static str) -> Result<Decimal, RatesError> {
    let text = text.trim();
    // Plain digits and one point: no exponent, sign or thousands separators.
    let plain = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && text.bytes().filter(|&b| b == b'.').count() <= 1
        && !text.starts_with('.')
        && !text.ends_with('.');
    let value = plain
        .then(|| Decimal::from_str_exact(text).ok())
        .flatten()
        .ok_or(RatesError::Price { field })?;
    if value.scale() > MAX_SCALE || value > Decimal::from(1_000_000) {
        return Err(RatesError::Price { field });
    }
    Ok(value.normalize())
}

/// Reads a `NUMERIC` that was selected as text.
pub fn decimal_column(text: &str) -> Result<Decimal, sqlx::Error> {
    Decimal::from_str(text).map_err(|e| sqlx::Error::Decode(format!("numeric {text:?}: {e}").into()))
}

/// The provider's current rates, if any were set.
pub async fn load<'e>(db: impl PgExecutor<'e>, provider_id: &str) -> Result<Option<Rates>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT currency, per_authentication::text AS a, per_enabled_user_month::text AS u, \
           per_sms_segment::text AS s, per_voice_minute::text AS v \
         FROM rates WHERE provider_id = $1",
    )
    .bind(provider_id)
    .fetch_optional(db)
    .await?;
    row.map(|row| {
        Ok(Rates {
            currency: row.try_get("currency")?,
            per_authentication: decimal_column(row.try_get("a")?)?,
            per_enabled_user_month: decimal_column(row.try_get("u")?)?,
            per_sms_segment: decimal_column(row.try_get("s")?)?,
            per_voice_minute: decimal_column(row.try_get("v")?)?,
        })
    })
    .transpose()
}

/// Why rates could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the provider is billed in {0}; its currency cannot change")]
    CurrencyChange(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Sets the provider's rates. The currency is fixed by the first call.
pub async fn store(db: &sqlx::PgPool, provider_id: &str, rates: &Rates, now: DateTime<Utc>) -> Result<(), StoreError> {
    let stored = sqlx::query_scalar::<_, String>(
        "INSERT INTO rates (provider_id, currency, per_authentication, per_enabled_user_month, \
           per_sms_segment, per_voice_minute, updated_at) \
         VALUES ($1, $2, $3::numeric, $4::numeric, $5::numeric, $6::numeric, $7) \
         ON CONFLICT (provider_id) DO UPDATE SET \
           per_authentication = EXCLUDED.per_authentication, \
           per_enabled_user_month = EXCLUDED.per_enabled_user_month, \
           per_sms_segment = EXCLUDED.per_sms_segment, \
           per_voice_minute = EXCLUDED.per_voice_minute, \
           updated_at = EXCLUDED.updated_at \
         WHERE rates.currency = EXCLUDED.currency \
         RETURNING currency",
    )
    .bind(provider_id)
    .bind(&rates.currency)
    .bind(rates.per_authentication.to_string())
    .bind(rates.per_enabled_user_month.to_string())
    .bind(rates.per_sms_segment.to_string())
    .bind(rates.per_voice_minute.to_string())
    .bind(now)
    .fetch_optional(db)
    .await?;
    match stored {
        Some(_) => Ok(()),
        // The conflict's WHERE refused: another currency is on file.
        None => {
            let on_file = sqlx::query_scalar("SELECT currency FROM rates WHERE provider_id = $1")
                .bind(provider_id)
                .fetch_one(db)
                .await?;
            Err(StoreError::CurrencyChange(on_file))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(currency: &str, price: &str) -> RatesInput {
        RatesInput {
            currency: currency.into(),
            per_authentication: price.into(),
            per_enabled_user_month: "1.5".into(),
            per_sms_segment: "0.0075".into(),
            per_voice_minute: "0.013".into(),
        }
    }

    #[test]
    fn parses_exact_decimals() -> Result<(), RatesError> {
        let rates = Rates::parse(&input("EUR", "0.050"))?;
        assert_eq!(rates.per_authentication.to_string(), "0.05");
        assert_eq!(rates.per_sms_segment.to_string(), "0.0075");
        let json = serde_json::to_value(&rates).map_err(|_| RatesError::Currency)?;
        assert_eq!(json["per_authentication"], "0.05");
        assert_eq!(json["per_enabled_user_month"], "1.5");
        Ok(())
    }

    #[test]
    fn refuses_what_is_not_a_plain_price() {
        for bad in [
            "",
            "-1",
            "1e3",
            "0.0000001",
            "abc",
            ".5",
            "5.",
            "1,5",
            "1000000.01",
            "NaN",
            "+1",
        ] {
            assert_eq!(
                Rates::parse(&input("EUR", bad)),
                Err(RatesError::Price {
                    field: "per_authentication"
                }),
                "{bad}"
            );
        }
        for bad in ["eur", "EURO", "", "E1R"] {
            assert_eq!(Rates::parse(&input(bad, "1")), Err(RatesError::Currency), "{bad}");
        }
    }

    #[test]
    fn rounds_money_half_away_from_zero() {
        let d = |s: &str| Decimal::from_str_exact(s).unwrap_or_default();
        assert_eq!(round_money(d("0.125")), d("0.13"));
        assert_eq!(round_money(d("0.124999")), d("0.12"));
        assert_eq!(round_money(d("-0.125")), d("-0.13"));
    }
}
