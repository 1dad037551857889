//! Billing against a real nats-server (JetStream) and PostgreSQL: events in,
//! exact totals out, through duplicates, dead letters and restarts.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, bail};
use async_nats::{HeaderMap, jetstream};
use chrono::{DateTime, TimeZone, Utc};
use prost::Message;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use vigil_billing::{Config, RunError};
use vigil_bus::envelope::wrap;
use vigil_core::{ChallengeId, ManualClock, ProviderId, UserId};
use vigil_proto::{
    events::{AuthenticationUsage, Envelope, ProviderCreated},
    to_timestamp, v1,
};
use vigil_testkit::{NatsServer, PgServer, init_test_logging, wait_until};

const TOKEN: &str = "dashboard-token-for-tests";
const PATIENCE: Duration = Duration::from_secs(30);

fn utc(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> anyhow::Result<DateTime<Utc>> {
    Utc.with_ymd_and_hms(y, m, d, h, min, s)
        .single()
        .context("invalid test date")
}

/// Real NATS and PostgreSQL, a billing database, and clients for both sides.
struct Stack {
    nats: NatsServer,
    _pg: PgServer,
    db_url: String,
    js: jetstream::Context,
    http: reqwest::Client,
    /// "Now" for billing: 20 March 2025, so the default period is March.
    clock: ManualClock,
}

impl Stack {
    async fn start() -> anyhow::Result<Stack> {
        init_test_logging();
        let nats = NatsServer::start().await?;
        let pg = PgServer::start().await?;
        let db_url = pg.create_database("vigil_billing").await?;
        let js = jetstream::new(async_nats::connect(nats.url()).await?);
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()?;
        let clock = ManualClock::new(utc(2025, 3, 20, 10, 0, 0)?);
        Ok(Stack {
            nats,
            _pg: pg,
            db_url,
            js,
            http,
            clock,
        })
    }

    async fn db(&self) -> anyhow::Result<sqlx::PgPool> {
        Ok(sqlx::PgPool::connect(&self.db_url).await?)
    }

    /// Publishes with the envelope id as `Nats-Msg-Id`, as the outbox relay does,
    /// unless `msg_id` overrides it; returns the stream sequence.
    async fn publish(&self, subject: &str, envelope: &Envelope, msg_id: Option<&str>) -> anyhow::Result<u64> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id.unwrap_or(&envelope.id));
        let ack = self
            .js
            .publish_with_headers(subject.to_owned(), headers, envelope.encode_to_vec().into())
            .await?
            .await?;
        if ack.duplicate {
            bail!("JetStream dropped {subject} {} as a duplicate", envelope.id);
        }
        Ok(ack.sequence)
    }

    async fn create_provider(&self, id: &str, model: v1::UsageModel) -> anyhow::Result<u64> {
        let event = ProviderCreated {
            provider_id: id.to_owned(),
            name: format!("Provider {id}"),
            usage_model: model as i32,
        };
        let envelope = wrap(id, &event, self.clock_now()?.into());
        self.publish(vigil_bus::subjects::PROVIDER_CREATED, &envelope, None)
            .await
    }

    fn clock_now(&self) -> anyhow::Result<DateTime<Utc>> {
        use vigil_core::Clock;
        Ok(self.clock.now())
    }

    /// Waits until `durable` on `stream` has acknowledged everything up to
    /// `sequence`: from then on its effects are committed and final.
    async fn wait_drained(&self, stream: &str, durable: &str, sequence: u64) -> anyhow::Result<()> {
        let stream = self.js.get_stream(stream).await?;
        wait_until(PATIENCE, &format!("{durable} to ack up to {sequence}"), || {
            let stream = stream.clone();
            async move {
                let info = stream.consumer_info(durable).await?;
                let drained = info.ack_floor.stream_sequence >= sequence && info.num_ack_pending == 0;
                anyhow::Ok(drained.then_some(()))
            }
        })
        .await
    }

    async fn usage(
        &self,
        billing: &Billing,
        provider: &str,
        query: &[(&str, &str)],
    ) -> anyhow::Result<(StatusCode, Value)> {
        self.get(billing, &format!("/v1/providers/{provider}/usage"), query, Some(TOKEN))
            .await
    }

    async fn get(
        &self,
        billing: &Billing,
        path: &str,
        query: &[(&str, &str)],
        token: Option<&str>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = self.http.get(format!("{}{path}", billing.base)).query(query);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, body))
    }
}

