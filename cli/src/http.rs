//! The small HTTP JSON client the simulator and billing commands share.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde::de::DeserializeOwned;
use url::Url;

const TIMEOUT: Duration = Duration::from_secs(15);

pub fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .context("building the HTTP client")
}

/// `base` joined with path segments, each percent-encoded (a phone number's
/// `+`, an id with odd characters) so no input can change the route.
pub fn url(base: &str, segments: &[&str]) -> anyhow::Result<Url> {
    let mut url = Url::parse(base).with_context(|| format!("invalid URL {base:?}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("{base:?} is not an http(s) URL");
    }
    url.path_segments_mut()
        .map_err(|()| anyhow!("{base:?} cannot be a base URL"))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// Sends the request; a non-2xx answer becomes an error carrying the
/// service's `error` text (the shape every Vigil HTTP API answers with).
pub async fn send<T: DeserializeOwned>(what: &str, request: reqwest::RequestBuilder) -> anyhow::Result<T> {
    let response = request
        .send()
        .await
        .with_context(|| format!("{what}: request failed"))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .with_context(|| format!("{what}: reading the answer"))?;
    if !status.is_success() {
        bail!("{what}: HTTP {status}: {}", error_detail(&body));
    }
    serde_json::from_str(&body).with_context(|| format!("{what}: unexpected answer {body:?}"))
}

/// The message of an error body: `{"error": "…"}` (simulator) or
/// `{"error": {"code": "…", "message": "…"}}` (billing); else the raw text.
fn error_detail(body: &str) -> String {
    let error = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").cloned());
    match error {
        Some(serde_json::Value::String(message)) => message,
        Some(serde_json::Value::Object(fields)) => {
            let text = |key: &str| fields.get(key).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
            match (text("message"), text("code")) {
                (message, code) if code.is_empty() => message,
                (message, code) => format!("{message} ({code})"),
            }
        }
        _ => body.chars().take(300).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded_and_joined() -> anyhow::Result<()> {
        let u = url("http://127.0.0.1:4010/", &["sim", "inbox", "+1555 01/00"])?;
        assert_eq!(u.as_str(), "http://127.0.0.1:4010/sim/inbox/+1555%2001%2F00");
        let u = url("http://h:1/base", &["v1", "providers", "prv_1", "usage"])?;
        assert_eq!(u.as_str(), "http://h:1/base/v1/providers/prv_1/usage");
        assert!(url("ftp://h", &[]).is_err());
        Ok(())
    }

    #[test]
    fn error_bodies_of_both_shapes_read_well() {
        assert_eq!(error_detail(r#"{"error":"inbox is empty"}"#), "inbox is empty");
        assert_eq!(
            error_detail(r#"{"error":{"code":"unauthorized","message":"a valid bearer token is required"}}"#),
            "a valid bearer token is required (unauthorized)"
        );
        assert_eq!(error_detail("Bad Gateway"), "Bad Gateway");
    }
}
