//! Login names as agents send them. Windows and RADIUS logins are case-
//! insensitive, so a username is stored and compared in lower case.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    #[error("username is empty")]
    Empty,
    #[error("username is longer than 256 characters")]
    TooLong,
    #[error("username contains control characters")]
    ControlCharacters,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    pub fn parse(input: &str) -> Result<Self, UsernameError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(UsernameError::Empty);
        }
        if trimmed.chars().count() > 256 {
            return Err(UsernameError::TooLong);
        }
        if trimmed.chars().any(char::is_control) {
            return Err(UsernameError::ControlCharacters);
        }
        Ok(Self(trimmed.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_validates() {
        assert_eq!(
            Username::parse("  Alice@Example.COM ").map(|u| u.to_string()),
            Ok("alice@example.com".into())
        );
        assert_eq!(Username::parse("   "), Err(UsernameError::Empty));
        assert_eq!(Username::parse("a\u{0}b"), Err(UsernameError::ControlCharacters));
        assert_eq!(Username::parse(&"x".repeat(257)), Err(UsernameError::TooLong));
    }
}
