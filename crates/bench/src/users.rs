//! The benchmark's users, handed out one request at a time: a user is never
//! in two requests at once, so its codes and inbox stay unambiguous.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use vigil_otp::{OtpSecret, Totp};

use crate::stats::Failure;

/// TOTP period; Vigil accepts the step before and after the current one and
/// never the same step twice for a user.
pub const PERIOD: u64 = 30;

pub fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// The TOTP steps a code may be made for right now: Vigil accepts one step
/// either side. The low end keeps a second's margin so a code made just
/// before a step boundary is not refused just after it.
pub fn usable_steps(now: Duration) -> (u64, u64) {
    let secs = now.as_secs();
    let low = ((secs + 1) / PERIOD).saturating_sub(1);
    (low, secs / PERIOD + 1)
}

pub struct TotpUser {
    pub username: String,
    pub seed: OtpSecret,
    /// The lowest step whose code this user has not used yet.
    pub next_step: u64,
    /// Requests this user has been in (deny retires users after a few).
    pub uses: u32,
}

impl TotpUser {
    pub fn new(username: String, seed: OtpSecret) -> Self {
        Self {
            username,
            seed,
            next_step: 0,
            uses: 0,
        }
    }

    /// The step of the next unused code that Vigil would accept now, if any.
    pub fn usable_step(&self, now: Duration) -> Option<u64> {
        let (low, high) = usable_steps(now);
        let step = self.next_step.max(low);
        (step <= high).then_some(step)
    }

    /// The code for `step`, and the user moved past it.
    pub fn take_code(&mut self, step: u64) -> String {
        self.next_step = step + 1;
        self.uses += 1;
        Totp::default().generate_step(&self.seed, step).as_str().to_owned()
    }

    /// A six-digit code Vigil cannot accept now: none of the usable steps'.
    pub fn wrong_code(&self, now: Duration) -> String {
        let (low, high) = usable_steps(now);
        let right: Vec<String> = (low.saturating_sub(1)..=high + 1)
            .map(|s| Totp::default().generate_step(&self.seed, s).as_str().to_owned())
            .collect();
        (0..)
            .map(|_| format!("{:06}", rand::random_range(0..1_000_000u32)))
            .find(|c| !right.contains(c))
            .unwrap_or_default()
    }
}

/// How long a request waits for a user before it counts as `no_user_ready`
/// (the run needs more --users).
const MAX_WAIT: Duration = Duration::from_secs(2);

/// A queue of users: taken from the front, put back at the end.
pub struct Pool<T> {
    queue: Mutex<VecDeque<T>>,
    /// How often a request had to wait for a user: a sign --users is too low.
    pub waits: AtomicU64,
}

