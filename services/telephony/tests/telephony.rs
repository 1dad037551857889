//! The telephony service end to end: a real nats-server and PostgreSQL, the
//! carrier simulator and the service itself in-process, talking HTTP to each
//! other the way the service and Twilio do.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use anyhow::{Context, bail, ensure};
use async_nats::{HeaderMap, jetstream};
use futures::StreamExt;
use prost::Message as _;
use reqwest::{Response, StatusCode};
use sqlx::PgPool;
use tokio::{net::TcpListener, sync::OnceCell, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use vigil_bus::{Event, envelope, streams, subjects};
use vigil_carrier_sim::{
    SimConfig,
    control::{FaultApi, Faults, InboxEntry, ReplyRequest, ReplyResponse, Stats},
};
use vigil_core::{ChallengeId, DeliveryId, ManualClock, ProviderId};
use vigil_proto::events::{
    AnswerKind, Channel, DeliveryAnswered, DeliveryRequested, DeliveryState, DeliveryStatus, Envelope, TelephonyUsage,
};
use vigil_telephony::{CarrierConfig, Config, DELIVERY_CONSUMER, INBOUND_SMS_PATH, STATUS_CALLBACK_PATH};
use vigil_testkit::{NatsServer, PgServer, init_test_logging, wait_until};
use vigil_twilio::signature;

const PATIENCE: Duration = Duration::from_secs(20);
const AUTH_TOKEN: &str = vigil_carrier_sim::DEFAULT_AUTH_TOKEN;
const FROM_NUMBER: &str = "+15550000000";
const STREAM: &str = "VIGIL_DELIVERY";
const USAGE_STREAM: &str = "VIGIL_USAGE";
/// The second carrier of failover tests.
const BACKUP_TOKEN: &str = "backup-auth-token";
const BACKUP_SID: &str = "ACbackup";
const BACKUP_FROM: &str = "+15550000099";

// One test binary (link time); the tests live beside it by topic.
#[path = "telephony/push.rs"]
mod push;
#[path = "telephony/reliability.rs"]
mod reliability;
#[path = "telephony/retention.rs"]
mod retention;
#[path = "telephony/sms.rs"]
mod sms;
#[path = "telephony/voice.rs"]
mod voice;
/// Long enough that the simulator never calls back during a test.
const NEVER: Duration = Duration::from_secs(3600);

/// One PostgreSQL for the whole binary; each test gets its own database.
static PG: OnceCell<PgServer> = OnceCell::const_new();

/// Every event on `vigil.delivery.>`, as a test would see them on the bus.
#[derive(Clone, Default)]
struct EventLog(Arc<Mutex<Seen>>);

#[derive(Default)]
struct Seen {
    events: Vec<(String, Envelope)>,
    last_sequence: u64,
}

impl EventLog {
    async fn start(js: &jetstream::Context, stream: &str, filter: &str) -> anyhow::Result<Self> {
        let consumer = js
            .get_stream(stream)
            .await?
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                filter_subject: filter.into(),
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        let log = Self::default();
        let seen = log.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = messages.next().await {
                let sequence = message.info().map(|i| i.stream_sequence).unwrap_or_default();
                let mut seen = seen.lock();
                if let Ok(envelope) = envelope::decode_envelope(&message.payload) {
                    seen.events.push((message.subject.to_string(), envelope));
                }
                seen.last_sequence = sequence;
            }
        });
        Ok(log)
    }

    fn lock(&self) -> MutexGuard<'_, Seen> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Events of type `E` with the provider of their envelope, oldest first.
    fn of<E: Event>(&self) -> Vec<(String, E)> {
        self.lock()
            .events
            .iter()
            .filter(|(subject, _)| subject == E::SUBJECT)
            .filter_map(|(_, env)| Some((env.provider_id.clone(), envelope::unwrap::<E>(env).ok()?)))
            .collect()
    }
}

