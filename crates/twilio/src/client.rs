use reqwest::{Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::error::TwilioError;
use serde::de::DeserializeOwned;

use crate::calls::{CallResource, CreateCall};
use crate::types::{ApiError, MessageResource, SendSms};

/// API version segment of every Messages API path.
pub const API_VERSION: &str = "2010-04-01";

/// Longest slice of a non-JSON error body kept in [`TwilioError::Api`].
const MAX_ERROR_BODY: usize = 256;

/// Client for one account of a Twilio-style REST API (Messages and Calls).
///
/// Timeouts, proxies and TLS come from the `reqwest::Client` passed in; a
/// request that exceeds them surfaces as a retryable
/// [`TwilioError::Transport`]. The auth token only ever leaves this struct as
/// the basic-auth header, which reqwest marks sensitive.
#[derive(Debug, Clone)]
pub struct MessagesClient {
    base_url: Url,
    account_sid: String,
    auth_token: SecretString,
    http: reqwest::Client,
}

impl MessagesClient {
    /// `base_url` is the API root, e.g. `https://api.twilio.com` or the
    /// carrier simulator's address; a path prefix is kept.
    pub fn new(base_url: Url, account_sid: String, auth_token: SecretString, http: reqwest::Client) -> Self {
        Self {
            base_url,
            account_sid,
            auth_token,
            http,
        }
    }

    pub fn account_sid(&self) -> &str {
        &self.account_sid
    }

    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// `POST /2010-04-01/Accounts/{sid}/Messages.json`.
    pub async fn send_sms(&self, req: &SendSms) -> Result<MessageResource, TwilioError> {
        let url = self.endpoint(&["Messages.json"])?;
        let resp = self
            .http
            .post(url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .form(&req.to_params())
            .send()
            .await?;
        let msg: MessageResource = read_resource(resp).await?;
        tracing::debug!(sid = %msg.sid, status = %msg.status, segments = %msg.num_segments, "sms accepted");
        Ok(msg)
    }

    /// `POST /2010-04-01/Accounts/{sid}/Calls.json`: places a call; the
    /// carrier fetches `req.url` for the call flow once it is answered.
    pub async fn create_call(&self, req: &CreateCall) -> Result<CallResource, TwilioError> {
        let url = self.endpoint(&["Calls.json"])?;
        let resp = self
            .http
            .post(url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .form(&req.to_params())
            .send()
            .await?;
        let call: CallResource = read_resource(resp).await?;
        tracing::debug!(sid = %call.sid, status = %call.status, "call accepted");
        Ok(call)
    }

    /// `GET /2010-04-01/Accounts/{sid}/Messages/{message_sid}.json`.
    pub async fn fetch_message(&self, message_sid: &str) -> Result<MessageResource, TwilioError> {
        let url = self.endpoint(&["Messages", &format!("{message_sid}.json")])?;
        let resp = self
            .http
            .get(url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .send()
            .await?;
        read_resource(resp).await
    }

    /// Appends `/2010-04-01/Accounts/{sid}/<tail..>` to the base URL. Pushing
    /// segments (rather than formatting a string) percent-encodes caller
    /// input, so a hostile message SID cannot change the path.
    fn endpoint(&self, tail: &[&str]) -> Result<Url, TwilioError> {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .map_err(|()| TwilioError::InvalidBaseUrl(self.base_url.to_string()))?
            .pop_if_empty()
            .extend([API_VERSION, "Accounts", self.account_sid.as_str()])
            .extend(tail);
        Ok(url)
    }
}

async fn read_resource<T: DeserializeOwned>(resp: Response) -> Result<T, TwilioError> {
    let status = resp.status();
    let body = resp.bytes().await?;
    if status.is_success() {
        serde_json::from_slice(&body).map_err(|e| TwilioError::Decode(e.to_string()))
    } else {
        Err(api_error(status, &body))
    }
}

/// Maps an error response, preferring Twilio's JSON error body when present.
fn api_error(status: StatusCode, body: &[u8]) -> TwilioError {
    if let Ok(err) = serde_json::from_slice::<ApiError>(body) {
        return TwilioError::Api {
            status: status.as_u16(),
            code: Some(err.code),
            message: err.message,
        };
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("unknown error").to_owned()
    } else {
        text.chars().take(MAX_ERROR_BODY).collect()
    };
    TwilioError::Api {
        status: status.as_u16(),
        code: None,
        message,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn client(base: &str) -> MessagesClient {
        MessagesClient::new(
            Url::parse(base).unwrap(),
            "AC123".into(),
            SecretString::from("s3cr3t-token-value"),
            reqwest::Client::new(),
        )
    }

    #[test]
    fn endpoint_keeps_base_path_and_encodes_sid() {
        let c = client("http://127.0.0.1:4010/twilio/");
        assert_eq!(
            c.endpoint(&["Messages.json"]).unwrap().as_str(),
            "http://127.0.0.1:4010/twilio/2010-04-01/Accounts/AC123/Messages.json"
        );
        let c = client("https://api.twilio.com");
        assert_eq!(
            c.endpoint(&["Messages", "../x?y.json"]).unwrap().as_str(),
            "https://api.twilio.com/2010-04-01/Accounts/AC123/Messages/..%2Fx%3Fy.json"
        );
    }

    #[test]
    fn rejects_cannot_be_a_base_urls() {
        let c = client("mailto:ops@example.com");
        assert!(matches!(
            c.endpoint(&["Messages.json"]),
            Err(TwilioError::InvalidBaseUrl(_))
        ));
    }

    #[test]
    fn debug_hides_the_token() {
        let c = client("https://api.twilio.com");
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn api_error_prefers_twilio_json() {
        let err = api_error(
            StatusCode::BAD_REQUEST,
            br#"{"code":21211,"message":"Invalid 'To' Phone Number","status":400}"#,
        );
        assert_eq!(err.code(), Some(21211));
        assert_eq!(err.status(), Some(400));

        let err = api_error(StatusCode::BAD_GATEWAY, b"");
        assert_eq!(err.code(), None);
        assert!(err.to_string().contains("Bad Gateway"));
        assert!(err.is_retryable());
    }
}
