//! Monthly statements. A month's statement closes once `close_delay` has
//! passed after the month's end; it is written once and never changed (the
//! database refuses updates). Events that arrive after their month closed
//! are picked up by the next statement as adjustments: the month's usage
//! recomputed with everything known now, minus what was already billed for it.

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::{Connection, PgConnection, PgPool, Row};

use crate::{
    calendar::{month_bounds, month_name, month_of, next_month},
    ledger::{self, UsageModel},
    metering::{self, Quantities},
    rates::{self, Rates, as_string, decimal_column, money, round_money},
};

/// What a statement line charges for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Item {
    Authentications,
    EnabledUsers,
    SmsSegments,
    VoiceMinutes,
}

impl Item {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authentications => "authentications",
            Self::EnabledUsers => "enabled_users",
            Self::SmsSegments => "sms_segments",
            Self::VoiceMinutes => "voice_minutes",
        }
    }

    fn from_column(text: &str) -> Result<Self, sqlx::Error> {
        [
            Self::Authentications,
            Self::EnabledUsers,
            Self::SmsSegments,
            Self::VoiceMinutes,
        ]
        .into_iter()
        .find(|item| item.as_str() == text)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown statement item {text:?}").into()))
    }

    fn quantity(self, q: &Quantities) -> i64 {
        match self {
            Self::Authentications => q.billable_authentications,
            Self::EnabledUsers => q.enabled_users,
            Self::SmsSegments => q.sms_segments,
            Self::VoiceMinutes => q.voice_minutes,
        }
    }

    fn unit_price(self, rates: &Rates) -> Decimal {
        match self {
            Self::Authentications => rates.per_authentication,
            Self::EnabledUsers => rates.per_enabled_user_month,
            Self::SmsSegments => rates.per_sms_segment,
            Self::VoiceMinutes => rates.per_voice_minute,
        }
    }
}

/// What a provider of `model` is charged for: its model's unit, and telephony.
pub fn items(model: UsageModel) -> [Item; 3] {
    let unit = match model {
        UsageModel::PerAuthentication => Item::Authentications,
        UsageModel::PerEnabledUser => Item::EnabledUsers,
    };
    [unit, Item::SmsSegments, Item::VoiceMinutes]
}

/// One line: a quantity of an item for a month, priced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub item: Item,
    /// The month the quantity belongs to (`YYYY-MM`).
    pub for_period: String,
    /// An adjustment for an earlier, already closed month.
    pub adjustment: bool,
    pub quantity: i64,
    #[serde(serialize_with = "as_string")]
    pub unit_price: Decimal,
    /// `quantity × unit_price`, rounded to the cent (halves away from zero).
    #[serde(serialize_with = "money")]
    pub amount: Decimal,
}

fn line(item: Item, for_period: NaiveDate, adjustment: bool, quantity: i64, rates: &Rates) -> Line {
    let unit_price = item.unit_price(rates);
    Line {
        item,
        for_period: month_name(for_period),
        adjustment,
        quantity,
        unit_price,
        amount: round_money(Decimal::from(quantity) * unit_price),
    }
}

pub fn total(lines: &[Line]) -> Decimal {
    lines.iter().map(|l| l.amount).sum()
}

/// The month's own usage and its lines.
pub async fn own_lines(
    conn: &mut PgConnection,
    provider_id: &str,
    model: UsageModel,
    month: NaiveDate,
    rates: Option<&Rates>,
) -> Result<(Quantities, Vec<Line>), sqlx::Error> {
    let (from, to) = month_bounds(month).ok_or_else(|| out_of_calendar(month))?;
    let quantities = metering::quantities(conn, provider_id, from, to).await?;
    let lines = rates
        .map(|rates| {
            items(model)
                .into_iter()
                .map(|item| line(item, month, false, item.quantity(&quantities), rates))
                .collect()
        })
        .unwrap_or_default();
    Ok((quantities, lines))
}

fn out_of_calendar(month: NaiveDate) -> sqlx::Error {
    sqlx::Error::Protocol(format!("no month follows {month}"))
}

/// What was billed so far for `month`, per item, over every statement.
async fn billed(
    conn: &mut PgConnection,
    provider_id: &str,
    month: NaiveDate,
) -> Result<HashMap<Item, i64>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT item, sum(quantity)::bigint AS quantity FROM statement_lines \
         WHERE provider_id = $1 AND for_period = $2 GROUP BY item",
    )
    .bind(provider_id)
    .bind(month)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|row| Ok((Item::from_column(row.try_get("item")?)?, row.try_get("quantity")?)))
        .collect()
}

