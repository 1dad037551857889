//! Both usage models over a generated month of events, with duplicates,
//! out-of-order delivery and late events, against an expectation computed
//! here independently (integer arithmetic, interval overlap), to the cent.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use vigil_bus::{Event, envelope::wrap};
use vigil_core::{ChallengeId, DeliveryId, ProviderId, UserId};
use vigil_proto::{
    events::{
        AuthenticationKind, AuthenticationUsage, Channel, Envelope, TelephonyUsage, UserCreated, UserDeleted,
        UserStatusChanged,
    },
    to_timestamp, v1,
};
use vigil_testkit::wait_until;

use crate::support::{Billing, PATIENCE, Rng, Stack, TOKEN, local, utc};

/// Prices in ten-thousandths: 0.0375 per authentication, 12.55 per enabled
/// user-month, 0.0075 per SMS segment, 0.013 per voice minute.
const PER_AUTH: i64 = 375;
const PER_USER: i64 = 125_500;
const PER_SEGMENT: i64 = 75;
const PER_MINUTE: i64 = 130;

fn rates() -> Value {
    json!({
        "currency": "EUR",
        "per_authentication": "0.0375",
        "per_enabled_user_month": "12.55",
        "per_sms_segment": "0.0075",
        "per_voice_minute": "0.013",
    })
}

/// `quantity × price` (price in ten-thousandths) in cents, halves away from zero.
fn cents(quantity: i64, price: i64) -> i64 {
    let tenths_of_cents_x10 = quantity * price; // 1/10000 of the currency
    let sign = tenths_of_cents_x10.signum();
    sign * ((tenths_of_cents_x10.abs() + 50) / 100)
}

fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

