use std::{path::Path, time::Duration};

use anyhow::Context;
use tempfile::TempDir;
use vigil_testkit::{NatsServer, PgServer, ServiceProcess, free_port, free_udp_port, workspace_bin};

pub const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789";
pub const BILLING_TOKEN: &str = "e2e-billing-token-0123456789";
const CODE_KEY: &str = "e2e-code-key-0123456789abcdef";
/// Test-only key-encryption key and token pepper (32 bytes each, base64).
const KEYS: &str = "e2e:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const TOKEN_PEPPER: &str = "cGVwcGVyLXBlcHBlci1wZXBwZXItcGVwcGVyLXBlcHBlcg==";
const SIM_SID: &str = "ACe2e";
const SIM_TOKEN: &str = "e2e-sim-auth-token";

#[derive(Debug, Clone)]
pub struct StackOptions {
    pub challenge_lifetime_secs: u32,
    pub rpc_timeout_ms: u64,
    pub activation_ttl_secs: u32,
    pub lockout_threshold: u32,
    /// More environment for one service: (service name as in the logs, variable, value).
    pub env: Vec<(&'static str, &'static str, String)>,
}

impl StackOptions {
    fn env_for(&self, service: &str) -> impl Iterator<Item = (&str, String)> {
        self.env
            .iter()
            .filter(move |(s, _, _)| *s == service)
            .map(|(_, k, v)| (*k, v.clone()))
    }
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            challenge_lifetime_secs: 120,
            rpc_timeout_ms: 2000,
            activation_ttl_secs: 600,
            lockout_threshold: 5,
            env: vec![],
        }
    }
}

