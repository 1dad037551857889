//! Reading a carrier's form post and checking its signature.

use axum::{
    extract::{RawForm, rejection::RawFormRejection},
    http::HeaderMap,
};
use secrecy::{ExposeSecret, SecretString};
use vigil_twilio::signature;

use crate::error::WebhookError;

/// Every parameter of a form post, in the order sent. Kept whole, because
/// the signature covers all of them, including ones Vigil does not read.
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(body: &[u8]) -> Self {
        Self(url::form_urlencoded::parse(body).into_owned().collect())
    }

    /// The first value of `key`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The value of `key`, which must be present and non-empty.
    pub fn require(&self, key: &'static str) -> Result<&str, WebhookError> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .ok_or(WebhookError::MissingField(key))
    }
}

/// Reads the form and accepts it only if it is signed with `auth_token`
/// for `url`.
pub fn verified(
    auth_token: &SecretString,
    url: &str,
    headers: &HeaderMap,
    form: Result<RawForm, RawFormRejection>,
) -> Result<Params, WebhookError> {
    let carriers = [(String::new(), auth_token.clone())];
    verified_by_any(&carriers, url, headers, form).map(|(params, _)| params)
}

/// Like [`verified`], for a webhook any configured carrier may call (they
/// share the URL); returns the name of the carrier whose token signed it.
pub fn verified_by_any<'a>(
    carriers: &'a [(String, SecretString)],
    url: &str,
    headers: &HeaderMap,
    form: Result<RawForm, RawFormRejection>,
) -> Result<(Params, &'a str), WebhookError> {
    let RawForm(body) = form.map_err(|rejection| WebhookError::Unreadable {
        status: rejection.status(),
        message: rejection.body_text(),
    })?;
    let params = Params::parse(&body);
    let header = headers
        .get(signature::HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or(WebhookError::BadSignature)?;
    carriers
        .iter()
        .find(|(_, token)| signature::verify(token.expose_secret(), url, &params.0, header))
        .map(|(name, _)| (params, name.as_str()))
        .ok_or(WebhookError::BadSignature)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    const URL: &str = "https://mfa.example.com/v1/carrier/twilio/status";

    fn token() -> SecretString {
        SecretString::from("tok")
    }

    fn signed(body: &str, token: &str, url: &str) -> HeaderMap {
        let params: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&signature::compute(token, url, &params)) {
            headers.insert(signature::HEADER, value);
        }
        headers
    }

    fn form(body: &str) -> Result<RawForm, RawFormRejection> {
        Ok(RawForm(body.to_owned().into()))
    }

    #[test]
    fn accepts_a_correct_signature_over_every_param() -> Result<(), WebhookError> {
        let body = "MessageSid=SM1&MessageStatus=sent&ApiVersion=2010-04-01&Body=a+b%26c";
        let params = verified(&token(), URL, &signed(body, "tok", URL), form(body))?;
        assert_eq!(params.require("MessageSid")?, "SM1");
        assert_eq!(params.get("Body"), Some("a b&c"));
        assert!(matches!(params.require("To"), Err(WebhookError::MissingField("To"))));
        Ok(())
    }

    #[test]
    fn refuses_missing_wrong_or_foreign_signatures() {
        let body = "MessageSid=SM1&MessageStatus=sent";
        let refused = |headers: HeaderMap, body: &str| {
            matches!(
                verified(&token(), URL, &headers, form(body)),
                Err(WebhookError::BadSignature)
            )
        };
        assert!(refused(HeaderMap::new(), body));
        assert!(refused(signed(body, "other", URL), body), "wrong token");
        assert!(
            refused(signed(body, "tok", "http://127.0.0.1/x"), body),
            "signed for another URL"
        );
        assert!(
            refused(signed(body, "tok", URL), "MessageSid=SM1&MessageStatus=delivered"),
            "tampered"
        );
        assert!(
            refused(signed(body, "tok", URL), "MessageSid=SM1&MessageStatus=sent&Extra=1"),
            "unsigned extra param"
        );
    }
}
