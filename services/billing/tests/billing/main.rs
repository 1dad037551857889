//! Billing against a real nats-server (JetStream) and PostgreSQL: events in,
//! exact totals out, through duplicates, dead letters, late events, restarts
//! and SIGKILL; every route, tenant isolation, the OpenAPI document, and the
//! dashboard in a real headless Chromium.

mod api;
mod dashboard;
mod sigkill;
mod statements;
mod support;

use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use vigil_billing::{Config, RunError};
use vigil_core::{ProviderId, UserId};
use vigil_proto::{events::Envelope, v1};
use vigil_testkit::wait_until;

use support::{AUTH_SUBJECT, Billing, PATIENCE, Stack, TOKEN, assert_error, authentication, local, utc};

#[tokio::test]
async fn counts_every_authentication_exactly_once() -> anyhow::Result<()> {
    local(async {
        let stack = Stack::start().await?;
        let billing = Billing::start(&stack).await?;
        let (a, b, c) = (
            ProviderId::new().to_string(),
            ProviderId::new().to_string(),
            ProviderId::new().to_string(),
        );
        let march = utc(2025, 3, 20, 10, 0, 0)?;

        stack.create_provider(&a, v1::UsageModel::PerAuthentication).await?;
        let last_provider = stack.create_provider(&b, v1::UsageModel::PerEnabledUser).await?;

        // March holds three of A's authentications, bounds included: the first
        // instant of the month, and one timed only by its envelope.
        let first = authentication(&a, Some(utc(2025, 3, 1, 0, 0, 0)?), march);
        let middle = authentication(&a, Some(utc(2025, 3, 15, 12, 0, 0)?), march);
        let last = authentication(&a, None, utc(2025, 3, 31, 23, 59, 59)?);
        // The first instant of April is outside March's half-open period.
        let april = authentication(&a, Some(utc(2025, 4, 1, 0, 0, 0)?), march);
        for envelope in [&first, &middle, &last, &april] {
            stack.publish(AUTH_SUBJECT, envelope, None).await?;
        }
        // A true duplicate: same envelope id, but a Nats-Msg-Id JetStream has not
        // seen, so it is stored and delivered a second time.
        stack
            .publish(AUTH_SUBJECT, &middle, Some(&format!("redelivery-{}", middle.id)))
            .await?;
        // Usage may overtake its provider's creation: C is known by usage alone.
        stack
            .publish(
                AUTH_SUBJECT,
                &authentication(&c, Some(utc(2025, 3, 2, 0, 0, 0)?), march),
                None,
            )
            .await?;
        // A usage kind billing does not know is dead-lettered, not dropped.
        let mut unknown = authentication(&a, None, march);
        unknown.r#type = "vigil.events.v1.SeatUsage".into();
        let last_usage = stack.publish("vigil.usage.seat", &unknown, None).await?;

        // Usage and provider events travel on different streams: wait for both,
        // or the snapshot may predate the provider's usage model.
        let counted = wait_until(PATIENCE, "three March authentications for A, and A itself", || async {
            let (status, body) = stack.usage(&billing, &a, &[]).await?;
            let complete = body["authentications"] == 3 && !body["usage_model"].is_null();
            anyhow::Ok((status == StatusCode::OK && complete).then_some(body))
        })
        .await?;
        stack
            .wait_drained("VIGIL_PROVIDER", "billing-providers", last_provider)
            .await?;
        stack.wait_drained("VIGIL_USAGE", "billing-usage", last_usage).await?;

        // Everything is processed: the totals are final, not merely "so far".
        let (status, body) = stack.usage(&billing, &a, &[]).await?;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, counted);
        for (field, expected) in [
            ("provider_id", json!(a)),
            ("usage_model", json!("per_authentication")),
            ("from", json!("2025-03-01T00:00:00Z")),
            ("to", json!("2025-04-01T00:00:00Z")),
            ("authentications", json!(3)),
            ("billable_authentications", json!(3)),
            ("non_billable_authentications", json!(0)),
        ] {
            assert_eq!(body[field], expected, "{field} in {body}");
        }
        let spring = [("from", "2025-03-01T00:00:00Z"), ("to", "2025-05-01T00:00:00+00:00")];
        let (status, body) = stack.usage(&billing, &a, &spring).await?;
        assert_eq!(
            (status, &body["authentications"]),
            (StatusCode::OK, &json!(4)),
            "{body}"
        );
        let (status, body) = stack.usage(&billing, &b, &[]).await?;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            (&body["usage_model"], &body["authentications"]),
            (&json!("per_enabled_user"), &json!(0))
        );
        let (status, body) = stack.usage(&billing, &c, &[]).await?;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            (&body["usage_model"], &body["authentications"]),
            (&Value::Null, &json!(1))
        );

        let db = stack.db().await?;
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM usage_ledger")
            .fetch_one(&db)
            .await?;
        assert_eq!(rows, 5, "four for A, one for C, the duplicate not at all");
        let dead: Vec<(String, String)> = sqlx::query_as("SELECT consumer, subject FROM vigil_dead_letters")
            .fetch_all(&db)
            .await?;
        assert_eq!(dead, [("billing-usage".to_owned(), "vigil.usage.seat".to_owned())]);

        billing.stop().await
    })
    .await
}

