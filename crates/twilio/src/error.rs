use thiserror::Error;

/// Why a Messages API call failed.
#[derive(Debug, Error)]
pub enum TwilioError {
    /// The request never got an HTTP answer (connect, TLS, timeout, reset).
    #[error("transport error talking to the messages API: {0}")]
    Transport(#[from] reqwest::Error),

    /// The API answered with a non-success status. `code` is Twilio's error
    /// code when the body was Twilio's error JSON.
    #[error("messages API returned HTTP {status} (code {code:?}): {message}")]
    Api {
        status: u16,
        code: Option<i64>,
        message: String,
    },

    /// A success response whose body was not the expected resource.
    #[error("could not decode messages API response: {0}")]
    Decode(String),

    /// The configured base URL cannot have API paths appended to it.
    #[error("invalid messages API base URL: {0}")]
    InvalidBaseUrl(String),
}

impl TwilioError {
    /// Whether the same request may succeed if sent again later: transport
    /// failures, rate limiting (429) and server errors (5xx).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Api { status, .. } => *status == 429 || (500..=599).contains(status),
            Self::Decode(_) | Self::InvalidBaseUrl(_) => false,
        }
    }

    /// HTTP status of an API error, if the API answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Twilio error code of an API error, if the body carried one.
    pub fn code(&self) -> Option<i64> {
        match self {
            Self::Api { code, .. } => *code,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> TwilioError {
        TwilioError::Api {
            status,
            code: None,
            message: String::new(),
        }
    }

    #[test]
    fn retryable_statuses() {
        assert!(api(429).is_retryable());
        assert!(api(500).is_retryable());
        assert!(api(503).is_retryable());
        assert!(!api(400).is_retryable());
        assert!(!api(401).is_retryable());
        assert!(!api(404).is_retryable());
        assert!(!TwilioError::Decode("x".into()).is_retryable());
    }
}
