//! Wire types of the Calls API and of the voice webhooks Twilio sends.

use serde::{Deserialize, Serialize};

/// A call as returned by `POST .../Calls.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallResource {
    pub sid: String,
    pub account_sid: String,
    pub to: String,
    pub from: String,
    /// `queued`, `ringing`, `in-progress`, `completed`, `busy`, `failed`,
    /// `no-answer`, `canceled`.
    pub status: String,
    /// Seconds, as a decimal string, once the call has ended.
    #[serde(default)]
    pub duration: Option<String>,
    /// RFC 2822.
    pub date_created: String,
}

/// A request to place one outbound call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateCall {
    /// E.164 destination.
    pub to: String,
    /// Caller ID: an E.164 number of the account.
    pub from: String,
    /// Where the carrier fetches the call's TwiML once the call is answered.
    pub url: String,
    /// Where the carrier posts [`CallStatusCallback`]s.
    pub status_callback: Option<String>,
    /// Seconds to let the phone ring before giving up with `no-answer`.
    pub timeout: Option<u32>,
}

impl CreateCall {
    /// The form parameters of `POST .../Calls.json`.
    pub fn to_params(&self) -> Vec<(String, String)> {
        let mut params = vec![
            param("To", &self.to),
            param("From", &self.from),
            param("Url", &self.url),
        ];
        if let Some(url) = &self.status_callback {
            params.push(param("StatusCallback", url));
            // Twilio posts only `completed` unless asked; the terminal
            // statuses (busy, no-answer, ...) arrive as the final callback.
            params.push(param("StatusCallbackMethod", "POST"));
        }
        if let Some(timeout) = self.timeout {
            params.push(param("Timeout", &timeout.to_string()));
        }
        params
    }
}

/// Form posted to a call's `StatusCallback` URL when the call ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallStatusCallback {
    #[serde(rename = "CallSid")]
    pub call_sid: String,
    #[serde(rename = "AccountSid")]
    pub account_sid: String,
    #[serde(rename = "CallStatus")]
    pub call_status: String,
    #[serde(rename = "To")]
    pub to: String,
    #[serde(rename = "From")]
    pub from: String,
    /// Whole seconds the call was connected; Twilio sends it with `completed`.
    #[serde(rename = "CallDuration", default, skip_serializing_if = "Option::is_none")]
    pub call_duration: Option<u32>,
}

impl CallStatusCallback {
    /// The form parameters, as signed and sent.
    pub fn to_params(&self) -> Vec<(String, String)> {
        let mut params = vec![
            param("CallSid", &self.call_sid),
            param("AccountSid", &self.account_sid),
            param("CallStatus", &self.call_status),
            param("To", &self.to),
            param("From", &self.from),
            param("Direction", "outbound-api"),
        ];
        if let Some(seconds) = self.call_duration {
            params.push(param("CallDuration", &seconds.to_string()));
        }
        params
    }
}

fn param(key: &str, value: &str) -> (String, String) {
    (key.to_owned(), value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_call_params() {
        let call = CreateCall {
            to: "+15550001111".into(),
            from: "+15550002222".into(),
            url: "https://mfa.example.com/v1/carrier/twilio/voice/x".into(),
            status_callback: Some("https://mfa.example.com/cb".into()),
            timeout: Some(30),
        };
        let params = call.to_params();
        assert!(params.contains(&("Timeout".into(), "30".into())));
        assert!(params.contains(&("Url".into(), call.url.clone())));
        assert!(params.contains(&("StatusCallback".into(), "https://mfa.example.com/cb".into())));
    }

    #[test]
    fn status_callback_carries_duration_only_when_known() {
        let mut cb = CallStatusCallback {
            call_sid: "CA1".into(),
            account_sid: "AC1".into(),
            call_status: "no-answer".into(),
            to: "+1".into(),
            from: "+2".into(),
            call_duration: None,
        };
        assert!(!cb.to_params().iter().any(|(k, _)| k == "CallDuration"));
        cb.call_duration = Some(17);
        assert!(cb.to_params().contains(&("CallDuration".into(), "17".into())));
    }
}