/// A usage event as the test knows it, besides its envelope.
#[derive(Clone)]
enum Fact {
    Auth {
        at: DateTime<Utc>,
        billable: bool,
    },
    Telephony {
        at: DateTime<Utc>,
        segments: i64,
        seconds: i64,
    },
    User {
        user: String,
        at: DateTime<Utc>,
        status: Status,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Status {
    Enabled,
    Disabled,
    Blocked,
    Deleted,
}

/// Month quantities by the test's own reckoning.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
struct Month {
    auths: i64,
    segments: i64,
    minutes: i64,
    users: i64,
}

fn month_start(y: i32, m: u32) -> DateTime<Utc> {
    utc(y, m, 1, 0, 0, 0).unwrap_or_default()
}

/// Sums the facts falling in `[from, to)`; users by interval overlap.
fn reckon(facts: &[Fact], from: DateTime<Utc>, to: DateTime<Utc>) -> Month {
    let mut month = Month::default();
    let mut histories: BTreeMap<&str, Vec<(DateTime<Utc>, Status)>> = BTreeMap::new();
    for fact in facts {
        match fact {
            Fact::Auth { at, billable } if *at >= from && *at < to && *billable => month.auths += 1,
            Fact::Telephony { at, segments, seconds } if *at >= from && *at < to => {
                month.segments += segments;
                month.minutes += (seconds + 59) / 60;
            }
            Fact::User { user, at, status } => histories.entry(user).or_default().push((*at, *status)),
            _ => {}
        }
    }
    for events in histories.values_mut() {
        events.sort_by_key(|(at, _)| *at);
        // Each status holds from its event to the next one (or forever).
        let enabled = events.iter().enumerate().any(|(i, (start, status))| {
            let end = events.get(i + 1).map(|(at, _)| *at).unwrap_or(DateTime::<Utc>::MAX_UTC);
            *status == Status::Enabled && (*start).max(from) < end.min(to)
        });
        month.users += i64::from(enabled);
    }
    month
}

/// The lines the test expects: `(item, for_period, quantity, amount)`.
type Lines = BTreeSet<(String, String, i64, String)>;

fn own_lines(per_user_model: bool, period: &str, m: Month) -> Lines {
    let (unit, quantity, price) = if per_user_model {
        ("enabled_users", m.users, PER_USER)
    } else {
        ("authentications", m.auths, PER_AUTH)
    };
    [
        (unit, quantity, price),
        ("sms_segments", m.segments, PER_SEGMENT),
        ("voice_minutes", m.minutes, PER_MINUTE),
    ]
    .into_iter()
    .map(|(item, quantity, price)| {
        (
            item.to_owned(),
            period.to_owned(),
            quantity,
            money(cents(quantity, price)),
        )
    })
    .collect()
}

fn adjustment_lines(per_user_model: bool, period: &str, now: Month, billed: Month) -> Lines {
    let diff = Month {
        auths: now.auths - billed.auths,
        segments: now.segments - billed.segments,
        minutes: now.minutes - billed.minutes,
        users: now.users - billed.users,
    };
    own_lines(per_user_model, period, diff)
        .into_iter()
        .filter(|(_, _, quantity, _)| *quantity != 0)
        .collect()
}

fn total(lines: &Lines) -> String {
    money(
        lines
            .iter()
            .map(|(_, _, _, amount)| {
                let negative = amount.starts_with('-');
                let digits: i64 = amount.replace(['-', '.'], "").parse().unwrap_or(0);
                if negative { -digits } else { digits }
            })
            .sum(),
    )
}

fn served_lines(statement: &Value) -> Lines {
    statement["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            (
                l["item"].as_str().unwrap_or_default().to_owned(),
                l["for_period"].as_str().unwrap_or_default().to_owned(),
                l["quantity"].as_i64().unwrap_or(i64::MIN),
                l["amount"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// A random instant in `[from, to)`, whole seconds.
fn instant(rng: &mut Rng, from: DateTime<Utc>, to: DateTime<Utc>) -> DateTime<Utc> {
    let span = u64::try_from((to - from).num_seconds()).unwrap_or(1);
    from + Duration::seconds(i64::try_from(rng.below(span)).unwrap_or(0))
}

fn auth(provider: &str, rng: &mut Rng, at: DateTime<Utc>, facts: &mut Vec<Fact>) -> Envelope {
    let kind = match rng.below(10) {
        0 => AuthenticationKind::TrustedNetwork,
        1 => AuthenticationKind::Bypass,
        2 => AuthenticationKind::Remembered,
        _ => AuthenticationKind::Challenge,
    };
    let billable = kind == AuthenticationKind::Challenge;
    facts.push(Fact::Auth { at, billable });
    let event = AuthenticationUsage {
        challenge_id: ChallengeId::new().to_string(),
        user_id: UserId::new().to_string(),
        factor: v1::Factor::Sms as i32,
        occurred_at: Some(to_timestamp(at.into())),
        kind: kind as i32,
        billable,
    };
    wrap(provider, &event, at.into())
}

fn telephony(provider: &str, rng: &mut Rng, at: DateTime<Utc>, facts: &mut Vec<Fact>) -> Envelope {
    let voice = rng.chance(40);
    let (segments, seconds) = if voice {
        (0, i64::try_from(rng.below(300)).unwrap_or(0))
    } else {
        (i64::try_from(1 + rng.below(4)).unwrap_or(1), 0)
    };
    facts.push(Fact::Telephony { at, segments, seconds });
    let event = TelephonyUsage {
        delivery_id: DeliveryId::new().to_string(),
        challenge_id: ChallengeId::new().to_string(),
        channel: if voice { Channel::Voice } else { Channel::Sms } as i32,
        destination_country: ["US", "GB", "DE"][usize::try_from(rng.below(3)).unwrap_or(0)].into(),
        carrier: "twilio-primary".into(),
        sms_segments: u32::try_from(segments).unwrap_or(0),
        voice_seconds: u32::try_from(seconds).unwrap_or(0),
        occurred_at: Some(to_timestamp(at.into())),
    };
    wrap(provider, &event, at.into())
}

fn wire_status(status: Status) -> i32 {
    match status {
        Status::Enabled => v1::UserStatus::Enabled as i32,
        Status::Disabled => v1::UserStatus::Disabled as i32,
        Status::Blocked | Status::Deleted => v1::UserStatus::BlockedForFraud as i32,
    }
}

/// One user's events: created, then status changes, perhaps deleted.
fn user_events(
    provider: &str,
    user: &str,
    steps: &[(DateTime<Utc>, Status)],
    facts: &mut Vec<Fact>,
) -> Vec<(&'static str, Envelope)> {
    let mut envelopes = Vec::new();
    let mut previous: Option<Status> = None;
    for &(at, status) in steps {
        facts.push(Fact::User {
            user: user.to_owned(),
            at,
            status,
        });
        let time = Some(to_timestamp(at.into()));
        let envelope = match (previous, status) {
            (_, Status::Deleted) => (
                UserDeleted::SUBJECT,
                wrap(
                    provider,
                    &UserDeleted {
                        user_id: user.to_owned(),
                        occurred_at: time,
                    },
                    at.into(),
                ),
            ),
            (None, _) => (
                UserCreated::SUBJECT,
                wrap(
                    provider,
                    &UserCreated {
                        user_id: user.to_owned(),
                        status: wire_status(status),
                        occurred_at: time,
                    },
                    at.into(),
                ),
            ),
            (Some(before), _) => (
                UserStatusChanged::SUBJECT,
                wrap(
                    provider,
                    &UserStatusChanged {
                        user_id: user.to_owned(),
                        previous: wire_status(before),
                        status: wire_status(status),
                        occurred_at: time,
                    },
                    at.into(),
                ),
            ),
        };
        envelopes.push(envelope);
        previous = Some(status);
    }
    envelopes
}

fn random_history(rng: &mut Rng) -> Vec<(DateTime<Utc>, Status)> {
    let mut at = instant(rng, utc(2025, 1, 10, 0, 0, 0).unwrap_or_default(), month_start(2025, 3));
    let mut status = if rng.chance(70) {
        Status::Enabled
    } else {
        Status::Disabled
    };
    let mut steps = vec![(at, status)];
    for _ in 0..rng.below(5) {
        at += Duration::seconds(i64::try_from(1 + rng.below(20 * 24 * 3600)).unwrap_or(1));
        if at >= utc(2025, 3, 19, 0, 0, 0).unwrap_or_default() {
            break;
        }
        let next = match rng.below(10) {
            0 => Status::Deleted,
            1..=2 => Status::Blocked,
            3..=6 => Status::Enabled,
            _ => Status::Disabled,
        };
        if next == status {
            continue;
        }
        status = next;
        steps.push((at, status));
        if status == Status::Deleted {
            break;
        }
    }
    steps
}

/// Publishes every envelope in a shuffled order, re-publishing some under a
/// fresh `Nats-Msg-Id` so JetStream delivers them twice.
async fn publish_all(stack: &Stack, rng: &mut Rng, mut envelopes: Vec<(&'static str, Envelope)>) -> anyhow::Result<()> {
    let duplicates: Vec<_> = envelopes.iter().filter(|_| rng.chance(10)).cloned().collect();
    envelopes.extend(duplicates);
    rng.shuffle(&mut envelopes);
    let mut seen = BTreeSet::new();
    for (subject, envelope) in &envelopes {
        let msg_id = if seen.insert(envelope.id.clone()) {
            None
        } else {
            Some(format!("again-{}", envelope.id))
        };
        stack.publish(subject, envelope, msg_id.as_deref()).await?;
    }
    Ok(())
}

async fn statement(stack: &Stack, billing: &Billing, provider: &str, period: &str) -> anyhow::Result<Value> {
    let path = format!("/v1/providers/{provider}/statements/{period}");
    wait_until(PATIENCE, &format!("statement {period} of {provider}"), || async {
        let (status, body) = stack.get(billing, &path, &[], Some(TOKEN)).await?;
        anyhow::Ok((status == StatusCode::OK).then_some(body))
    })
    .await
}

fn check(statement: &Value, expected: &Lines) {
    assert_eq!(&served_lines(statement), expected, "{statement:#}");
    assert_eq!(statement["total"], json!(total(expected)), "{statement:#}");
    assert_eq!(statement["currency"], "EUR");
    assert_eq!(statement["status"], "closed");
}

#[tokio::test]
async fn statements_match_an_independent_reckoning_to_the_cent() -> anyhow::Result<()> {
    local(async {
        let stack = Stack::start().await?;
        let billing = Billing::start(&stack).await?;
        let mut rng = Rng::new(0x5eed_b111);
        let (a, b) = (ProviderId::new().to_string(), ProviderId::new().to_string());
        let created = utc(2025, 1, 15, 0, 0, 0)?;
        stack
            .create_provider_at(&a, v1::UsageModel::PerAuthentication, created)
            .await?;
        stack
            .create_provider_at(&b, v1::UsageModel::PerEnabledUser, created)
            .await?;
        let (feb, mar, apr) = (month_start(2025, 2), month_start(2025, 3), month_start(2025, 4));

        // A, per authentication: February, with a day either side, and both edges.
        let (mut a_facts, mut a_envelopes) = (Vec::new(), Vec::new());
        let mut times: Vec<_> = (0..400)
            .map(|_| instant(&mut rng, feb - Duration::days(1), mar + Duration::days(1)))
            .collect();
        times.extend([feb, mar, mar - Duration::seconds(1)]);
        for at in times {
            a_envelopes.push((AuthenticationUsage::SUBJECT, auth(&a, &mut rng, at, &mut a_facts)));
            if rng.chance(30) {
                a_envelopes.push((TelephonyUsage::SUBJECT, telephony(&a, &mut rng, at, &mut a_facts)));
            }
        }
        // B, per enabled user: 40 users' histories from January to March, and
        // one user enabled on 12 January with nothing after (yet).
        let (mut b_facts, mut b_envelopes) = (Vec::new(), Vec::new());
        for _ in 0..40 {
            let user = UserId::new().to_string();
            let history = random_history(&mut rng);
            b_envelopes.extend(user_events(&b, &user, &history, &mut b_facts));
        }
        let steady = UserId::new().to_string();
        b_envelopes.extend(user_events(
            &b,
            &steady,
            &[(utc(2025, 1, 12, 8, 0, 0)?, Status::Enabled)],
            &mut b_facts,
        ));
        for _ in 0..30 {
            let at = instant(&mut rng, feb, mar);
            b_envelopes.push((TelephonyUsage::SUBJECT, telephony(&b, &mut rng, at, &mut b_facts)));
        }
        publish_all(&stack, &mut rng, a_envelopes).await?;
        publish_all(&stack, &mut rng, b_envelopes).await?;
        stack.wait_all_drained().await?;

        // The usage API agrees with the reckoning before any statement.
        let feb_range = [("from", "2025-02-01T00:00:00Z"), ("to", "2025-03-01T00:00:00Z")];
        let feb_a = reckon(&a_facts, feb, mar);
        let (_, usage) = stack.usage(&billing, &a, &feb_range).await?;
        assert_eq!(usage["billable_authentications"], feb_a.auths, "{usage}");
        assert_eq!(usage["sms_segments"], feb_a.segments, "{usage}");
        assert_eq!(usage["voice_minutes"], feb_a.minutes, "{usage}");
        let feb_b = reckon(&b_facts, feb, mar);
        let (_, usage) = stack.usage(&billing, &b, &feb_range).await?;
        assert_eq!(usage["enabled_users"], feb_b.users, "{usage}");
        let daily = [("granularity", "day"), feb_range[0], feb_range[1]];
        let (_, series) = stack
            .get(
                &billing,
                &format!("/v1/providers/{a}/usage/series"),
                &daily,
                Some(TOKEN),
            )
            .await?;
        let buckets = series["buckets"].as_array().context("buckets")?;
        assert_eq!(buckets.len(), 28);
        let per_day: i64 = buckets
            .iter()
            .filter_map(|b| b["billable_authentications"].as_i64())
            .sum();
        assert_eq!(per_day, feb_a.auths);
        let (_, users) = stack
            .get(
                &billing,
                &format!("/v1/providers/{b}/usage/users"),
                &[feb_range[0], feb_range[1], ("limit", "1000")],
                Some(TOKEN),
            )
            .await?;
        let enabled = users["items"]
            .as_array()
            .context("items")?
            .iter()
            .filter(|u| u["enabled"] == true)
            .count();
        assert_eq!(i64::try_from(enabled)?, feb_b.users);

        // Rates let January and February close (now is 20 March, the delay two days).
        stack.put_rates(&billing, &a, &rates()).await?;
        stack.put_rates(&billing, &b, &rates()).await?;
        let mut closed = BTreeMap::new();
        for (provider, facts, per_user) in [(&a, &a_facts, false), (&b, &b_facts, true)] {
            for (period, from, to) in [("2025-01", month_start(2025, 1), feb), ("2025-02", feb, mar)] {
                let served = statement(&stack, &billing, provider, period).await?;
                check(&served, &own_lines(per_user, period, reckon(facts, from, to)));
                closed.insert((provider.clone(), period), served);
            }
        }
        let (_, march) = stack
            .get(
                &billing,
                &format!("/v1/providers/{a}/statements/2025-03"),
                &[],
                Some(TOKEN),
            )
            .await?;
        assert_eq!(march["error"]["code"], "statement_not_found", "March is still open");

        // Late events: after their month's statement closed.
        let billed_a = a_facts.clone();
        let billed_b = b_facts.clone();
        let mut late_a = Vec::new();
        for day in [3, 9, 17, 25, 27, 28] {
            let at = utc(2025, 2, day, 13, 0, 0)?;
            late_a.push((AuthenticationUsage::SUBJECT, auth(&a, &mut rng, at, &mut a_facts)));
            late_a.push((TelephonyUsage::SUBJECT, telephony(&a, &mut rng, at, &mut a_facts)));
        }
        late_a.push((
            AuthenticationUsage::SUBJECT,
            auth(&a, &mut rng, utc(2025, 1, 31, 9, 0, 0)?, &mut a_facts),
        ));
        let mut late_b = user_events(
            &b,
            &UserId::new().to_string(),
            &[(utc(2025, 2, 10, 0, 0, 0)?, Status::Enabled)],
            &mut b_facts,
        );
        late_b.extend(user_events(
            &b,
            &UserId::new().to_string(),
            &[
                (utc(2025, 2, 5, 0, 0, 0)?, Status::Enabled),
                (utc(2025, 2, 6, 0, 0, 0)?, Status::Deleted),
            ],
            &mut b_facts,
        ));
        // The steady user was in fact disabled on 20 January: a credit for February.
        b_facts.push(Fact::User {
            user: steady.clone(),
            at: utc(2025, 1, 20, 0, 0, 0)?,
            status: Status::Disabled,
        });
        let disable = UserStatusChanged {
            user_id: steady.clone(),
            previous: v1::UserStatus::Enabled as i32,
            status: v1::UserStatus::Disabled as i32,
            occurred_at: Some(to_timestamp(utc(2025, 1, 20, 0, 0, 0)?.into())),
        };
        late_b.push((
            UserStatusChanged::SUBJECT,
            wrap(&b, &disable, utc(2025, 3, 21, 0, 0, 0)?.into()),
        ));
        publish_all(&stack, &mut rng, late_a).await?;
        publish_all(&stack, &mut rng, late_b).await?;
        stack.wait_all_drained().await?;

        // Closed statements never change.
        for ((provider, period), before) in &closed {
            let (_, now) = stack
                .get(
                    &billing,
                    &format!("/v1/providers/{provider}/statements/{period}"),
                    &[],
                    Some(TOKEN),
                )
                .await?;
            assert_eq!(&now, before);
        }

        // Past 3 April: March closes with its own usage and the adjustments.
        stack.clock.advance(Duration::days(15));
        for (provider, facts, billed, per_user) in [(&a, &a_facts, &billed_a, false), (&b, &b_facts, &billed_b, true)] {
            let mut expected = own_lines(per_user, "2025-03", reckon(facts, mar, apr));
            for (period, from, to) in [("2025-01", month_start(2025, 1), feb), ("2025-02", feb, mar)] {
                expected.extend(adjustment_lines(
                    per_user,
                    period,
                    reckon(facts, from, to),
                    reckon(billed, from, to),
                ));
            }
            let served = statement(&stack, &billing, provider, "2025-03").await?;
            check(&served, &expected);
            assert!(
                served["lines"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|l| l["adjustment"] == true),
                "late events must show as adjustments: {served:#}"
            );
        }
        for ((provider, period), before) in &closed {
            let (_, now) = stack
                .get(
                    &billing,
                    &format!("/v1/providers/{provider}/statements/{period}"),
                    &[],
                    Some(TOKEN),
                )
                .await?;
            assert_eq!(&now, before, "closed statements never change");
        }
        let (_, list) = stack
            .get(
                &billing,
                &format!("/v1/providers/{a}/statements"),
                &[("limit", "2")],
                Some(TOKEN),
            )
            .await?;
        assert_eq!(list["items"].as_array().map(Vec::len), Some(2));
        assert_eq!(list["next_cursor"], "2025-02");
        let (_, rest) = stack
            .get(
                &billing,
                &format!("/v1/providers/{a}/statements"),
                &[("cursor", "2025-02")],
                Some(TOKEN),
            )
            .await?;
        assert_eq!(rest["items"][0]["period"], "2025-03");
        assert_eq!(rest["next_cursor"], Value::Null);

        // The database itself refuses to change a closed statement.
        let db = stack.db().await?;
        let tampered = sqlx::query("UPDATE statements SET total = 0").execute(&db).await;
        assert!(tampered.is_err(), "closed statements must be immutable");

        // The CSV export holds each ledger row once, duplicates or not.
        let response = stack
            .http
            .get(format!("{}/v1/providers/{a}/ledger.csv", billing.base))
            .query(&feb_range)
            .bearer_auth(TOKEN)
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/csv"))
        );
        let csv = response.text().await?;
        let in_feb = a_facts
            .iter()
            .filter(|f| match f {
                Fact::Auth { at, .. } | Fact::Telephony { at, .. } => *at >= feb && *at < mar,
                Fact::User { .. } => false,
            })
            .count();
        assert_eq!(csv.lines().count(), in_feb + 1, "a header and one line per event");

        // The JSON ledger pages through the same rows, each once.
        let mut seen = BTreeSet::new();
        let mut cursor = String::new();
        loop {
            let query = [feb_range[0], feb_range[1], ("limit", "97"), ("cursor", cursor.as_str())];
            let (status, page) = stack
                .get(&billing, &format!("/v1/providers/{a}/ledger"), &query, Some(TOKEN))
                .await?;
            assert_eq!(status, StatusCode::OK, "{page}");
            for item in page["items"].as_array().context("items")? {
                assert!(seen.insert(item["event_id"].to_string()), "{item} served twice");
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = next.to_owned(),
                None => break,
            }
        }
        assert_eq!(seen.len(), in_feb);

        // Hourly buckets add up to the same month.
        let hourly = [("granularity", "hour"), feb_range[0], feb_range[1]];
        let (_, series) = stack
            .get(
                &billing,
                &format!("/v1/providers/{a}/usage/series"),
                &hourly,
                Some(TOKEN),
            )
            .await?;
        let buckets = series["buckets"].as_array().context("buckets")?;
        assert_eq!(buckets.len(), 28 * 24);
        let segments: i64 = buckets.iter().filter_map(|b| b["sms_segments"].as_i64()).sum();
        assert_eq!(segments, reckon(&a_facts, feb, mar).segments);
        assert!(csv.starts_with("event_id,kind,occurred_at"));
        billing.stop().await
    })
    .await
}
