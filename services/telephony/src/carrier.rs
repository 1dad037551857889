//! Sending SMS through the Twilio-style carrier, retrying the failures that
//! may pass.

use std::{future::Future, time::Duration};

use vigil_core::PhoneNumber;
use vigil_twilio::{MessagesClient, SendSms, TwilioError};

/// The carrier's name in delivery rows and events.
pub const TWILIO: &str = "twilio";

/// Longest a single carrier request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often and how patiently a send is tried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries in all, at least 1.
    pub attempts: u32,
    /// Wait before the second try; it doubles before each further one.
    pub base_delay: Duration,
}

impl RetryPolicy {
    /// Waits longer than this are pointless: the challenge will have expired.
    const MAX_DELAY: Duration = Duration::from_secs(10);

    pub fn new(attempts: u32) -> Self {
        Self {
            attempts: attempts.max(1),
            base_delay: Duration::from_millis(200),
        }
    }

    /// The wait after failed try number `tried` (1-based): base·2^(tried-1).
    fn delay_after(&self, tried: u32) -> Duration {
        let factor = 2u32.saturating_pow(tried.saturating_sub(1));
        self.base_delay.saturating_mul(factor).min(Self::MAX_DELAY)
    }

    /// The longest a send can take when every try runs into `per_try`.
    pub fn worst_case(&self, per_try: Duration) -> Duration {
        (1..self.attempts).fold(per_try.saturating_mul(self.attempts), |total, tried| {
            total.saturating_add(self.delay_after(tried))
        })
    }
}

/// Runs `op` until it succeeds, fails for good, or runs out of tries.
/// Returns the outcome and how many tries were made.
pub async fn with_retries<T, E, F, Fut>(
    policy: RetryPolicy,
    is_retryable: impl Fn(&E) -> bool,
    mut op: F,
) -> (Result<T, E>, u32)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut tried = 0;
    loop {
        tried += 1;
        match op().await {
            Err(e) if tried < policy.attempts && is_retryable(&e) => {
                tokio::time::sleep(policy.delay_after(tried)).await;
            }
            outcome => return (outcome, tried),
        }
    }
}

/// A message the carrier accepted.
#[derive(Debug)]
pub struct Accepted {
    /// The carrier's message id (Twilio Message SID).
    pub carrier_ref: String,
    pub attempts: u32,
}

/// A message the carrier would not take.
#[derive(Debug)]
pub struct Refused {
    /// Safe to log and to publish: never the body nor the full number.
    pub reason: String,
    pub attempts: u32,
}

/// The SMS side of the Twilio-style carrier.
#[derive(Clone)]
pub struct SmsCarrier {
    client: MessagesClient,
    from: String,
    status_callback: String,
    retry: RetryPolicy,
}

impl SmsCarrier {
    pub fn new(client: MessagesClient, from: String, status_callback: String, retry: RetryPolicy) -> Self {
        Self {
            client,
            from,
            status_callback,
            retry,
        }
    }

    /// The HTTP client carrier calls go through.
    pub fn http_client() -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("vigil-telephony/", env!("CARGO_PKG_VERSION")))
            .build()
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    pub async fn send(&self, to: &PhoneNumber, body: &str) -> Result<Accepted, Refused> {
        let request = SendSms {
            to: to.as_str().to_owned(),
            from: self.from.clone(),
            body: body.to_owned(),
            status_callback: Some(self.status_callback.clone()),
        };
        let (outcome, attempts) = with_retries(self.retry, TwilioError::is_retryable, || async {
            let result = self.client.send_sms(&request).await;
            if let Err(error) = &result {
                tracing::warn!(
                    to = %to.masked(),
                    error = %describe(error),
                    retryable = error.is_retryable(),
                    "carrier refused SMS"
                );
            }
            result
        })
        .await;
        match outcome {
            Ok(message) => Ok(Accepted {
                carrier_ref: message.sid,
                attempts,
            }),
            Err(error) => Err(Refused {
                reason: describe(&error),
                attempts,
            }),
        }
    }
}

/// A carrier error in words fit for logs and events. Carriers echo the
/// destination number in their error messages, so those are left out.
pub fn describe(error: &TwilioError) -> String {
    match error {
        TwilioError::Api {
            status,
            code: Some(code),
            ..
        } => {
            format!("carrier answered HTTP {status} (error {code})")
        }
        TwilioError::Api { status, code: None, .. } => format!("carrier answered HTTP {status}"),
        TwilioError::Transport(e) if e.is_timeout() => "carrier did not answer in time".to_owned(),
        TwilioError::Transport(_) => "carrier unreachable".to_owned(),
        TwilioError::Decode(_) => "carrier sent an unreadable response".to_owned(),
        TwilioError::InvalidBaseUrl(_) => "carrier base URL is misconfigured".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn quick(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            base_delay: Duration::ZERO,
        }
    }

    #[tokio::test]
    async fn retries_retryable_errors_until_success() {
        let calls = Cell::new(0);
        let (outcome, tried) = with_retries(
            quick(3),
            |_: &&str| true,
            || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move { if n < 3 { Err("busy") } else { Ok(n) } }
            },
        )
        .await;
        assert_eq!((outcome, tried), (Ok(3), 3));
    }

    #[tokio::test]
    async fn gives_up_after_the_last_attempt() {
        let (outcome, tried) = with_retries(quick(3), |_: &&str| true, || async { Err::<(), _>("down") }).await;
        assert_eq!((outcome, tried), (Err("down"), 3));
    }

    #[tokio::test]
    async fn does_not_retry_permanent_errors() {
        let (outcome, tried) = with_retries(quick(5), |_: &&str| false, || async { Err::<(), _>("bad number") }).await;
        assert_eq!((outcome, tried), (Err("bad number"), 1));
    }

    #[test]
    fn backoff_doubles_and_is_bounded() {
        let policy = RetryPolicy::new(3);
        assert_eq!(policy.delay_after(1), Duration::from_millis(200));
        assert_eq!(policy.delay_after(2), Duration::from_millis(400));
        assert_eq!(policy.delay_after(40), RetryPolicy::MAX_DELAY);
        // 3 tries of 10 s, plus 200 ms and 400 ms between them.
        assert_eq!(
            policy.worst_case(Duration::from_secs(10)),
            Duration::from_millis(30_600)
        );
        assert_eq!(RetryPolicy::new(0).attempts, 1);
    }

    #[test]
    fn descriptions_never_echo_carrier_messages() {
        let error = TwilioError::Api {
            status: 400,
            code: Some(21211),
            message: "Invalid 'To' Phone Number: +15551234567".into(),
        };
        assert_eq!(describe(&error), "carrier answered HTTP 400 (error 21211)");
    }
}