/// NATS, the simulator and the service, running for one test.
///
/// The service runs on a `LocalSet` (see [`local`]): `run`'s future is not
/// provably `Send` while `vigil_bus::schema::install` calls
/// `sqlx::raw_sql(..).execute(&mut *tx)`, which trips a rustc higher-ranked
/// lifetime limitation.
struct Stack {
    js: jetstream::Context,
    pool: PgPool,
    http: reqwest::Client,
    sim: String,
    telephony: String,
    events: EventLog,
    usage: EventLog,
    provider: ProviderId,
    clock: ManualClock,
    /// The second carrier's simulator, when the stack has one.
    backup: Option<String>,
    stop: CancellationToken,
    service: JoinHandle<anyhow::Result<()>>,
    simulator: JoinHandle<anyhow::Result<()>>,
    _nats: NatsServer,
}

/// How a [`Stack`] is set up beyond the defaults.
#[derive(Clone)]
struct Options {
    /// How long the simulators wait before each status callback, before a
    /// called phone reacts and before a device answers.
    status_delay: Duration,
    /// A second carrier (its own simulator) to fail over to.
    backup: bool,
    send_attempts: u32,
    /// The service's pool size, when not the default.
    database_max_connections: Option<u32>,
    /// Where the carrier's API is, when not the simulator.
    carrier_url: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            status_delay: Duration::from_millis(50),
            backup: false,
            send_attempts: 3,
            database_max_connections: None,
            carrier_url: None,
        }
    }
}

impl Stack {
    /// `status_delay`: how long the simulated carrier waits before each
    /// status callback.
    async fn start(database: &str, status_delay: Duration) -> anyhow::Result<Self> {
        Self::start_with(
            database,
            Options {
                status_delay,
                ..Options::default()
            },
        )
        .await
    }

    async fn start_with(database: &str, options: Options) -> anyhow::Result<Self> {
        let status_delay = options.status_delay;
        init_test_logging();
        let nats = NatsServer::start().await?;
        let pg = PG.get_or_try_init(PgServer::start).await?;
        let database_url = pg.create_database(database).await?;
        let sim_listener = TcpListener::bind("127.0.0.1:0").await?;
        let telephony_listener = TcpListener::bind("127.0.0.1:0").await?;
        let sim = format!("http://{}", sim_listener.local_addr()?);
        let telephony = format!("http://{}", telephony_listener.local_addr()?);
        let stop = CancellationToken::new();

        let sim_config = SimConfig {
            inbound_sms_url: Some(format!("{telephony}{INBOUND_SMS_PATH}")),
            status_delay,
            ..SimConfig::default()
        };
        let sim_stop = stop.clone();
        let simulator = tokio::spawn(vigil_carrier_sim::serve(sim_listener, sim_config, async move {
            sim_stop.cancelled().await
        }));

        let mut config = Config {
            database_url: database_url.clone(),
            nats_url: nats.url(),
            public_base_url: telephony.clone(),
            send_attempts: options.send_attempts,
            ..Config::default()
        };
        config.twilio.base_url = options.carrier_url.clone().unwrap_or_else(|| sim.clone());
        config.push.base_url = sim.clone();
        if let Some(max) = options.database_max_connections {
            config.database_max_connections = max;
        }
        let mut backup = None;
        let mut backup_task = None;
        if options.backup {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let url = format!("http://{}", listener.local_addr()?);
            let sim_config = SimConfig {
                account_sid: BACKUP_SID.into(),
                auth_token: BACKUP_TOKEN.into(),
                inbound_sms_url: Some(format!("{telephony}{INBOUND_SMS_PATH}")),
                status_delay,
                ..SimConfig::default()
            };
            let backup_stop = stop.clone();
            backup_task = Some(tokio::spawn(vigil_carrier_sim::serve(
                listener,
                sim_config,
                async move { backup_stop.cancelled().await },
            )));
            config.carriers = vec![
                CarrierConfig {
                    name: "primary".into(),
                    base_url: sim.clone(),
                    from_number: FROM_NUMBER.into(),
                    ..CarrierConfig::default()
                },
                CarrierConfig {
                    name: "backup".into(),
                    base_url: url.clone(),
                    account_sid: BACKUP_SID.into(),
                    auth_token: secrecy::SecretString::from(BACKUP_TOKEN),
                    from_number: BACKUP_FROM.into(),
                },
            ];
            backup = Some(url);
        }
        // Expiry and answer freshness are judged by a clock tests can move.
        let clock = ManualClock::new(chrono::Utc::now());
        let service = tokio::task::spawn_local(vigil_telephony::run_with_clock(
            config,
            telephony_listener,
            stop.clone(),
            Arc::new(clock.clone()),
        ));
        // The backup simulator stops with the stack; its own errors show in
        // its callbacks failing.
        drop(backup_task);

        let js = jetstream::new(async_nats::connect(nats.url()).await?);
        streams::ensure_streams(&js, 1).await?;
        let events = EventLog::start(&js, STREAM, "vigil.delivery.>").await?;
        let usage = EventLog::start(&js, USAGE_STREAM, "vigil.usage.telephony").await?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()?;
        let readyz = format!("{telephony}/readyz");
        wait_until(PATIENCE, "telephony to be ready", || {
            let (http, readyz, exited) = (http.clone(), readyz.clone(), service.is_finished());
            async move {
                if exited {
                    bail!("telephony exited during start-up");
                }
                let status = http.get(&readyz).send().await?.status();
                Ok((status == StatusCode::OK).then_some(()))
            }
        })
        .await?;
        let pool = PgPool::connect(&database_url).await?;
        Ok(Self {
            js,
            pool,
            http,
            sim,
            telephony,
            events,
            usage,
            provider: ProviderId::new(),
            clock,
            backup,
            stop,
            service,
            simulator,
            _nats: nats,
        })
    }

