//! `deny`: Authenticate(totp) then VerifyPasscode with a wrong code, spread
//! over many users so each collects failures up to the lockout threshold:
//! the failure path and the lockout bookkeeping, at the rate of success.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use vigil_proto::v1::{Decision, Factor, Reason};

use super::{login_with_code, unexpected};
use crate::driver::Scenario;
use crate::setup::Tenant;
use crate::stats::{Failure, Outcome};
use crate::users::{Pool, TotpUser, unix_now};

pub struct Deny {
    tenant: Arc<Tenant>,
    pub pool: Pool<TotpUser>,
    per_user: u32,
    sent: AtomicU64,
    /// The code goes with Authenticate (`--one-call`).
    one_call: bool,
}

impl Deny {
    pub fn new(tenant: Arc<Tenant>, users: Vec<TotpUser>, per_user: u32, one_call: bool) -> Self {
        Self {
            tenant,
            pool: Pool::new(users),
            per_user: per_user.max(1),
            sent: AtomicU64::new(0),
            one_call,
        }
    }
}

impl Scenario for Deny {
    type Job = (TotpUser, String);

    async fn prepare(&self) -> Result<Self::Job, Failure> {
        // Users that had their share are not put back, so this only waits
        // when every user is spent (raise --users).
        let (mut user, ()) = self.pool.take(|_| Some(())).await?;
        user.uses += 1;
        let code = user.wrong_code(unix_now());
        Ok((user, code))
    }

    async fn run(&self, (user, code): Self::Job) -> Result<Outcome, Failure> {
        let mut agent = self.tenant.agent(self.sent.fetch_add(1, Ordering::Relaxed));
        let answer = login_with_code(&mut agent, &user.username, Factor::Totp, &code, self.one_call).await;
        if user.uses < self.per_user {
            self.pool.put_back(user);
        }
        match answer? {
            // The first failures are wrong codes; the one that reaches the
            // threshold locks the user, later ones meet the lock.
            (Decision::Deny, Reason::WrongCode | Reason::LockedOut | Reason::TooManyAttempts) => Ok(Outcome::default()),
            (decision, reason) => Err(unexpected(decision, reason)),
        }
    }
}