/// Adjustments for the months before `month` that late events changed.
async fn adjustments(
    conn: &mut PgConnection,
    provider_id: &str,
    model: UsageModel,
    month: NaiveDate,
    rates: &Rates,
) -> Result<Vec<Line>, sqlx::Error> {
    let (month_start, _) = month_bounds(month).ok_or_else(|| out_of_calendar(month))?;
    let earliest: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT min(occurred_at) FROM usage_ledger \
         WHERE provider_id = $1 AND statement_period IS NULL AND occurred_at < $2",
    )
    .bind(provider_id)
    .bind(month_start)
    .fetch_one(&mut *conn)
    .await?;
    let mut lines = Vec::new();
    let Some(earliest) = earliest else {
        return Ok(lines);
    };
    // A late user event can change every later month too, up to this one.
    let mut earlier = month_of(earliest);
    while earlier < month {
        let (from, to) = month_bounds(earlier).ok_or_else(|| out_of_calendar(earlier))?;
        let now_known = metering::quantities(conn, provider_id, from, to).await?;
        let billed = billed(conn, provider_id, earlier).await?;
        for item in items(model) {
            let difference = item.quantity(&now_known) - billed.get(&item).copied().unwrap_or(0);
            if difference != 0 {
                lines.push(line(item, earlier, true, difference, rates));
            }
        }
        earlier = next_month(earlier).ok_or_else(|| out_of_calendar(earlier))?;
    }
    Ok(lines)
}

/// Closes every statement that is due, for every provider; returns how many.
/// Failures for one provider are logged and do not stop the others.
pub async fn close_due(pool: &PgPool, now: DateTime<Utc>, delay: Duration) -> Result<usize, sqlx::Error> {
    let providers: Vec<String> = sqlx::query_scalar("SELECT provider_id FROM providers ORDER BY provider_id")
        .fetch_all(pool)
        .await?;
    let mut closed = 0;
    for provider_id in providers {
        match close_due_for(pool, &provider_id, now, delay).await {
            Ok(count) => closed += count,
            Err(error) => tracing::error!(%provider_id, error = %error, "could not close statements"),
        }
    }
    Ok(closed)
}

/// Closes the provider's due statements in month order. Replicas may race:
/// an advisory lock per provider serialises them, and each close re-reads
/// the last closed month under that lock.
pub async fn close_due_for(
    pool: &PgPool,
    provider_id: &str,
    now: DateTime<Utc>,
    delay: Duration,
) -> Result<usize, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let key = format!("vigil-billing-statements:{provider_id}");
    sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 0))")
        .bind(&key)
        .execute(&mut *conn)
        .await?;
    let mut closed = 0;
    let outcome = loop {
        match close_next(&mut conn, provider_id, now, delay).await {
            Ok(Some(month)) => {
                tracing::info!(%provider_id, period = %month_name(month), "statement closed");
                closed += 1;
            }
            Ok(None) => break Ok(closed),
            Err(error) => break Err(error),
        }
    };
    let unlocked = sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
        .bind(&key)
        .execute(&mut *conn)
        .await;
    if unlocked.is_err() {
        // Never hand a connection that may still hold the lock back to the pool.
        drop(conn.detach());
    }
    outcome
}

/// Closes the provider's next statement if it is due; the month closed.
async fn close_next(
    conn: &mut PgConnection,
    provider_id: &str,
    now: DateTime<Utc>,
    delay: Duration,
) -> Result<Option<NaiveDate>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    // One snapshot for reading usage and marking it accounted: an event
    // committed meanwhile is neither counted nor marked, so it is late.
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await?;
    let Some(info) = ledger::provider(&mut *tx, provider_id).await? else {
        return Ok(None);
    };
    let (Some(model), Some(created_at)) = (info.usage_model, info.created_at) else {
        return Ok(None);
    };
    let Some(rates) = rates::load(&mut *tx, provider_id).await? else {
        tracing::debug!(%provider_id, "no rates yet; statements wait for them");
        return Ok(None);
    };
    let last: Option<NaiveDate> = sqlx::query_scalar("SELECT max(period) FROM statements WHERE provider_id = $1")
        .bind(provider_id)
        .fetch_one(&mut *tx)
        .await?;
    let month = match last {
        Some(last) => next_month(last).ok_or_else(|| out_of_calendar(last))?,
        None => month_of(created_at),
    };
    let (_, month_end) = month_bounds(month).ok_or_else(|| out_of_calendar(month))?;
    let delay = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
    if month_end.checked_add_signed(delay).is_none_or(|due| now < due) {
        return Ok(None);
    }

    let (_, mut lines) = own_lines(&mut tx, provider_id, model, month, Some(&rates)).await?;
    lines.extend(adjustments(&mut tx, provider_id, model, month, &rates).await?);
    sqlx::query(
        "INSERT INTO statements (provider_id, period, usage_model, currency, total, closed_at) \
         VALUES ($1, $2, $3, $4, $5::numeric, $6)",
    )
    .bind(provider_id)
    .bind(month)
    .bind(model.as_str())
    .bind(&rates.currency)
    .bind(total(&lines).to_string())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    for (line_no, line) in (1_i32..).zip(&lines) {
        let for_period = crate::calendar::parse_month(&line.for_period).unwrap_or(month);
        sqlx::query(
            "INSERT INTO statement_lines (provider_id, period, line_no, item, for_period, quantity, unit_price, amount) \
             VALUES ($1, $2, $3, $4, $5, $6, $7::numeric, $8::numeric)",
        )
        .bind(provider_id)
        .bind(month)
        .bind(line_no)
        .bind(line.item.as_str())
        .bind(for_period)
        .bind(line.quantity)
        .bind(line.unit_price.to_string())
        .bind(line.amount.to_string())
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "UPDATE usage_ledger SET statement_period = $2 \
         WHERE provider_id = $1 AND statement_period IS NULL AND occurred_at < $3",
    )
    .bind(provider_id)
    .bind(month)
    .bind(month_end)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(month))
}