/// A running stack. Field order is drop order: services stop before the
/// servers they use.
pub struct Stack {
    pub gateway: ServiceProcess,
    pub challenge: ServiceProcess,
    pub telephony: ServiceProcess,
    pub billing: ServiceProcess,
    pub sim: ServiceProcess,
    pub nats: NatsServer,
    pub pg: PgServer,
    pub grpc_url: String,
    pub sim_url: String,
    pub billing_url: String,
    /// Each service's HTTP base URL (health, metrics, webhooks), by the
    /// service's name in the logs.
    pub http_urls: Vec<(&'static str, String)>,
    /// The gateway's RADIUS (UDP) address.
    pub radius_addr: String,
    pub admin_token: String,
    pub billing_token: String,
    pub logs: TempDir,
}

fn env(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
    all.push((
        "RUST_LOG".into(),
        std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
    ));
    all
}

async fn start(
    name: &str,
    bin: &str,
    envs: &[(&str, String)],
    health: &str,
    logs: &Path,
    options: &StackOptions,
) -> anyhow::Result<ServiceProcess> {
    let mut envs = env(envs);
    envs.extend(options.env_for(name).map(|(k, v)| (k.to_owned(), v)));
    let mut process = ServiceProcess::spawn(name, &workspace_bin(bin)?, &envs, logs)?;
    process
        .wait_http_ready(&format!("http://{health}/readyz"), Duration::from_secs(60))
        .await
        .with_context(|| format!("{name} did not become ready"))?;
    Ok(process)
}

impl Stack {
    pub async fn start(options: StackOptions) -> anyhow::Result<Stack> {
        vigil_testkit::init_test_logging();
        let nats = NatsServer::start().await?;
        let pg = PgServer::start().await?;
        let logs = tempfile::Builder::new().prefix("vigil-e2e-logs").tempdir()?;
        let host = |port: u16| format!("127.0.0.1:{port}");
        let (sim_addr, tel_http, bil_http, chl_http, gw_http, gw_grpc) = (
            host(free_port()),
            host(free_port()),
            host(free_port()),
            host(free_port()),
            host(free_port()),
            host(free_port()),
        );
        let nats_url = nats.url();
        let radius_addr = host(free_udp_port());

        let sim = start(
            "carrier-sim",
            "vigil-carrier-sim",
            &[
                ("VIGIL_SIM_ADDR", sim_addr.clone()),
                ("VIGIL_SIM_ACCOUNT_SID", SIM_SID.into()),
                ("VIGIL_SIM_AUTH_TOKEN", SIM_TOKEN.into()),
                (
                    "VIGIL_SIM_INBOUND_SMS_URL",
                    format!("http://{tel_http}/v1/carrier/twilio/inbound"),
                ),
                ("VIGIL_SIM_STATUS_DELAY_MS", "20".into()),
            ],
            &sim_addr,
            logs.path(),
            &options,
        )
        .await?;
        let telephony = start(
            "telephony",
            "vigil-telephony",
            &[
                ("VIGIL_HTTP_ADDR", tel_http.clone()),
                ("VIGIL_DATABASE_URL", pg.create_database("vigil_telephony").await?),
                ("VIGIL_NATS_URL", nats_url.clone()),
                ("VIGIL_PUBLIC_BASE_URL", format!("http://{tel_http}")),
                ("VIGIL_TWILIO__BASE_URL", format!("http://{sim_addr}")),
                ("VIGIL_TWILIO__ACCOUNT_SID", SIM_SID.into()),
                ("VIGIL_TWILIO__AUTH_TOKEN", SIM_TOKEN.into()),
                ("VIGIL_TWILIO__FROM_NUMBER", "+15550000000".into()),
                ("VIGIL_PUSH__BASE_URL", format!("http://{sim_addr}")),
                ("VIGIL_RPC_TIMEOUT_MS", options.rpc_timeout_ms.to_string()),
            ],
            &tel_http,
            logs.path(),
            &options,
        )
        .await?;
        let billing = start(
            "billing",
            "vigil-billing",
            &[
                ("VIGIL_HTTP_ADDR", bil_http.clone()),
                ("VIGIL_DATABASE_URL", pg.create_database("vigil_billing").await?),
                ("VIGIL_NATS_URL", nats_url.clone()),
                ("VIGIL_API_TOKEN", BILLING_TOKEN.into()),
            ],
            &bil_http,
            logs.path(),
            &options,
        )
        .await?;
        let challenge = start(
            "challenge",
            "vigil-challenge",
            &[
                ("VIGIL_HTTP_ADDR", chl_http.clone()),
                ("VIGIL_DATABASE_URL", pg.create_database("vigil_challenge").await?),
                ("VIGIL_NATS_URL", nats_url.clone()),
                ("VIGIL_CODE_KEY", CODE_KEY.into()),
                ("VIGIL_PIN_HASH_MEMORY_KIB", "8".into()),
                ("VIGIL_KEYS", KEYS.into()),
                ("VIGIL_LOCKOUT_THRESHOLD", options.lockout_threshold.to_string()),
                (
                    "VIGIL_CHALLENGE_LIFETIME_SECS",
                    options.challenge_lifetime_secs.to_string(),
                ),
                ("VIGIL_PUSH_ENROLL_URL", format!("http://{tel_http}/v1/push/enroll")),
            ],
            &chl_http,
            logs.path(),
            &options,
        )
        .await?;
        let gateway = start(
            "auth-gateway",
            "vigil-auth-gateway",
            &[
                ("VIGIL_GRPC_ADDR", gw_grpc.clone()),
                ("VIGIL_HTTP_ADDR", gw_http.clone()),
                ("VIGIL_DATABASE_URL", pg.create_database("vigil_gateway").await?),
                ("VIGIL_NATS_URL", nats_url),
                ("VIGIL_ADMIN_TOKEN", ADMIN_TOKEN.into()),
                ("VIGIL_RPC_TIMEOUT_MS", options.rpc_timeout_ms.to_string()),
                ("VIGIL_KEYS", KEYS.into()),
                ("VIGIL_TOKEN_PEPPER", TOKEN_PEPPER.into()),
                // argon2's smallest memory cost: these tests check logic, not cost.
                ("VIGIL_PASSWORD_HASH_MEMORY_KIB", "8".into()),
                ("VIGIL_ACTIVATION_TTL_SECS", options.activation_ttl_secs.to_string()),
                ("VIGIL_RADIUS_ADDR", radius_addr.clone()),
            ],
            &gw_http,
            logs.path(),
            &options,
        )
        .await?;
        Ok(Stack {
            gateway,
            challenge,
            telephony,
            billing,
            sim,
            nats,
            pg,
            grpc_url: format!("http://{gw_grpc}"),
            sim_url: format!("http://{sim_addr}"),
            billing_url: format!("http://{bil_http}"),
            http_urls: vec![
                ("auth-gateway", format!("http://{gw_http}")),
                ("challenge", format!("http://{chl_http}")),
                ("telephony", format!("http://{tel_http}")),
                ("billing", format!("http://{bil_http}")),
            ],
            radius_addr,
            admin_token: ADMIN_TOKEN.into(),
            billing_token: BILLING_TOKEN.into(),
            logs,
        })
    }