impl<T> Pool<T> {
    pub fn new(users: impl IntoIterator<Item = T>) -> Self {
        Self {
            queue: Mutex::new(users.into_iter().collect()),
            waits: AtomicU64::new(0),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<T>> {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The first user for which `ready` gives a value. Users come back in the
    /// order they were used, so when the front one is not ready the others are
    /// not either: wait a little and look again, for up to [`MAX_WAIT`].
    pub async fn take<R>(&self, mut ready: impl FnMut(&mut T) -> Option<R>) -> Result<(T, R), Failure> {
        let mut waited = false;
        let give_up = tokio::time::Instant::now() + MAX_WAIT;
        loop {
            {
                let mut queue = self.queue();
                if let Some(front) = queue.front_mut()
                    && let Some(r) = ready(front)
                    && let Some(user) = queue.pop_front()
                {
                    return Ok((user, r));
                }
            }
            if tokio::time::Instant::now() >= give_up {
                return Err(Failure::new("no_user_ready"));
            }
            if !waited {
                waited = true;
                self.waits.fetch_add(1, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn put_back(&self, user: T) {
        self.queue().push_back(user);
    }

    pub fn len(&self) -> usize {
        self.queue().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Pool<TotpUser> {
    /// The next user with an unused code Vigil accepts now, and that code.
    pub async fn take_code(&self) -> Result<(TotpUser, String), Failure> {
        let (mut user, step) = self.take(|u| u.usable_step(unix_now())).await?;
        let code = user.take_code(step);
        Ok((user, code))
    }
}

/// Logins a user makes are kept to a few per [`PACE_WINDOW`]: Vigil's
/// per-user limit slides over a minute weighing the minute before, so a pace
/// measured over two minutes never trips it.
pub const PACE_WINDOW: Duration = Duration::from_secs(120);

/// When a user's recent logins started, oldest first.
#[derive(Debug, Default)]
pub struct Pace(VecDeque<Instant>);

impl Pace {
    /// Claims a login now if the user is within `per_window` logins.
    pub fn claim(&mut self, now: Instant, per_window: Option<u32>) -> Option<()> {
        let Some(max) = per_window else { return Some(()) };
        while self.0.front().is_some_and(|t| now.duration_since(*t) >= PACE_WINDOW) {
            self.0.pop_front();
        }
        (self.0.len() < max as usize).then(|| self.0.push_back(now))
    }
}

/// Users for `requests` logins at `rate` per second when each may log in
/// `per_window` times per [`PACE_WINDOW`], and at least two per request in flight.
pub fn paced_users_needed(requests: u64, rate: f64, per_window: Option<u32>, in_flight: usize) -> usize {
    let floor = (2 * in_flight).max(64);
    let Some(per_window) = per_window else { return floor };
    let busiest = (requests as f64).min(rate * PACE_WINDOW.as_secs_f64());
    ((busiest / f64::from(per_window.max(1))).ceil() as usize + in_flight).max(floor)
}

/// How many users a TOTP scenario needs for `requests` over `run`: each
/// user has three usable codes at once (one step either side), then one more
/// per period; a tenth more covers step boundaries passing mid-run.
pub fn totp_users_needed(requests: u64, run: Duration) -> usize {
    let per_user = 3 + run.as_secs() / PERIOD;
    let users = requests.div_ceil(per_user);
    usize::try_from(users + users.div_ceil(10)).unwrap_or(usize::MAX).max(1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn user() -> TotpUser {
        TotpUser::new(
            "u".into(),
            OtpSecret::from_base32("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP").unwrap(),
        )
    }

    #[test]
    fn three_codes_at_once_then_one_per_step() {
        let mut u = user();
        let now = Duration::from_secs(30 * 1000 + 10);
        let steps: Vec<u64> = std::iter::from_fn(|| {
            let s = u.usable_step(now)?;
            u.take_code(s);
            Some(s)
        })
        .collect();
        assert_eq!(steps, vec![999, 1000, 1001]);
        assert_eq!(u.usable_step(now + Duration::from_secs(30)), Some(1002));
        assert_eq!(u.uses, 3);
    }

    #[test]
    fn no_step_before_the_boundary_margin() {
        // One second before step 1001 begins, step 999 is no longer offered.
        let u = user();
        assert_eq!(u.usable_step(Duration::from_secs(30 * 1001 - 1)), Some(1000));
    }

    #[test]
    fn wrong_codes_are_never_a_usable_code() {
        let mut u = user();
        let now = Duration::from_secs(30 * 2000);
        let wrong = u.wrong_code(now);
        assert_eq!(wrong.len(), 6);
        while let Some(s) = u.usable_step(now) {
            assert_ne!(u.take_code(s), wrong);
        }
    }

    #[test]
    fn users_keep_their_pace() {
        let mut pace = Pace::default();
        let t0 = Instant::now();
        assert!((0..3).all(|_| pace.claim(t0, Some(3)).is_some()));
        assert!(pace.claim(t0, Some(3)).is_none());
        assert!(pace.claim(t0 + PACE_WINDOW, Some(3)).is_some());
        assert!(pace.claim(t0, None).is_some());
    }

    #[test]
    fn enough_users_for_the_pace() {
        // 800/s for 20 s, 9 logins per user per two minutes: 16,000 / 9, plus those in flight.
        assert_eq!(paced_users_needed(16_000, 800.0, Some(9), 100), 1778 + 100);
        assert_eq!(paced_users_needed(100, 1500.0, Some(9), 4), 64);
        assert_eq!(paced_users_needed(16_000, 800.0, None, 100), 200);
    }

    #[test]
    fn users_needed() {
        assert_eq!(totp_users_needed(30, Duration::from_secs(1)), 11);
        assert_eq!(totp_users_needed(500, Duration::from_secs(60)), 110);
        assert_eq!(totp_users_needed(0, Duration::from_secs(1)), 1);
    }

    #[tokio::test]
    async fn the_pool_hands_out_ready_users_in_order() {
        let pool = Pool::new([1, 2, 3]);
        let (first, ()) = pool.take(|_| Some(())).await.unwrap();
        assert_eq!(first, 1);
        pool.put_back(first);
        let (second, n) = pool.take(|u| Some(*u * 10)).await.unwrap();
        assert_eq!((second, n), (2, 20));
        assert_eq!(pool.len(), 2);
        assert_eq!(pool.waits.load(Ordering::Relaxed), 0);
    }
}
