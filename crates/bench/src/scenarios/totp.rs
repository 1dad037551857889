//! `totp`: Authenticate(totp) then VerifyPasscode with the code of a step
//! the user has not used, computed from the seed the benchmark enrolled.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use vigil_proto::v1::{Decision, Factor, Reason};

use super::{login_with_code, unexpected};
use crate::driver::Scenario;
use crate::setup::Tenant;
use crate::stats::{Failure, Outcome};
use crate::users::{Pool, TotpUser};

pub struct Totp {
    tenant: Arc<Tenant>,
    pub pool: Pool<TotpUser>,
    sent: AtomicU64,
    /// The code goes with Authenticate (`--one-call`).
    one_call: bool,
}

impl Totp {
    pub fn new(tenant: Arc<Tenant>, users: Vec<TotpUser>, one_call: bool) -> Self {
        Self {
            tenant,
            pool: Pool::new(users),
            sent: AtomicU64::new(0),
            one_call,
        }
    }
}

impl Scenario for Totp {
    type Job = (TotpUser, String);

    async fn prepare(&self) -> Result<Self::Job, Failure> {
        self.pool.take_code().await
    }

    async fn run(&self, (user, code): Self::Job) -> Result<Outcome, Failure> {
        let mut agent = self.tenant.agent(self.sent.fetch_add(1, Ordering::Relaxed));
        let answer = login_with_code(&mut agent, &user.username, Factor::Totp, &code, self.one_call).await;
        self.pool.put_back(user);
        match answer? {
            (Decision::Allow, Reason::Approved) => Ok(Outcome::default()),
            (decision, reason) => Err(unexpected(decision, reason)),
        }
    }
}
