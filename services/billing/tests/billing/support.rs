//! The fixture: real NATS and PostgreSQL, billing in-process (or as a
//! process), and clients for both sides.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, bail};
use async_nats::{HeaderMap, jetstream};
use chrono::{DateTime, TimeZone, Utc};
use prost::Message;
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::Value;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use vigil_billing::{Config, RunError};
use vigil_bus::envelope::wrap;
use vigil_core::{ChallengeId, ManualClock, UserId};
use vigil_proto::{
    events::{AuthenticationKind, AuthenticationUsage, Envelope, ProviderCreated},
    to_timestamp, v1,
};
use vigil_testkit::{NatsServer, PgServer, init_test_logging, wait_until};

pub const TOKEN: &str = "dashboard-token-for-tests";
pub const PATIENCE: Duration = Duration::from_secs(30);
pub const AUTH_SUBJECT: &str = vigil_bus::subjects::USAGE_AUTHENTICATION;

pub fn utc(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> anyhow::Result<DateTime<Utc>> {
    Utc.with_ymd_and_hms(y, m, d, h, min, s)
        .single()
        .context("invalid test date")
}

/// Real NATS and PostgreSQL, a billing database, and clients for both sides.
pub struct Stack {
    pub nats: NatsServer,
    _pg: PgServer,
    pub db_url: String,
    pub js: jetstream::Context,
    pub http: reqwest::Client,
    /// "Now" for billing: 20 March 2025, so the default period is March.
    pub clock: ManualClock,
}

impl Stack {
    pub async fn start() -> anyhow::Result<Stack> {
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

    pub async fn db(&self) -> anyhow::Result<sqlx::PgPool> {
        Ok(sqlx::PgPool::connect(&self.db_url).await?)
    }

    /// Publishes with the envelope id as `Nats-Msg-Id`, as the outbox relay does,
    /// unless `msg_id` overrides it; returns the stream sequence.
    pub async fn publish(&self, subject: &str, envelope: &Envelope, msg_id: Option<&str>) -> anyhow::Result<u64> {
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

    pub async fn create_provider(&self, id: &str, model: v1::UsageModel) -> anyhow::Result<u64> {
        self.create_provider_at(id, model, self.clock_now()).await
    }

    pub async fn create_provider_at(&self, id: &str, model: v1::UsageModel, at: DateTime<Utc>) -> anyhow::Result<u64> {
        let event = ProviderCreated {
            provider_id: id.to_owned(),
            name: format!("Provider {id}"),
            usage_model: model as i32,
        };
        let envelope = wrap(id, &event, at.into());
        self.publish(vigil_bus::subjects::PROVIDER_CREATED, &envelope, None)
            .await
    }

    pub fn clock_now(&self) -> DateTime<Utc> {
        use vigil_core::Clock;
        self.clock.now()
    }

    /// Waits until `durable` on `stream` has acknowledged everything up to
    /// `sequence`: from then on its effects are committed and final.
    pub async fn wait_drained(&self, stream: &str, durable: &str, sequence: u64) -> anyhow::Result<()> {
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

    /// Waits until all three consumers have acknowledged everything published so far.
    pub async fn wait_all_drained(&self) -> anyhow::Result<()> {
        for (stream, durable) in [
            ("VIGIL_PROVIDER", "billing-providers"),
            ("VIGIL_USAGE", "billing-usage"),
            ("VIGIL_USER", "billing-users"),
        ] {
            let last = self.js.get_stream(stream).await?.info().await?.state.last_sequence;
            self.wait_drained(stream, durable, last).await?;
        }
        Ok(())
    }

    pub async fn usage(
        &self,
        billing: &Billing,
        provider: &str,
        query: &[(&str, &str)],
    ) -> anyhow::Result<(StatusCode, Value)> {
        self.get(billing, &format!("/v1/providers/{provider}/usage"), query, Some(TOKEN))
            .await
    }

    pub async fn get(
        &self,
        billing: &Billing,
        path: &str,
        query: &[(&str, &str)],
        token: Option<&str>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        self.call(&billing.base, Method::GET, path, query, token, None).await
    }

    /// Any request; the body parsed as JSON (`null` if it is not JSON).
    pub async fn call(
        &self,
        base: &str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        token: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = self.http.request(method, format!("{base}{path}")).query(query);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// Sets a provider's rates with the operator token.
    pub async fn put_rates(&self, billing: &Billing, provider: &str, rates: &Value) -> anyhow::Result<()> {
        let (status, body) = self
            .call(
                &billing.base,
                Method::PUT,
                &format!("/v1/providers/{provider}/rates"),
                &[],
                Some(TOKEN),
                Some(rates),
            )
            .await?;
        if status != StatusCode::OK {
            bail!("setting rates: {status} {body}");
        }
        Ok(())
    }

    /// Issues a provider's read-only token with the operator token.
    pub async fn issue_token(&self, billing: &Billing, provider: &str) -> anyhow::Result<(String, String)> {
        let (status, body) = self
            .call(
                &billing.base,
                Method::POST,
                &format!("/v1/providers/{provider}/tokens"),
                &[],
                Some(TOKEN),
                Some(&serde_json::json!({"label": "dashboard"})),
            )
            .await?;
        if status != StatusCode::CREATED {
            bail!("issuing a token: {status} {body}");
        }
        let token = body["token"].as_str().context("no token")?.to_owned();
        let id = body["token_id"].as_str().context("no token id")?.to_owned();
        Ok((id, token))
    }
}

/// Billing running in-process on a fresh port.
///
/// Spawned on a `LocalSet` (see [`local`]), so tests need not prove `run`'s
/// future `Send`.
pub struct Billing {
    pub base: String,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), RunError>>,
}

impl Billing {
    pub async fn start(stack: &Stack) -> anyhow::Result<Billing> {
        Self::start_with(stack, |_| {}).await
    }

    pub async fn start_with(stack: &Stack, adjust: impl FnOnce(&mut Config)) -> anyhow::Result<Billing> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let mut config = Config {
            database_url: stack.db_url.clone(),
            nats_url: stack.nats.url(),
            api_token: SecretString::from(TOKEN),
            statement_close_delay_secs: 2 * 24 * 60 * 60,
            statement_check_interval_ms: 100,
            ..Config::default()
        };
        adjust(&mut config);
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
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .context("billing did not stop")??
            .context("billing stopped with an error")
    }
}

/// Runs a test body on a `LocalSet`, so it can spawn billing with `spawn_local`.
pub async fn local<F: std::future::Future>(body: F) -> F::Output {
    tokio::task::LocalSet::new().run_until(body).await
}

pub fn usage_event(occurred_at: Option<DateTime<Utc>>) -> AuthenticationUsage {
    AuthenticationUsage {
        challenge_id: ChallengeId::new().to_string(),
        user_id: UserId::new().to_string(),
        factor: v1::Factor::Sms as i32,
        occurred_at: occurred_at.map(|t| to_timestamp(t.into())),
        kind: AuthenticationKind::Challenge as i32,
        billable: true,
    }
}

/// An authentication for `provider` at `at`, in the envelope sent at `sent`.
pub fn authentication(provider: &str, at: Option<DateTime<Utc>>, sent: DateTime<Utc>) -> Envelope {
    wrap(provider, &usage_event(at), sent.into())
}

pub fn assert_error(response: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(response.0, status, "{}", response.1);
    assert_eq!(response.1["error"]["code"], code, "{}", response.1);
    assert!(
        response.1["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        response.1
    );
}

/// A small deterministic generator (xorshift64*), so a failing run can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability `percent`%.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = usize::try_from(self.below(i as u64 + 1)).unwrap_or(0);
            items.swap(i, j);
        }
    }
}