/// Billing running in-process on a fresh port.
///
/// Spawned on a `LocalSet` (see [`local`]): `vigil_bus::schema::install`'s
/// future is not provably `Send` (`sqlx::raw_sql(..).execute(&mut *tx)` trips
/// a rustc higher-ranked lifetime limitation), so neither is `run`'s.
struct Billing {
    base: String,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), RunError>>,
}

impl Billing {
    async fn start(stack: &Stack) -> anyhow::Result<Billing> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let config = Config {
            database_url: stack.db_url.clone(),
            nats_url: stack.nats.url(),
            api_token: SecretString::from(TOKEN),
            ..Config::default()
        };
        let shutdown = CancellationToken::new();
        let clock = Arc::new(stack.clock.clone());
        let run = vigil_billing::run_with_clock(config, listener, shutdown.clone(), clock);
        let mut task = tokio::task::spawn_local(run);
        let ready = format!("{base}/readyz");
        let probe = wait_until(PATIENCE, "billing to be ready", || {
            let request = stack.http.get(&ready).send();
            async move { anyhow::Ok((request.await?.status() == StatusCode::OK).then_some(())) }
        });
        // A start-up failure is reported at once, with billing's own error.
        tokio::select! {
            ready = probe => ready?,
            outcome = &mut task => bail!("billing exited during start-up: {:?}", outcome?),
        }
        Ok(Billing { base, shutdown, task })
    }

    /// Cancels billing and waits for a clean exit.
    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .context("billing did not stop")??
            .context("billing stopped with an error")
    }
}

/// Runs a test body on a `LocalSet`, so it can spawn billing with `spawn_local`.
async fn local<F: std::future::Future>(body: F) -> F::Output {
    tokio::task::LocalSet::new().run_until(body).await
}

fn usage_event(occurred_at: Option<DateTime<Utc>>) -> AuthenticationUsage {
    AuthenticationUsage {
        challenge_id: ChallengeId::new().to_string(),
        user_id: UserId::new().to_string(),
        factor: v1::Factor::Sms as i32,
        occurred_at: occurred_at.map(|t| to_timestamp(t.into())),
        kind: vigil_proto::events::AuthenticationKind::Challenge as i32,
        billable: true,
    }
}

/// An authentication for `provider` at `at`, in the envelope sent at `sent`.
fn authentication(provider: &str, at: Option<DateTime<Utc>>, sent: DateTime<Utc>) -> Envelope {
    wrap(provider, &usage_event(at), sent.into())
}

const AUTH_SUBJECT: &str = vigil_bus::subjects::USAGE_AUTHENTICATION;

fn assert_error(response: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(response.0, status, "{}", response.1);
    assert_eq!(response.1["error"]["code"], code, "{}", response.1);
    assert!(
        response.1["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        response.1
    );
}

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

        let counted = wait_until(PATIENCE, "three March authentications for A", || async {
            let (status, body) = stack.usage(&billing, &a, &[]).await?;
            anyhow::Ok((status == StatusCode::OK && body["authentications"] == 3).then_some(body))
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
        assert_eq!(
            body,
            json!({
                "provider_id": a,
                "usage_model": "per_authentication",
                "from": "2025-03-01T00:00:00Z",
                "to": "2025-04-01T00:00:00Z",
                "authentications": 3,
            })
        );
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
