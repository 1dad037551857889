//! What can go wrong talking to a directory, each with a stable code.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The settings cannot work (a URL that is not ldap:// or ldaps://, an
    /// empty base DN, a bind DN without a password, a filter that does not parse).
    #[error("{0}")]
    InvalidSettings(String),
    #[error("cannot reach the directory at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the directory refused the bind as {dn:?}: {} ({code}){}", result_name(*.code), detail(.message))]
    BindRefused { dn: String, code: u32, message: String },
    #[error("the directory refused the search: {} ({code}){}", result_name(*.code), detail(.message))]
    SearchFailed { code: u32, message: String },
    #[error("the directory did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the search matched more than {0} entries; narrow the base DN or the filter")]
    TooManyEntries(usize),
}

impl DirectoryError {
    /// Stable code for error messages and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidSettings(_) => "ldap_invalid_settings",
            Self::Unreachable { .. } => "ldap_unreachable",
            Self::BindRefused { .. } => "ldap_bind_failed",
            Self::SearchFailed { .. } => "ldap_search_failed",
            Self::Timeout(_) => "ldap_timeout",
            Self::TooManyEntries(_) => "ldap_too_many_entries",
        }
    }
}

fn detail(message: &str) -> String {
    let message = message.trim();
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

/// RFC 4511 result code names, for the codes an operator meets.
pub(crate) fn result_name(code: u32) -> &'static str {
    match code {
        0 => "success",
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        8 => "strongerAuthRequired",
        10 => "referral",
        11 => "adminLimitExceeded",
        12 => "unavailableCriticalExtension",
        13 => "confidentialityRequired",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_clearly() {
        let e = DirectoryError::BindRefused {
            dn: "cn=reader,dc=example,dc=org".into(),
            code: 49,
            message: String::new(),
        };
        assert_eq!(
            e.to_string(),
            "the directory refused the bind as \"cn=reader,dc=example,dc=org\": invalidCredentials (49)"
        );
        assert_eq!(e.code(), "ldap_bind_failed");
        let e = DirectoryError::SearchFailed {
            code: 32,
            message: " no such base ".into(),
        };
        assert_eq!(
            e.to_string(),
            "the directory refused the search: noSuchObject (32): no such base"
        );
    }
}
