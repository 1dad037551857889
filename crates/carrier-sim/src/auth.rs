//! HTTP basic auth of the Messages API.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use subtle::ConstantTimeEq;

use crate::config::SimConfig;
use crate::error::TwilioFailure;

/// Accepts the request only if it carries the configured SID and token.
pub fn check(headers: &HeaderMap, cfg: &SimConfig) -> Result<(), TwilioFailure> {
    let Some((user, password)) = credentials(headers) else {
        return Err(TwilioFailure::unauthenticated());
    };
    // Compare both halves without short-circuiting so timing does not reveal
    // which one was wrong.
    let ok = user.as_bytes().ct_eq(cfg.account_sid.as_bytes()) & password.as_bytes().ct_eq(cfg.auth_token.as_bytes());
    if bool::from(ok) {
        Ok(())
    } else {
        Err(TwilioFailure::unauthenticated())
    }
}

fn credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(AUTHORIZATION, v);
        }
        h
    }

    fn basic(user: &str, password: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
    }

    #[test]
    fn accepts_only_matching_credentials() {
        let cfg = SimConfig::default();
        assert!(check(&headers(&basic("ACsimulator", "sim-auth-token")), &cfg).is_ok());
        assert!(check(&headers(&basic("ACsimulator", "wrong")), &cfg).is_err());
        assert!(check(&headers(&basic("ACother", "sim-auth-token")), &cfg).is_err());
        assert!(check(&headers("Bearer abc"), &cfg).is_err());
        assert!(check(&headers("Basic !!!"), &cfg).is_err());
        assert!(check(&HeaderMap::new(), &cfg).is_err());
    }
}