    /// Every service's log tail, for a failing test's message.
    pub fn log_tails(&self, lines: usize) -> String {
        [
            &self.gateway,
            &self.challenge,
            &self.telephony,
            &self.billing,
            &self.sim,
        ]
        .iter()
        .map(|p| format!("==== {}\n{}", p.log_path().display(), p.log_tail(lines)))
        .collect::<Vec<_>>()
        .join("\n")
    }

    /// The secrets the services were started with, for tests that look for
    /// them where they must not be (logs).
    pub fn configured_secrets(&self) -> Vec<&'static str> {
        let kek = KEYS.split_once(':').map_or(KEYS, |(_, key)| key);
        vec![ADMIN_TOKEN, BILLING_TOKEN, CODE_KEY, kek, TOKEN_PEPPER, SIM_TOKEN]
    }

    /// The four services (not the carrier simulator, which plays the
    /// outside world), by their names in the logs.
    pub fn services(&self) -> [&ServiceProcess; 4] {
        [&self.gateway, &self.challenge, &self.telephony, &self.billing]
    }

    /// `GET /metrics` of the service named `service` (as in [`Stack::http_urls`]).
    pub async fn metrics(&self, service: &str) -> anyhow::Result<String> {
        let (_, base) = self
            .http_urls
            .iter()
            .find(|(name, _)| *name == service)
            .ok_or_else(|| anyhow::anyhow!("no service named {service}"))?;
        Ok(reqwest::get(format!("{base}/metrics"))
            .await?
            .error_for_status()?
            .text()
            .await?)
    }

    /// The SMS bodies the simulated phone `number` received, oldest first.
    pub async fn sim_inbox(&self, number: &str) -> anyhow::Result<Vec<String>> {
        let url = format!("{}/sim/inbox/{}", self.sim_url, number);
        let entries: Vec<serde_json::Value> = reqwest::get(url).await?.error_for_status()?.json().await?;
        Ok(entries
            .iter()
            .filter_map(|e| e["body"].as_str().map(str::to_owned))
            .collect())
    }

    /// The 6-digit code in the newest SMS to `number` once `count` have arrived.
    pub async fn sms_code(&self, number: &str, count: usize) -> anyhow::Result<String> {
        let bodies = vigil_testkit::wait_until(
            std::time::Duration::from_secs(15),
            "the SMS in the simulator's inbox",
            || async {
                let inbox = self.sim_inbox(number).await?;
                anyhow::Ok((inbox.len() >= count).then_some(inbox))
            },
        )
        .await?;
        let body = bodies.last().map(String::as_str).unwrap_or_default();
        body.split(|c: char| !c.is_ascii_digit())
            .find(|w| w.len() == 6)
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no 6-digit code in {body:?}"))
    }

    /// Waits until the newest message on `subject` is in `stream` and the
    /// durable `consumer` has acknowledged it: the service has handled it.
    pub async fn wait_consumed(&self, stream: &str, subject: &str, consumer: &str) -> anyhow::Result<()> {
        let js = async_nats::jetstream::new(async_nats::connect(self.nats.url()).await?);
        let stream = js.get_stream(stream).await?;
        vigil_testkit::wait_until(Duration::from_secs(15), "the event to be consumed", || {
            let stream = stream.clone();
            async move {
                let Ok(last) = stream.get_last_raw_message_by_subject(subject).await else {
                    return anyhow::Ok(None);
                };
                let info = stream.consumer_info(consumer).await?;
                anyhow::Ok((info.ack_floor.stream_sequence >= last.sequence && info.num_ack_pending == 0).then_some(()))
            }
        })
        .await
    }