/// A closed statement in a list.
#[derive(Debug, Clone, Serialize)]
pub struct StatementSummary {
    pub period: String,
    pub usage_model: String,
    pub currency: String,
    #[serde(serialize_with = "money")]
    pub total: Decimal,
    pub closed_at: DateTime<Utc>,
}

/// A closed statement with its lines.
#[derive(Debug, Clone, Serialize)]
pub struct Statement {
    pub provider_id: String,
    pub status: &'static str,
    #[serde(flatten)]
    pub summary: StatementSummary,
    pub lines: Vec<Line>,
}

fn summary(row: &sqlx::postgres::PgRow) -> Result<StatementSummary, sqlx::Error> {
    let period: NaiveDate = row.try_get("period")?;
    Ok(StatementSummary {
        period: month_name(period),
        usage_model: row.try_get("usage_model")?,
        currency: row.try_get("currency")?,
        total: decimal_column(row.try_get("total")?)?,
        closed_at: row.try_get("closed_at")?,
    })
}

/// Closed statements after `after`, oldest first.
pub async fn list(
    pool: &PgPool,
    provider_id: &str,
    after: Option<NaiveDate>,
    limit: i64,
) -> Result<Vec<StatementSummary>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT period, usage_model, currency, total::text AS total, closed_at FROM statements \
         WHERE provider_id = $1 AND ($2::date IS NULL OR period > $2) ORDER BY period LIMIT $3",
    )
    .bind(provider_id)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(summary).collect()
}

/// One closed statement.
pub async fn get(pool: &PgPool, provider_id: &str, month: NaiveDate) -> Result<Option<Statement>, sqlx::Error> {
    let Some(row) = sqlx::query(
        "SELECT period, usage_model, currency, total::text AS total, closed_at FROM statements \
         WHERE provider_id = $1 AND period = $2",
    )
    .bind(provider_id)
    .bind(month)
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    let lines = sqlx::query(
        "SELECT item, for_period, quantity, unit_price::text AS unit_price, amount::text AS amount \
         FROM statement_lines WHERE provider_id = $1 AND period = $2 ORDER BY line_no",
    )
    .bind(provider_id)
    .bind(month)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|row| {
        let for_period: NaiveDate = row.try_get("for_period")?;
        Ok(Line {
            item: Item::from_column(row.try_get("item")?)?,
            for_period: month_name(for_period),
            adjustment: for_period != month,
            quantity: row.try_get("quantity")?,
            unit_price: decimal_column(row.try_get("unit_price")?)?,
            amount: decimal_column(row.try_get("amount")?)?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    Ok(Some(Statement {
        provider_id: provider_id.to_owned(),
        status: "closed",
        summary: summary(&row)?,
        lines,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_priced_to_the_cent() {
        let rates = Rates {
            currency: "EUR".into(),
            per_authentication: Decimal::new(375, 4),
            per_enabled_user_month: Decimal::new(1255, 3),
            per_sms_segment: Decimal::new(75, 4),
            per_voice_minute: Decimal::new(13, 3),
        };
        let month = NaiveDate::from_ymd_opt(2025, 2, 1).unwrap_or_default();
        // 123 × 0.0375 = 4.6125 → 4.61; 7 × 1.255 = 8.785 → 8.79; -3 × 1.255 = -3.765 → -3.77
        let a = line(Item::Authentications, month, false, 123, &rates);
        let u = line(Item::EnabledUsers, month, false, 7, &rates);
        let credit = line(Item::EnabledUsers, month, true, -3, &rates);
        assert_eq!(a.amount.to_string(), "4.61");
        assert_eq!(u.amount.to_string(), "8.79");
        assert_eq!(credit.amount.to_string(), "-3.77");
        assert_eq!(total(&[a, u, credit]).to_string(), "9.63");
        assert_eq!(items(UsageModel::PerEnabledUser)[0], Item::EnabledUsers);
        assert_eq!(items(UsageModel::PerAuthentication)[0], Item::Authentications);
    }
}
