//! `sms`: Authenticate(sms) → the code arrives in the carrier simulator's
//! inbox → VerifyPasscode. Besides the round trip, it reports the time Vigil
//! itself adds: from the Authenticate call to the simulator accepting the
//! message, plus the VerifyPasscode call — without the benchmark's inbox
//! polling and without the simulator's status delays (which only pace the
//! delivery callbacks, not the inbox). The simulator's acceptance time is
//! its wall clock, so this part assumes both run on one machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;
use vigil_carrier_sim::control::InboxEntry;
use vigil_proto::v1::{Decision, Factor, Reason};

use super::{start, unexpected, verify};
use crate::driver::Scenario;
use crate::setup::{NewUser, Tenant};
use crate::stats::{Failure, Outcome};
use crate::users::{Pace, Pool, unix_now};

/// Give up on an SMS after this long.
const SMS_WAIT: Duration = Duration::from_secs(5);

pub struct SmsUser {
    pub username: String,
    pub phone: String,
    /// The newest message already read from this phone's inbox.
    pub last_sid: Option<String>,
    pub pace: Pace,
}

pub struct Sms {
    tenant: Arc<Tenant>,
    pub pool: Pool<SmsUser>,
    http: reqwest::Client,
    sim: String,
    poll: Duration,
    per_user: Option<u32>,
    sent: AtomicU64,
}

impl Sms {
    /// `per_user`: logins each user may make per two minutes (None: no limit).
    pub fn new(tenant: Arc<Tenant>, users: Vec<SmsUser>, sim: &str, poll: Duration, per_user: Option<u32>) -> Self {
        Self {
            per_user,
            tenant,
            pool: Pool::new(users),
            http: reqwest::Client::new(),
            sim: sim.trim_end_matches('/').to_owned(),
            poll,
            sent: AtomicU64::new(0),
        }
    }

    /// The phone's inbox once it holds a message newer than `after`, or
    /// after `wait` (the simulator holds the request; zero: at once).
    async fn inbox(&self, phone: &str, after: Option<&str>, wait: Duration) -> Result<Vec<InboxEntry>, Failure> {
        let mut query = vec![("wait_ms", wait.as_millis().to_string())];
        if let Some(sid) = after {
            query.push(("after", sid.to_owned()));
        }
        let response = self
            .http
            .get(format!("{}/sim/inbox/{phone}", self.sim))
            .query(&query)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|_| Failure::new("sim_unreachable"))?;
        response.json().await.map_err(|_| Failure::new("sim_bad_inbox"))
    }

    /// Waits for a message newer than `last_sid`: held by the simulator
    /// until it arrives, or polled every `--sms-poll` if that is set.
    async fn next_sms(&self, phone: &str, last_sid: Option<&str>) -> Result<InboxEntry, Failure> {
        let give_up = Instant::now() + SMS_WAIT;
        loop {
            let wait = if self.poll.is_zero() {
                give_up.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            if let Some(newest) = self.inbox(phone, last_sid, wait).await?.pop()
                && Some(newest.sid.as_str()) != last_sid
            {
                return Ok(newest);
            }
            if Instant::now() >= give_up {
                return Err(Failure::new("no_sms"));
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    async fn login(&self, user: &mut SmsUser) -> Result<Outcome, Failure> {
        let mut agent = self.tenant.agent(self.sent.fetch_add(1, Ordering::Relaxed));
        let started_wall = unix_now();
        let started = start(&mut agent, &user.username, Factor::Sms).await?;
        if started.decision() != Decision::Challenge {
            return Err(unexpected(started.decision(), started.reason()));
        }
        let sms = self.next_sms(&user.phone, user.last_sid.as_deref()).await?;
        user.last_sid = Some(sms.sid.clone());
        let code = six_digits(&sms.body).ok_or_else(|| Failure::new("no_code_in_sms"))?;
        let accepted = Duration::from_nanos(
            u64::try_from(sms.received_at.timestamp_nanos_opt().unwrap_or_default()).unwrap_or_default(),
        );
        let verify_started = Instant::now();
        let answer = verify(&mut agent, started.challenge_id, &code).await?;
        let to_carrier = accepted.saturating_sub(started_wall);
        match answer {
            (Decision::Allow, Reason::Approved) => Ok(Outcome {
                vigil: Some(to_carrier + verify_started.elapsed()),
            }),
            (decision, reason) => Err(unexpected(decision, reason)),
        }
    }
}

/// The users with what their inboxes already hold (a phone number may have
/// been used by an earlier run), so only new messages are read as codes.
pub async fn read_inboxes(sim: &str, users: Vec<NewUser>) -> anyhow::Result<Vec<SmsUser>> {
    let http = reqwest::Client::new();
    let sim = sim.trim_end_matches('/');
    let mut ready = Vec::with_capacity(users.len());
    for user in users {
        let inbox: Vec<InboxEntry> = http
            .get(format!("{sim}/sim/inbox/{}", user.phone))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("reading the carrier simulator's inbox at {sim}"))?
            .json()
            .await?;
        ready.push(SmsUser {
            username: user.username,
            phone: user.phone,
            last_sid: inbox.last().map(|m| m.sid.clone()),
            pace: Pace::default(),
        });
    }
    Ok(ready)
}

/// The first run of exactly six digits in an SMS body.
fn six_digits(body: &str) -> Option<String> {
    body.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .map(str::to_owned)
}

impl Scenario for Sms {
    type Job = SmsUser;

    async fn prepare(&self) -> Result<Self::Job, Failure> {
        Ok(self.pool.take(|u| u.pace.claim(Instant::now(), self.per_user)).await?.0)
    }

    async fn run(&self, mut user: Self::Job) -> Result<Outcome, Failure> {
        let outcome = self.login(&mut user).await;
        self.pool.put_back(user);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_is_the_six_digit_word() {
        assert_eq!(
            six_digits("Your Vigil code is 042917. It expires in 2 minutes.").as_deref(),
            Some("042917")
        );
        assert_eq!(six_digits("call 12345 or 1234567"), None);
    }
}