    /// How many events of type `E` `stream` holds.
    pub async fn count_events<E: vigil_bus::Event>(&self, stream: &str) -> anyhow::Result<usize> {
        use futures::TryStreamExt as _;
        let js = async_nats::jetstream::new(async_nats::connect(self.nats.url()).await?);
        let stream = js.get_stream(stream).await?;
        let counts: Vec<(String, usize)> = stream.info_with_subjects(E::SUBJECT).await?.try_collect().await?;
        Ok(counts.into_iter().map(|(_, n)| n).sum())
    }

    /// Waits for an event of type `E` in `stream` that `wanted` accepts to be
    /// the newest on its subject: one a service published through its outbox.
    pub async fn wait_event<E: vigil_bus::Event>(
        &self,
        stream: &str,
        wanted: impl Fn(&E) -> bool,
    ) -> anyhow::Result<E> {
        let js = async_nats::jetstream::new(async_nats::connect(self.nats.url()).await?);
        let stream = js.get_stream(stream).await?;
        let wanted = &wanted;
        vigil_testkit::wait_until(Duration::from_secs(15), "the event", || {
            let stream = stream.clone();
            async move {
                let Ok(last) = stream.get_last_raw_message_by_subject(E::SUBJECT).await else {
                    return anyhow::Ok(None);
                };
                let envelope = vigil_bus::envelope::decode_envelope(&last.payload)?;
                let event: E = vigil_bus::envelope::unwrap(&envelope)?;
                anyhow::Ok(wanted(&event).then_some(event))
            }
        })
        .await
    }

    /// Runs the `vigil` CLI against this stack with the operator token and
    /// `--json`; its output.
    pub fn vigil(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let output = std::process::Command::new(workspace_bin("vigil")?)
            .args([
                "--json",
                "--gateway",
                &self.grpc_url,
                "--admin-token",
                &self.admin_token,
            ])
            .args(args)
            .output()?;
        anyhow::ensure!(
            output.status.success(),
            "vigil {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    /// GET billing's usage for a provider: (HTTP status, JSON body).
    /// Sends `request` straight to the challenge service, as the gateway
    /// does; a resend keeps its challenge id.
    pub async fn start_challenge(
        &self,
        request: &vigil_proto::rpc::StartChallengeRequest,
    ) -> anyhow::Result<vigil_proto::rpc::StartChallengeReply> {
        let nats = async_nats::connect(self.nats.url()).await?;
        let reply = vigil_bus::rpc::call(
            &nats,
            vigil_bus::subjects::RPC_CHALLENGE_START,
            request,
            Duration::from_secs(5),
        )
        .await?;
        Ok(reply)
    }

    /// Waits until billing counts `expected` authentications for
    /// `provider_id`, then gives a duplicate or late event half a second to
    /// show and checks the count still holds; returns the usage.
    pub async fn authentications_counted(&self, provider_id: &str, expected: u64) -> anyhow::Result<serde_json::Value> {
        vigil_testkit::wait_until(
            Duration::from_secs(15),
            &format!("billing to count {expected} authentications"),
            || async {
                let (status, body) = self.billing_usage(provider_id).await?;
                anyhow::Ok((status == 200 && body["authentications"] == expected).then_some(()))
            },
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, usage) = self.billing_usage(provider_id).await?;
        anyhow::ensure!(
            usage["authentications"] == expected,
            "billing counted {expected} authentications, then {usage}"
        );
        Ok(usage)
    }

    pub async fn billing_usage(&self, provider_id: &str) -> anyhow::Result<(u16, serde_json::Value)> {
        let response = reqwest::Client::new()
            .get(format!("{}/v1/providers/{}/usage", self.billing_url, provider_id))
            .bearer_auth(&self.billing_token)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or_default()))
    }
}
