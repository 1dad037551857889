//! Wire types of the Messages API and of the webhooks Twilio sends.
//!
//! Field names follow Twilio exactly: snake_case in REST JSON, PascalCase in
//! webhook forms. Message bodies carry one-time codes, so the `Debug` impls of
//! the types that hold one redact it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Placeholder printed instead of a message body.
const REDACTED: &str = "<redacted>";

/// A message as returned by `POST .../Messages.json` and `GET .../Messages/{sid}.json`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageResource {
    pub sid: String,
    pub account_sid: String,
    pub to: String,
    pub from: String,
    pub body: String,
    /// `queued`, `sending`, `sent`, `delivered`, `undelivered`, `failed`, ...
    pub status: String,
    /// Twilio sends this as a decimal string.
    pub num_segments: String,
    /// RFC 2822, e.g. `Thu, 24 Aug 2023 05:01:45 +0000`.
    pub date_created: String,
    #[serde(default)]
    pub error_code: Option<i64>,
    #[serde(default)]
    pub error_message: Option<String>,
}

impl fmt::Debug for MessageResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageResource")
            .field("sid", &self.sid)
            .field("account_sid", &self.account_sid)
            .field("to", &self.to)
            .field("from", &self.from)
            .field("body", &REDACTED)
            .field("status", &self.status)
            .field("num_segments", &self.num_segments)
            .field("date_created", &self.date_created)
            .field("error_code", &self.error_code)
            .field("error_message", &self.error_message)
            .finish()
    }
}

/// Twilio's JSON error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: i64,
    pub message: String,
    #[serde(default)]
    pub more_info: Option<String>,
    pub status: u16,
}

impl ApiError {
    /// Builds an error with the usual `more_info` link for `code`.
    pub fn new(status: u16, code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            more_info: Some(format!("https://www.twilio.com/docs/errors/{code}")),
            status,
        }
    }
}

/// Form posted to a message's `StatusCallback` URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCallback {
    #[serde(rename = "MessageSid")]
    pub message_sid: String,
    #[serde(rename = "MessageStatus")]
    pub message_status: String,
    #[serde(rename = "AccountSid")]
    pub account_sid: String,
    #[serde(rename = "To")]
    pub to: String,
    #[serde(rename = "From")]
    pub from: String,
    #[serde(rename = "ErrorCode", default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
}

impl StatusCallback {
    /// The form parameters, as signed and sent.
    pub fn to_params(&self) -> Vec<(String, String)> {
        let mut params = vec![
            param("MessageSid", &self.message_sid),
            param("MessageStatus", &self.message_status),
            param("AccountSid", &self.account_sid),
            param("To", &self.to),
            param("From", &self.from),
        ];
        if let Some(code) = self.error_code {
            params.push(param("ErrorCode", &code.to_string()));
        }
        params
    }
}

/// Form posted to a number's inbound-SMS webhook when a phone sends a message.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundSms {
    #[serde(rename = "MessageSid")]
    pub message_sid: String,
    #[serde(rename = "AccountSid")]
    pub account_sid: String,
    #[serde(rename = "From")]
    pub from: String,
    #[serde(rename = "To")]
    pub to: String,
    #[serde(rename = "Body")]
    pub body: String,
    /// Decimal string, as Twilio sends it.
    #[serde(rename = "NumSegments")]
    pub num_segments: String,
}

impl InboundSms {
    /// The form parameters, as signed and sent.
    pub fn to_params(&self) -> Vec<(String, String)> {
        vec![
            param("MessageSid", &self.message_sid),
            param("AccountSid", &self.account_sid),
            param("From", &self.from),
            param("To", &self.to),
            param("Body", &self.body),
            param("NumSegments", &self.num_segments),
        ]
    }
}

impl fmt::Debug for InboundSms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundSms")
            .field("message_sid", &self.message_sid)
            .field("account_sid", &self.account_sid)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("body", &REDACTED)
            .field("num_segments", &self.num_segments)
            .finish()
    }
}

/// A request to send one SMS.
#[derive(Clone, PartialEq, Eq)]
pub struct SendSms {
    /// E.164 destination.
    pub to: String,
    /// Sender: E.164 number, short code or alphanumeric sender ID.
    pub from: String,
    pub body: String,
    /// Where Twilio should post [`StatusCallback`]s for this message.
    pub status_callback: Option<String>,
}

impl SendSms {
    /// The form parameters of `POST .../Messages.json`.
    pub fn to_params(&self) -> Vec<(String, String)> {
        let mut params = vec![
            param("To", &self.to),
            param("From", &self.from),
            param("Body", &self.body),
        ];
        if let Some(url) = &self.status_callback {
            params.push(param("StatusCallback", url));
        }
        params
    }
}

impl fmt::Debug for SendSms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendSms")
            .field("to", &self.to)
            .field("from", &self.from)
            .field("body", &REDACTED)
            .field("status_callback", &self.status_callback)
            .finish()
    }
}

fn param(key: &str, value: &str) -> (String, String) {
    (key.to_owned(), value.to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn status_callback_params_round_trip_through_pascal_case() {
        let cb = StatusCallback {
            message_sid: "SM1".into(),
            message_status: "delivered".into(),
            account_sid: "AC1".into(),
            to: "+15550001111".into(),
            from: "+15550002222".into(),
            error_code: Some(30003),
        };
        let params = cb.to_params();
        assert!(params.contains(&("ErrorCode".into(), "30003".into())));
        let json = serde_json::to_value(&cb).unwrap();
        assert_eq!(json["MessageStatus"], "delivered");
        assert_eq!(json["ErrorCode"], 30003);
    }

    #[test]
    fn debug_never_prints_bodies() {
        let req = SendSms {
            to: "+15550001111".into(),
            from: "+15550002222".into(),
            body: "Your code is 123456".into(),
            status_callback: None,
        };
        assert!(!format!("{req:?}").contains("123456"));
    }

    #[test]
    fn api_error_parses_twilio_json() {
        let raw = r#"{"code":20003,"message":"Authenticate","more_info":"https://www.twilio.com/docs/errors/20003","status":401}"#;
        let err: ApiError = serde_json::from_str(raw).unwrap();
        assert_eq!(err, ApiError::new(401, 20003, "Authenticate"));
    }

    #[test]
    fn message_resource_tolerates_null_errors_and_extra_fields() {
        let raw = r#"{"sid":"SMx","account_sid":"ACx","to":"+1","from":"+2","body":"b",
            "status":"queued","num_segments":"1","date_created":"d",
            "error_code":null,"error_message":null,"price":null,"direction":"outbound-api"}"#;
        let msg: MessageResource = serde_json::from_str(raw).unwrap();
        assert_eq!(msg.error_code, None);
        assert_eq!(msg.status, "queued");
    }
}
