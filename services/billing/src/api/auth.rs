//! Who is calling: the operator (`VIGIL_API_TOKEN`: every provider, and the
//! admin routes) or a provider's read-only token (that provider only).

use axum::{
    extract::{Request, State},
    http::header::AUTHORIZATION,
    middleware::Next,
    response::Response,
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ApiState;
use crate::{error::ApiError, tokens};

/// The operator token, kept only as its SHA-256: comparing digests in
/// constant time reveals neither the token's bytes nor its length.
pub struct ApiToken {
    digest: [u8; 32],
}

impl ApiToken {
    pub fn new(token: &SecretString) -> Self {
        Self {
            digest: Sha256::digest(token.expose_secret().as_bytes()).into(),
        }
    }

    pub fn matches(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.digest[..].ct_eq(&presented[..]).into()
    }
}

/// The authenticated caller, put into the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Operator,
    /// Reads this provider's data, nothing else, and changes nothing.
    Provider(String),
}

/// What a route does with a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Admin,
}

impl Principal {
    pub fn authorize(&self, provider_id: &str, access: Access) -> Result<(), ApiError> {
        match (self, access) {
            (Self::Operator, _) => Ok(()),
            (Self::Provider(own), Access::Read) if own == provider_id => Ok(()),
            (Self::Provider(own), Access::Read) => {
                tracing::warn!(token_provider = %own, requested = %provider_id, "provider token refused for another provider");
                Err(ApiError::Forbidden(provider_id.to_owned()))
            }
            (Self::Provider(_), Access::Admin) => Err(ApiError::OperatorOnly),
        }
    }
}

/// Lets the request through only with `Authorization: Bearer <token>`.
pub async fn require_token(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer)
        .ok_or(ApiError::Unauthorized)?;
    let principal = if state.token.matches(presented) {
        Principal::Operator
    } else if tokens::looks_like_provider_token(presented) {
        let provider = tokens::provider_of(&state.pool, presented).await?;
        Principal::Provider(provider.ok_or(ApiError::Unauthorized)?)
    } else {
        return Err(ApiError::Unauthorized);
    };
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}

/// The credentials of a `Bearer` authorization; the scheme is case-insensitive (RFC 9110).
fn bearer(header: &str) -> Option<&str> {
    let (scheme, credentials) = header.split_once(' ')?;
    let credentials = credentials.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !credentials.is_empty()).then_some(credentials)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_credentials() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc"), Some("abc"));
        assert_eq!(bearer("Basic YWxhZGRpbjpvcGVuc2VzYW1l"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }

    #[test]
    fn matches_only_the_exact_token() {
        let token = ApiToken::new(&SecretString::from("s3cret"));
        assert!(token.matches("s3cret"));
        assert!(!token.matches("s3cret "));
        assert!(!token.matches("s3cre"));
        assert!(!token.matches(""));
    }

    #[test]
    fn provider_tokens_read_their_provider_only() {
        let a = Principal::Provider("prv_a".into());
        assert!(a.authorize("prv_a", Access::Read).is_ok());
        assert!(matches!(
            a.authorize("prv_b", Access::Read),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            a.authorize("prv_a", Access::Admin),
            Err(ApiError::OperatorOnly)
        ));
        assert!(Principal::Operator.authorize("prv_b", Access::Admin).is_ok());
    }
}
