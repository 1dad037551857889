//! The Twilio-style carriers: SMS and calls, one try at a time. Retrying and
//! failing over is [`crate::send`]'s job.

use std::time::Duration;

use vigil_core::PhoneNumber;
use vigil_twilio::{CreateCall, MessagesClient, SendSms, TwilioError, Url};

use crate::config::CarrierConfig;

/// The single carrier's name when only `VIGIL_TWILIO__*` is configured.
pub const TWILIO: &str = "twilio";

/// Longest a single carrier request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often and how patiently a send is tried at one carrier.
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
    pub fn delay_after(&self, tried: u32) -> Duration {
        let factor = 2u32.saturating_pow(tried.saturating_sub(1));
        self.base_delay.saturating_mul(factor).min(Self::MAX_DELAY)
    }

    /// The longest a send at one carrier can take when every try runs into
    /// `per_try`.
    pub fn worst_case(&self, per_try: Duration) -> Duration {
        (1..self.attempts).fold(per_try.saturating_mul(self.attempts), |total, tried| {
            total.saturating_add(self.delay_after(tried))
        })
    }
}

/// The HTTP client carrier and push calls go through.
pub fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("vigil-telephony/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// What a carrier (or the push service) took.
#[derive(Debug)]
pub struct Accepted {
    /// The carrier's id: a message or call SID, a push message name.
    pub carrier_ref: String,
    /// SMS parts the carrier will bill (0 for calls and pushes).
    pub sms_segments: u32,
}

/// Why one try failed.
#[derive(Debug, Clone)]
pub struct SendError {
    /// Safe to log and to publish: never a body nor a full number.
    pub reason: String,
    /// The same request may pass later (timeouts, 429, 5xx).
    pub retryable: bool,
    /// The request itself is wrong (a bad number): no carrier will take it.
    pub request_invalid: bool,
}

impl From<&TwilioError> for SendError {
    fn from(error: &TwilioError) -> Self {
        Self {
            reason: describe(error),
            retryable: error.is_retryable(),
            request_invalid: matches!(error.status(), Some(400 | 422)),
        }
    }
}

/// One Twilio-style carrier account.
#[derive(Clone)]
pub struct Carrier {
    pub name: String,
    client: MessagesClient,
    from: String,
}

impl Carrier {
    pub fn new(config: &CarrierConfig, http: reqwest::Client) -> Result<Self, url::ParseError> {
        Ok(Self {
            name: config.name.clone(),
            client: MessagesClient::new(
                Url::parse(&config.base_url)?,
                config.account_sid.clone(),
                config.auth_token.clone(),
                http,
            ),
            from: config.from_number.clone(),
        })
    }

    pub async fn send_sms(&self, to: &PhoneNumber, body: &str, status_callback: &str) -> Result<Accepted, SendError> {
        let request = SendSms {
            to: to.as_str().to_owned(),
            from: self.from.clone(),
            body: body.to_owned(),
            status_callback: Some(status_callback.to_owned()),
        };
        let message = self.client.send_sms(&request).await.map_err(|e| self.refused(to, &e))?;
        Ok(Accepted {
            carrier_ref: message.sid,
            // A carrier that does not say is billed as one part.
            sms_segments: message.num_segments.parse().unwrap_or(1),
        })
    }

    /// Places a call whose flow is served from `twiml_url`.
    pub async fn place_call(
        &self,
        to: &PhoneNumber,
        twiml_url: String,
        status_callback: String,
        ring_seconds: u32,
    ) -> Result<Accepted, SendError> {
        let request = CreateCall {
            to: to.as_str().to_owned(),
            from: self.from.clone(),
            url: twiml_url,
            status_callback: Some(status_callback),
            timeout: Some(ring_seconds),
        };
        let call = self
            .client
            .create_call(&request)
            .await
            .map_err(|e| self.refused(to, &e))?;
        Ok(Accepted {
            carrier_ref: call.sid,
            sms_segments: 0,
        })
    }

    fn refused(&self, to: &PhoneNumber, error: &TwilioError) -> SendError {
        tracing::warn!(
            carrier = %self.name,
            to = %to.masked(),
            error = %describe(error),
            retryable = error.is_retryable(),
            "carrier refused"
        );
        SendError::from(error)
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
    use super::*;

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
        let mapped = SendError::from(&error);
        assert!(mapped.request_invalid && !mapped.retryable);
        let auth = TwilioError::Api {
            status: 401,
            code: Some(20003),
            message: String::new(),
        };
        let mapped = SendError::from(&auth);
        assert!(
            !mapped.request_invalid && !mapped.retryable,
            "an account problem fails over"
        );
    }
}
