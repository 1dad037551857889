//! Client for an FCM-style HTTP v1 send API:
//! `POST {base}/v1/projects/{project}/messages:send` with a bearer token and
//! `{"message": {"token", "data": {...}}}`; every data value is a string.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::carrier::{Accepted, SendError};

/// The push service's name in delivery rows and events.
pub const FCM: &str = "fcm";

#[derive(Clone)]
pub struct FcmClient {
    base_url: Url,
    project_id: String,
    access_token: SecretString,
    http: reqwest::Client,
}

#[derive(Serialize)]
struct SendRequest<'a> {
    message: Message<'a>,
}

#[derive(Serialize)]
struct Message<'a> {
    token: &'a str,
    data: &'a BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct SendResponse {
    name: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    status: String,
}

impl FcmClient {
    pub fn new(base_url: Url, project_id: String, access_token: SecretString, http: reqwest::Client) -> Self {
        Self {
            base_url,
            project_id,
            access_token,
            http,
        }
    }

    fn endpoint(&self) -> Result<Url, SendError> {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .map_err(|()| permanent("push base URL is misconfigured"))?
            .pop_if_empty()
            .extend(["v1", "projects", &self.project_id, "messages:send"]);
        Ok(url)
    }

    /// Sends `data` to the device registered as `token`; the accepted
    /// message's name is the carrier reference.
    pub async fn send(&self, token: &str, data: &BTreeMap<String, String>) -> Result<Accepted, SendError> {
        let response = self
            .http
            .post(self.endpoint()?)
            .bearer_auth(self.access_token.expose_secret())
            .json(&SendRequest {
                message: Message { token, data },
            })
            .send()
            .await
            .map_err(|e| SendError {
                reason: if e.is_timeout() {
                    "push service did not answer in time".to_owned()
                } else {
                    "push service unreachable".to_owned()
                },
                retryable: true,
                request_invalid: false,
            })?;
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        if status.is_success() {
            let sent: SendResponse =
                serde_json::from_slice(&body).map_err(|_| permanent("push service sent an unreadable response"))?;
            return Ok(Accepted {
                carrier_ref: sent.name,
                sms_segments: 0,
            });
        }
        let detail = serde_json::from_slice::<ErrorBody>(&body)
            .map(|e| e.error.status)
            .unwrap_or_default();
        let code = status.as_u16();
        Err(SendError {
            reason: if detail.is_empty() {
                format!("push service answered HTTP {code}")
            } else {
                format!("push service answered HTTP {code} ({detail})")
            },
            retryable: code == 429 || status.is_server_error(),
            // An unregistered token or a bad message will not get better.
            request_invalid: matches!(code, 400 | 404),
        })
    }
}

fn permanent(reason: &str) -> SendError {
    SendError {
        reason: reason.to_owned(),
        retryable: false,
        request_invalid: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_keeps_the_base_path() -> Result<(), Box<dyn std::error::Error>> {
        let client = FcmClient::new(
            Url::parse("http://127.0.0.1:4010/fcm/")?,
            "my-project".into(),
            SecretString::from("t"),
            reqwest::Client::new(),
        );
        assert_eq!(
            client.endpoint().map_err(|e| e.reason)?.as_str(),
            "http://127.0.0.1:4010/fcm/v1/projects/my-project/messages:send"
        );
        Ok(())
    }
}