    /// Shuts everything down and checks the service stopped cleanly.
    async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.service.await?.context("telephony::run failed")?;
        self.simulator.await?.context("simulator failed")?;
        Ok(())
    }

    fn request(number: &str, body: &str) -> DeliveryRequested {
        DeliveryRequested {
            delivery_id: DeliveryId::new().to_string(),
            challenge_id: ChallengeId::new().to_string(),
            channel: Channel::Sms.into(),
            destination: number.into(),
            body: body.into(),
            ..Default::default()
        }
    }

    fn wrap(&self, request: &DeliveryRequested) -> Envelope {
        envelope::wrap(&self.provider.to_string(), request, SystemTime::now())
    }

    /// Publishes `envelope` with `msg_id` as its JetStream de-duplication id.
    async fn publish(&self, envelope: &Envelope, msg_id: &str) -> anyhow::Result<()> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id);
        self.js
            .publish_with_headers(subjects::DELIVERY_REQUESTED, headers, envelope.encode_to_vec().into())
            .await?
            .await?;
        Ok(())
    }

    /// Publishes a request in a fresh envelope, as the challenge service would.
    async fn send(&self, request: &DeliveryRequested) -> anyhow::Result<()> {
        let envelope = self.wrap(request);
        self.publish(&envelope, &envelope.id).await
    }

    async fn inbox(&self, number: &str) -> anyhow::Result<Vec<InboxEntry>> {
        let url = format!("{}/sim/inbox/{}", self.sim, urlencode(number));
        Ok(self.http.get(url).send().await?.error_for_status()?.json().await?)
    }

    async fn wait_inbox(&self, number: &str, count: usize) -> anyhow::Result<Vec<InboxEntry>> {
        wait_until(PATIENCE, "SMS in the simulated phone's inbox", || async {
            let inbox = self.inbox(number).await?;
            anyhow::Ok((inbox.len() >= count).then_some(inbox))
        })
        .await
    }

    async fn sim_stats(&self) -> anyhow::Result<Stats> {
        let url = format!("{}/sim/stats", self.sim);
        Ok(self.http.get(url).send().await?.error_for_status()?.json().await?)
    }

    async fn arm_faults(&self, fail_next: u32, status: u16) -> anyhow::Result<()> {
        let url = format!("{}/sim/faults", self.sim);
        self.http
            .post(url)
            .json(&Faults {
                fail_next,
                status,
                api: FaultApi::Any,
            })
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// Status events of one delivery, oldest first.
    fn statuses(&self, delivery_id: &str) -> Vec<DeliveryStatus> {
        self.events
            .of::<DeliveryStatus>()
            .into_iter()
            .map(|(_, status)| status)
            .filter(|s| s.delivery_id == delivery_id)
            .collect()
    }

    async fn wait_status(&self, delivery_id: &str, state: DeliveryState) -> anyhow::Result<DeliveryStatus> {
        let what = format!("{state:?} status of {delivery_id}");
        wait_until(PATIENCE, &what, || async {
            self.statuses(delivery_id).into_iter().find(|s| s.state() == state)
        })
        .await
    }

    /// Usage events of one delivery.
    fn usage_of(&self, delivery_id: &str) -> Vec<TelephonyUsage> {
        self.usage
            .of::<TelephonyUsage>()
            .into_iter()
            .map(|(_, u)| u)
            .filter(|u| u.delivery_id == delivery_id)
            .collect()
    }

    /// Waits for the answer to one delivery.
    async fn wait_answer(&self, delivery_id: &str) -> anyhow::Result<DeliveryAnswered> {
        wait_until(PATIENCE, "DeliveryAnswered", || async {
            self.answers().into_iter().find(|a| a.delivery_id == delivery_id)
        })
        .await
    }

    /// The service's clock, in Unix seconds.
    fn clock_now(&self) -> i64 {
        use vigil_core::Clock as _;
        self.clock.now().timestamp()
    }

    fn answers(&self) -> Vec<DeliveryAnswered> {
        self.events
            .of::<DeliveryAnswered>()
            .into_iter()
            .map(|(_, a)| a)
            .collect()
    }

    /// Waits until the service has handled every request, relayed every
    /// event, and this test has seen them all, so "exactly one" can be
    /// asserted without sleeping.
    async fn quiesce(&self) -> anyhow::Result<()> {
        wait_until(PATIENCE, "the service to settle", || async {
            let mut stream = self.js.get_stream(STREAM).await?;
            let consumer = stream.consumer_info(DELIVERY_CONSUMER).await?;
            let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM vigil_outbox")
                .fetch_one(&self.pool)
                .await?;
            let last = stream.info().await?.state.last_sequence;
            let last_usage = self
                .js
                .get_stream(USAGE_STREAM)
                .await?
                .info()
                .await?
                .state
                .last_sequence;
            let settled = consumer.num_pending == 0
                && consumer.num_ack_pending == 0
                && outbox == 0
                && self.events.lock().last_sequence >= last
                && self.usage.lock().last_sequence >= last_usage;
            anyhow::Ok(settled.then_some(()))
        })
        .await
    }

    async fn delivery_row(&self, delivery_id: &str) -> anyhow::Result<(String, i32, Option<String>)> {
        let id = DeliveryId::parse(delivery_id)?.as_uuid();
        Ok(
            sqlx::query_as("SELECT state, attempts, last_error FROM deliveries WHERE id = $1")
                .bind(id)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    fn webhook_url(&self, path: &str) -> String {
        format!("{}{path}", self.telephony)
    }

    /// POSTs a form to one of the service's webhooks with `signature` as
    /// its `X-Twilio-Signature` (`None`: no header at all).
    async fn post_webhook(
        &self,
        path: &str,
        params: &[(&str, &str)],
        signature: Option<String>,
    ) -> anyhow::Result<Response> {
        let mut request = self.http.post(self.webhook_url(path)).form(params);
        if let Some(signature) = signature {
            request = request.header(signature::HEADER, signature);
        }
        Ok(request.send().await?)
    }

    /// POSTs a form signed as the carrier would: right token, right URL.
    async fn post_signed(&self, path: &str, params: &[(&str, &str)]) -> anyhow::Result<StatusCode> {
        let signature = sign(AUTH_TOKEN, &self.webhook_url(path), params);
        Ok(self.post_webhook(path, params, Some(signature)).await?.status())
    }
}

fn sign(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let params: Vec<(String, String)> = params.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    signature::compute(token, url, &params)
}

/// Runs a test body on a `LocalSet`, so it can `spawn_local` the service.
async fn local<F: std::future::Future>(body: F) -> F::Output {
    tokio::task::LocalSet::new().run_until(body).await
}

fn urlencode(number: &str) -> String {
    number.replace('+', "%2B")
}

#[tokio::test]
async fn sends_sms_and_reports_sent_then_delivered() -> anyhow::Result<()> {
    local(async {
        let stack = Stack::start("telephony_sends", Duration::from_millis(50)).await?;
        for probe in ["healthz", "readyz"] {
            let status = stack
                .http
                .get(format!("{}/{probe}", stack.telephony))
                .send()
                .await?
                .status();
            assert_eq!(status, StatusCode::OK, "/{probe}");
        }

        let number = "+15551230001";
        let request = Stack::request(number, "Your Vigil verification code is 314159.");
        stack.send(&request).await?;

        let inbox = stack.wait_inbox(number, 1).await?;
        assert_eq!(inbox.len(), 1);
        assert_eq!(inbox[0].body, request.body);
        assert_eq!(inbox[0].from, FROM_NUMBER);

        stack
            .wait_status(&request.delivery_id, DeliveryState::Delivered)
            .await?;
        stack.quiesce().await?;
        let statuses = stack.statuses(&request.delivery_id);
        let states: Vec<_> = statuses.iter().map(DeliveryStatus::state).collect();
        assert_eq!(
            states,
            [DeliveryState::Sent, DeliveryState::Delivered],
            "the carrier's own `sent` adds nothing"
        );
        for status in &statuses {
            assert_eq!(status.challenge_id, request.challenge_id);
            assert_eq!(status.channel(), Channel::Sms);
            assert_eq!(status.carrier, "twilio");
            assert_eq!(status.carrier_ref, inbox[0].sid);
            assert_eq!(status.error, "");
        }
        let providers: Vec<_> = stack
            .events
            .of::<DeliveryStatus>()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert!(
            providers.iter().all(|p| *p == stack.provider.to_string()),
            "events carry the request's provider"
        );
        assert_eq!(
            stack.delivery_row(&request.delivery_id).await?,
            ("delivered".into(), 1, None)
        );
        stack.stop().await
    })
    .await
}

#[tokio::test]
async fn callbacks_that_outrun_the_send_are_not_lost() -> anyhow::Result<()> {
    local(async {
        // The carrier calls back at once, while the consumer transaction that
        // stores the message's SID is held open by a lock on the outbox.
        let stack = Stack::start("telephony_callback_race", Duration::ZERO).await?;
        let mut blocker = stack.pool.begin().await?;
        sqlx::query("LOCK TABLE vigil_outbox IN EXCLUSIVE MODE")
            .execute(&mut *blocker)
            .await?;
        let number = "+15551230009";
        let request = Stack::request(number, "code 577215");
        stack.send(&request).await?;
        stack.wait_inbox(number, 1).await?;
        // Let the callbacks reach the service before the SID is visible.
        tokio::time::sleep(Duration::from_millis(100)).await;
        blocker.rollback().await?;

        stack
            .wait_status(&request.delivery_id, DeliveryState::Delivered)
            .await?;
        stack.quiesce().await?;
        let states: Vec<_> = stack
            .statuses(&request.delivery_id)
            .iter()
            .map(DeliveryStatus::state)
            .collect();
        assert_eq!(states, [DeliveryState::Sent, DeliveryState::Delivered]);
        stack.stop().await
    })
    .await
}

#[tokio::test]
async fn the_same_request_twice_sends_one_sms() -> anyhow::Result<()> {
    local(async {
        let stack = Stack::start("telephony_idempotent", Duration::from_millis(50)).await?;
        let number = "+15551230002";
        let request = Stack::request(number, "code 271828");
        let envelope = stack.wrap(&request);
        // Same envelope under two Nats-Msg-Ids, so JetStream keeps both...
        stack.publish(&envelope, "first").await?;
        stack.publish(&envelope, "second").await?;
        // ...and the same delivery in a new envelope, as a producer retry would.
        stack.send(&request).await?;

        stack.wait_status(&request.delivery_id, DeliveryState::Sent).await?;
        stack.quiesce().await?;
        assert_eq!(
            stack.events.of::<DeliveryRequested>().len(),
            3,
            "all three requests reached the stream"
        );
        assert_eq!(stack.inbox(number).await?.len(), 1);
        assert_eq!(stack.sim_stats().await?.messages_accepted, 1);
        let sent = stack
            .statuses(&request.delivery_id)
            .into_iter()
            .filter(|s| s.state() == DeliveryState::Sent)
            .count();
        assert_eq!(sent, 1);
        stack.stop().await
    })
    .await
}

#[tokio::test]
async fn carrier_errors_are_retried() -> anyhow::Result<()> {
    local(async {
        let stack = Stack::start("telephony_retries", Duration::from_millis(50)).await?;
        stack.arm_faults(2, 500).await?;
        let number = "+15551230003";
        let request = Stack::request(number, "code 161803");
        stack.send(&request).await?;

        let sent = stack.wait_status(&request.delivery_id, DeliveryState::Sent).await?;
        let inbox = stack.wait_inbox(number, 1).await?;
        assert_eq!(inbox[0].body, request.body);
        assert_eq!(sent.carrier_ref, inbox[0].sid);
        let stats = stack.sim_stats().await?;
        assert_eq!((stats.requests_failed, stats.messages_accepted), (2, 1));
        let (_, attempts, _) = stack.delivery_row(&request.delivery_id).await?;
        assert_eq!(attempts, 3);
        stack.stop().await
    })
    .await
}

#[tokio::test]
async fn failures_are_reported_once_and_never_sent() -> anyhow::Result<()> {
    local(async {
        let stack = Stack::start("telephony_failures", Duration::from_millis(50)).await?;

        // A permanent carrier error is not retried.
        stack.arm_faults(1, 400).await?;
        let refused = Stack::request("+15551230004", "code 1");
        stack.send(&refused).await?;
        let failed = stack.wait_status(&refused.delivery_id, DeliveryState::Failed).await?;
        assert_eq!(failed.error, "carrier answered HTTP 400 (error 20400)");
        assert_eq!(stack.delivery_row(&refused.delivery_id).await?.1, 1);

        // A carrier that stays down is tried `send_attempts` times.
        stack.arm_faults(3, 503).await?;
        let down = Stack::request("+15551230005", "code 2");
        stack.send(&down).await?;
        let failed = stack.wait_status(&down.delivery_id, DeliveryState::Failed).await?;
        assert_eq!(failed.error, "carrier answered HTTP 503 (error 20503)");
        let (state, attempts, last_error) = stack.delivery_row(&down.delivery_id).await?;
        assert_eq!((state.as_str(), attempts), ("failed", 3));
        assert_eq!(last_error.as_deref(), Some(failed.error.as_str()));

        // An invalid destination never reaches the carrier.
        let invalid = Stack::request("0800 CALL ME", "code 3");
        stack.send(&invalid).await?;
        let failed = stack.wait_status(&invalid.delivery_id, DeliveryState::Failed).await?;
        assert!(failed.error.contains("E.164"), "{}", failed.error);

        // A request without a channel is dead-lettered, not guessed at.
        let mut voice = Stack::request("+15551230006", "code 4");
        voice.channel = Channel::Unspecified.into();
        stack.send(&voice).await?;

        stack.quiesce().await?;
        let stats = stack.sim_stats().await?;
        assert_eq!((stats.messages_accepted, stats.requests_failed), (0, 4));
        for id in [&refused.delivery_id, &down.delivery_id, &invalid.delivery_id] {
            assert_eq!(stack.statuses(id).len(), 1, "one FAILED event for {id}");
        }
        assert!(stack.statuses(&voice.delivery_id).is_empty());
        let dead: Vec<String> = sqlx::query_scalar("SELECT error FROM vigil_dead_letters WHERE consumer = $1")
            .bind(DELIVERY_CONSUMER)
            .fetch_all(&stack.pool)
            .await?;
        assert_eq!(dead.len(), 1);
        assert!(dead[0].contains("channel is unspecified"), "{}", dead[0]);
        stack.stop().await
    })
    .await
}

#[tokio::test]
async fn status_webhook_checks_signatures_and_only_moves_forward() -> anyhow::Result<()> {
    local(async {
        // The simulator stays silent: this test plays the carrier itself.
        let stack = Stack::start("telephony_status_webhook", NEVER).await?;
        let request = Stack::request("+15551230007", "code 5");
        stack.send(&request).await?;
        let sid = stack
            .wait_status(&request.delivery_id, DeliveryState::Sent)
            .await?
            .carrier_ref;
        let failed = [("MessageSid", sid.as_str()), ("MessageStatus", "failed")];
        let delivered = [("MessageSid", sid.as_str()), ("MessageStatus", "delivered")];
        let sent = [("MessageSid", sid.as_str()), ("MessageStatus", "sent")];
        let url = stack.webhook_url(STATUS_CALLBACK_PATH);

        let forged = [
            (None, &failed),
            (Some(sign("wrong-token", &url, &failed)), &failed),
            (
                Some(sign(AUTH_TOKEN, "https://elsewhere.example.com/", &failed)),
                &failed,
            ),
            // Signed for one status, sent with another.
            (Some(sign(AUTH_TOKEN, &url, &delivered)), &failed),
        ];
        for (signature, params) in forged {
            let response = stack.post_webhook(STATUS_CALLBACK_PATH, params, signature).await?;
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
        }
        assert_eq!(
            stack.delivery_row(&request.delivery_id).await?.0,
            "sent",
            "nothing changed"
        );

        assert_eq!(
            stack.post_signed(STATUS_CALLBACK_PATH, &delivered).await?,
            StatusCode::NO_CONTENT
        );
        stack
            .wait_status(&request.delivery_id, DeliveryState::Delivered)
            .await?;
        // Repeats, late and contradicting callbacks change nothing.
        for params in [&delivered, &sent, &failed] {
            assert_eq!(
                stack.post_signed(STATUS_CALLBACK_PATH, params).await?,
                StatusCode::NO_CONTENT
            );
        }

        // Bad input gets a clear 4xx.
        let unknown = [("MessageSid", "SMdoesnotexist"), ("MessageStatus", "delivered")];
        assert_eq!(
            stack.post_signed(STATUS_CALLBACK_PATH, &unknown).await?,
            StatusCode::NOT_FOUND
        );
        let no_status = [("MessageSid", sid.as_str())];
        assert_eq!(
            stack.post_signed(STATUS_CALLBACK_PATH, &no_status).await?,
            StatusCode::BAD_REQUEST
        );
        let bad_code = [
            ("MessageSid", sid.as_str()),
            ("MessageStatus", "failed"),
            ("ErrorCode", "x"),
        ];
        assert_eq!(
            stack.post_signed(STATUS_CALLBACK_PATH, &bad_code).await?,
            StatusCode::BAD_REQUEST
        );
        let json = stack
            .http
            .post(&url)
            .json(&serde_json::json!({"MessageSid": sid}))
            .send()
            .await?;
        assert_eq!(json.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

        stack.quiesce().await?;
        let states: Vec<_> = stack
            .statuses(&request.delivery_id)
            .iter()
            .map(DeliveryStatus::state)
            .collect();
        assert_eq!(states, [DeliveryState::Sent, DeliveryState::Delivered]);
        assert_eq!(stack.delivery_row(&request.delivery_id).await?.0, "delivered");
        // Every signed, well-formed callback about the message is recorded,
        // the ones that moved nothing included; the unknown SID's is not.
        let recorded: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT kind, status, carrier_ref FROM carrier_callbacks WHERE delivery_id = $1 ORDER BY id",
        )
        .bind(DeliveryId::parse(&request.delivery_id)?.as_uuid())
        .fetch_all(&stack.pool)
        .await?;
        let shown: Vec<String> = recorded
            .iter()
            .map(|(kind, status, carrier_ref)| {
                let same = carrier_ref.as_deref() == Some(sid.as_str());
                format!("{kind}:{status}:{same}")
            })
            .collect();
        assert_eq!(
            shown,
            [
                "message_status:delivered:true",
                "message_status:delivered:true",
                "message_status:sent:true",
                "message_status:failed:true"
            ]
        );
        let strays: i64 = sqlx::query_scalar("SELECT count(*) FROM carrier_callbacks WHERE delivery_id IS NULL")
            .fetch_one(&stack.pool)
            .await?;
        assert_eq!(strays, 0);
        stack.stop().await
    })
    .await
}

#[tokio::test]
async fn an_sms_reply_answers_the_challenge() -> anyhow::Result<()> {
    local(async {
        let stack = Stack::start("telephony_inbound", Duration::from_millis(50)).await?;
        let number = "+15551230008";
        let request = Stack::request(number, "Reply YES to approve");
        stack.send(&request).await?;
        stack.wait_inbox(number, 1).await?;

        let reply: ReplyResponse = stack
            .http
            .post(format!("{}/sim/phones/{}/reply", stack.sim, urlencode(number)))
            .json(&ReplyRequest {
                body: "YES".into(),
                to: None,
            })
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        assert_eq!(reply.webhook_status, 200);
        let answer = wait_until(PATIENCE, "DeliveryAnswered", || async { stack.answers().pop() }).await?;
        assert_eq!(answer.challenge_id, request.challenge_id);
        assert_eq!(answer.channel(), Channel::Sms);
        assert_eq!((answer.from.as_str(), answer.body.as_str()), (number, "YES"));
        assert_eq!(answer.kind(), AnswerKind::Approve, "YES is the approve keyword");
        assert_eq!(answer.delivery_id, request.delivery_id);

        // The carrier posting the same message again answers nothing twice.
        let again = [
            ("MessageSid", reply.message_sid.as_str()),
            ("From", number),
            ("To", FROM_NUMBER),
            ("Body", "YES"),
        ];
        let signature = sign(AUTH_TOKEN, &stack.webhook_url(INBOUND_SMS_PATH), &again);
        let response = stack.post_webhook(INBOUND_SMS_PATH, &again, Some(signature)).await?;
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        assert_eq!(content_type.as_deref(), Some("text/xml"));
        assert!(response.text().await?.ends_with("<Response/>"));

        // A stranger's message is recorded but answers no challenge.
        let stranger = [
            ("MessageSid", "SMstranger"),
            ("From", "+15559990000"),
            ("To", FROM_NUMBER),
            ("Body", "hi"),
        ];
        assert_eq!(stack.post_signed(INBOUND_SMS_PATH, &stranger).await?, StatusCode::OK);

        // Forged and malformed posts are refused.
        let forged = [
            ("MessageSid", "SMforged"),
            ("From", number),
            ("To", FROM_NUMBER),
            ("Body", "YES"),
        ];
        let signature = sign("wrong-token", &stack.webhook_url(INBOUND_SMS_PATH), &forged);
        let response = stack.post_webhook(INBOUND_SMS_PATH, &forged, Some(signature)).await?;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let no_from = [("MessageSid", "SMnofrom"), ("To", FROM_NUMBER), ("Body", "YES")];
        assert_eq!(
            stack.post_signed(INBOUND_SMS_PATH, &no_from).await?,
            StatusCode::BAD_REQUEST
        );
        let bad_from = [
            ("MessageSid", "SMbadfrom"),
            ("From", "VIGIL"),
            ("To", FROM_NUMBER),
            ("Body", "YES"),
        ];
        assert_eq!(
            stack.post_signed(INBOUND_SMS_PATH, &bad_from).await?,
            StatusCode::BAD_REQUEST
        );

        stack.quiesce().await?;
        assert_eq!(stack.answers().len(), 1);
        let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM inbound_messages")
            .fetch_one(&stack.pool)
            .await?;
        assert_eq!(recorded, 2, "the reply and the stranger's message, once each");
        ensure!(
            stack.inbox(number).await?.len() == 1,
            "TwiML answered nothing back to the phone"
        );
        stack.stop().await
    })
    .await
}
