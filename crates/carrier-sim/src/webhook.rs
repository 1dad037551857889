//! Outgoing webhooks, signed the way Twilio signs them.

use axum::http::StatusCode;
use vigil_twilio::signature;

/// POSTs `params` form-encoded to `url` with an `X-Twilio-Signature` computed
/// over `url` exactly as given, and returns the status the receiver answered.
pub async fn post_signed(
    http: &reqwest::Client,
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
) -> Result<StatusCode, reqwest::Error> {
    let sig = signature::compute(auth_token, url, params);
    let resp = http
        .post(url)
        .header(signature::HEADER, sig)
        .form(params)
        .send()
        .await?;
    Ok(resp.status())
}

/// Like [`post_signed`], also returning the response body (TwiML).
pub async fn post_signed_text(
    http: &reqwest::Client,
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
) -> Result<(u16, String), reqwest::Error> {
    let sig = signature::compute(auth_token, url, params);
    let resp = http
        .post(url)
        .header(signature::HEADER, sig)
        .form(params)
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await?))
}
