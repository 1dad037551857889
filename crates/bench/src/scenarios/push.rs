//! `push`: Authenticate(push) → the simulated device gets the push, reads the
//! number on the (simulated) sign-in screen and approves → WatchAuth ends
//! approved. "Vigil adds" is the round trip less the simulator's configured
//! answer delay (`--sim-delay`, the simulator's `VIGIL_SIM_STATUS_DELAY_MS`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt, stream};
use tokio::time::Instant;
use vigil_carrier_sim::control::{DeviceAction, DeviceBehaviour, DeviceEnrolled, EnrollDevice, Screen};
use vigil_proto::v1::{ChallengeState, Decision, EnrollFactorRequest, Factor, WatchAuthRequest};

use super::{start, unexpected};
use crate::driver::Scenario;
use crate::setup::{NewUser, Tenant};
use crate::stats::{Failure, Outcome};
use crate::users::{Pace, Pool};

pub struct PushUser {
    pub username: String,
    pub pace: Pace,
}

pub struct Push {
    tenant: Arc<Tenant>,
    pub pool: Pool<PushUser>,
    http: reqwest::Client,
    sim: String,
    device_delay: Duration,
    per_user: Option<u32>,
    sent: AtomicU64,
}

/// Enrols a simulated phone for each user: EnrollFactor(push) gives the QR
/// payload, the simulator's phone enrols with it and approves every push.
pub async fn enrol_devices(tenant: &Tenant, sim: &str, users: Vec<NewUser>) -> anyhow::Result<Vec<PushUser>> {
    let http = reqwest::Client::new();
    let sim = sim.trim_end_matches('/');
    stream::iter(users)
        .map(|user| {
            let (mut admin, http) = (tenant.admin.clone(), http.clone());
            let provider_id = tenant.provider_id.clone();
            async move {
                let issued = admin
                    .enroll_factor(EnrollFactorRequest {
                        provider_id,
                        user: user.username.clone(),
                        factor: Factor::Push as i32,
                    })
                    .await
                    .with_context(|| format!("push enrolment for {}", user.username))?
                    .into_inner();
                let enrolled: DeviceEnrolled = http
                    .post(format!("{sim}/sim/devices/enroll"))
                    .json(&EnrollDevice {
                        payload: Some(issued.enrollment_uri),
                        device_name: Some(format!("{}'s phone", user.username)),
                        behaviour: Some(DeviceBehaviour {
                            action: DeviceAction::Approve,
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .context("enrolling a simulated phone")?
                    .json()
                    .await?;
                if !enrolled.enrolled {
                    bail!("Vigil refused the phone of {}: {:?}", user.username, enrolled.error);
                }
                anyhow::Ok(PushUser {
                    username: user.username,
                    pace: Pace::default(),
                })
            }
        })
        .buffer_unordered(16)
        .try_collect()
        .await
}

impl Push {
    pub fn new(
        tenant: Arc<Tenant>,
        users: Vec<PushUser>,
        sim: &str,
        device_delay: Duration,
        per_user: Option<u32>,
    ) -> Self {
        Self {
            tenant,
            pool: Pool::new(users),
            http: reqwest::Client::new(),
            sim: sim.trim_end_matches('/').to_owned(),
            device_delay,
            per_user,
            sent: AtomicU64::new(0),
        }
    }

    async fn login(&self, username: &str) -> Result<Outcome, Failure> {
        let t0 = Instant::now();
        let mut agent = self.tenant.agent(self.sent.fetch_add(1, Ordering::Relaxed));
        let started = start(&mut agent, username, Factor::Push).await?;
        if started.decision() != Decision::Challenge {
            return Err(unexpected(started.decision(), started.reason()));
        }
        // The user reads the number off the sign-in screen.
        self.http
            .put(format!("{}/sim/screens/{}", self.sim, started.challenge_id))
            .json(&Screen {
                number: started.match_number,
            })
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|_| Failure::new("sim_unreachable"))?;
        let states = agent
            .watch_auth(WatchAuthRequest {
                challenge_id: started.challenge_id,
            })
            .await
            .map_err(|s| Failure::grpc(&s))?;
        let last = states.last().ok_or_else(|| Failure::new("watch_ended_empty"))?;
        match (last.state(), last.reason()) {
            (ChallengeState::Approved, _) => Ok(Outcome {
                vigil: Some(t0.elapsed().saturating_sub(self.device_delay)),
            }),
            (state, reason) => Err(Failure::new(format!(
                "{}:{}",
                state
                    .as_str_name()
                    .trim_start_matches("CHALLENGE_STATE_")
                    .to_ascii_lowercase(),
                super::reason_name(reason)
            ))),
        }
    }
}

impl Scenario for Push {
    type Job = PushUser;

    async fn prepare(&self) -> Result<Self::Job, Failure> {
        Ok(self.pool.take(|u| u.pace.claim(Instant::now(), self.per_user)).await?.0)
    }

    async fn run(&self, user: Self::Job) -> Result<Outcome, Failure> {
        let outcome = self.login(&user.username).await;
        self.pool.put_back(user);
        outcome
    }
}