#[tokio::test]
async fn rejects_bad_requests_with_one_error_shape() -> anyhow::Result<()> {
    local(async {
        let stack = Stack::start().await?;
        let billing = Billing::start(&stack).await?;
        let a = ProviderId::new().to_string();
        stack.create_provider(&a, v1::UsageModel::PerAuthentication).await?;
        wait_until(PATIENCE, "provider A to be known", || async {
            anyhow::Ok((stack.usage(&billing, &a, &[]).await?.0 == StatusCode::OK).then_some(()))
        })
        .await?;
        let path = format!("/v1/providers/{a}/usage");

        // Authentication comes first: without it, nothing else is revealed.
        let anonymous = stack.get(&billing, &path, &[], None).await?;
        assert_error(&anonymous, StatusCode::UNAUTHORIZED, "unauthorized");
        let wrong = stack.get(&billing, &path, &[], Some("not-the-token")).await?;
        assert_error(&wrong, StatusCode::UNAUTHORIZED, "unauthorized");
        let response = stack
            .http
            .get(format!("{}{path}", billing.base))
            .header("Authorization", format!("Basic {TOKEN}"))
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers().get("www-authenticate").map(|v| v.as_bytes()),
            Some(&b"Bearer"[..])
        );
        let anonymous_bad_id = stack.get(&billing, "/v1/providers/acme/usage", &[], None).await?;
        assert_error(&anonymous_bad_id, StatusCode::UNAUTHORIZED, "unauthorized");

        // `%FF` is not UTF-8: the path cannot even be extracted.
        for bad_id in ["acme", "prv_1234", "%FF", &UserId::new().to_string()] {
            let response = stack.usage(&billing, bad_id, &[]).await?;
            assert_error(&response, StatusCode::BAD_REQUEST, "invalid_provider_id");
        }
        for bad_time in [[("from", "yesterday")], [("to", "2025-03-01")]] {
            let response = stack.usage(&billing, &a, &bad_time).await?;
            assert_error(&response, StatusCode::BAD_REQUEST, "invalid_time");
        }
        let twice = [("from", "2025-03-01T00:00:00Z"), ("from", "2025-02-01T00:00:00Z")];
        assert_error(
            &stack.usage(&billing, &a, &twice).await?,
            StatusCode::BAD_REQUEST,
            "invalid_query",
        );
        let inverted = [("from", "2025-04-01T00:00:00Z"), ("to", "2025-03-01T00:00:00Z")];
        assert_error(
            &stack.usage(&billing, &a, &inverted).await?,
            StatusCode::BAD_REQUEST,
            "invalid_range",
        );
        let empty = [("from", "2025-03-01T00:00:00Z"), ("to", "2025-03-01T00:00:00Z")];
        assert_error(
            &stack.usage(&billing, &a, &empty).await?,
            StatusCode::BAD_REQUEST,
            "invalid_range",
        );

        let unknown = ProviderId::new().to_string();
        assert_error(
            &stack.usage(&billing, &unknown, &[]).await?,
            StatusCode::NOT_FOUND,
            "provider_not_found",
        );
        let no_route = stack.get(&billing, "/v1/statements", &[], Some(TOKEN)).await?;
        assert_error(&no_route, StatusCode::NOT_FOUND, "not_found");

        // Probes need no token.
        assert_eq!(stack.get(&billing, "/healthz", &[], None).await?.0, StatusCode::OK);
        billing.stop().await
    })
    .await
}

#[tokio::test]
async fn totals_stay_exact_across_restarts() -> anyhow::Result<()> {
    local(async {
        let stack = Stack::start().await?;
        let a = ProviderId::new().to_string();
        let march = utc(2025, 3, 20, 10, 0, 0)?;
        let events: Vec<Envelope> = (1..=3)
            .map(|day| Ok(authentication(&a, Some(utc(2025, 3, day, 9, 0, 0)?), march)))
            .collect::<anyhow::Result<_>>()?;

        let billing = Billing::start(&stack).await?;
        stack.create_provider(&a, v1::UsageModel::PerAuthentication).await?;
        let mut last = 0;
        for envelope in &events {
            last = stack.publish(AUTH_SUBJECT, envelope, None).await?;
        }
        stack.wait_drained("VIGIL_USAGE", "billing-usage", last).await?;
        assert_eq!(stack.usage(&billing, &a, &[]).await?.1["authentications"], 3);
        billing.stop().await?;

        // While billing is down: one new authentication and one redelivery.
        stack
            .publish(
                AUTH_SUBJECT,
                &authentication(&a, Some(utc(2025, 3, 4, 9, 0, 0)?), march),
                None,
            )
            .await?;
        let last = stack
            .publish(AUTH_SUBJECT, &events[0], Some(&format!("again-{}", events[0].id)))
            .await?;

        let billing = Billing::start(&stack).await?;
        stack.wait_drained("VIGIL_USAGE", "billing-usage", last).await?;
        assert_eq!(stack.usage(&billing, &a, &[]).await?.1["authentications"], 4);

        // Even if the consumer's processed-id bookkeeping were lost, the ledger's
        // own key keeps a replay from counting twice.
        let db = stack.db().await?;
        sqlx::query("DELETE FROM vigil_processed_events").execute(&db).await?;
        let last = stack
            .publish(AUTH_SUBJECT, &events[1], Some(&format!("replay-{}", events[1].id)))
            .await?;
        stack.wait_drained("VIGIL_USAGE", "billing-usage", last).await?;
        assert_eq!(stack.usage(&billing, &a, &[]).await?.1["authentications"], 4);
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM usage_ledger")
            .fetch_one(&db)
            .await?;
        assert_eq!(rows, 4);
        billing.stop().await
    })
    .await
}

#[tokio::test]
async fn refuses_to_start_without_an_api_token() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let outcome = tokio::time::timeout(
        Duration::from_secs(5),
        vigil_billing::run(Config::default(), listener, CancellationToken::new()),
    )
    .await
    .context("run must fail fast, before connecting anywhere")?;
    match outcome {
        Err(RunError::Config(error)) => assert!(error.to_string().contains("VIGIL_API_TOKEN"), "{error}"),
        other => bail!("expected a configuration error, got {other:?}"),
    }
    Ok(())
}
