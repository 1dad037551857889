//! Phone numbers in E.164, the only form carriers accept unambiguously.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("phone number must be in E.164 form, e.g. +15551234567")]
    NotE164,
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Accepts `+` and 8 to 15 digits (the first not 0); spaces, dashes, dots
    /// and parentheses that people type are ignored.
    pub fn parse(input: &str) -> Result<Self, PhoneError> {
        let trimmed = input.trim();
        let rest = trimmed.strip_prefix('+').ok_or(PhoneError::NotE164)?;
        let mut digits = String::with_capacity(16);
        digits.push('+');
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(PhoneError::NotE164),
            }
        }
        let count = digits.len() - 1;
        if !(8..=15).contains(&count) || digits.as_bytes().get(1) == Some(&b'0') {
            return Err(PhoneError::NotE164);
        }
        Ok(Self(digits))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For logs and admin views: the country code area and the last two
    /// digits, never the full number.
    pub fn masked(&self) -> String {
        let digits = &self.0[1..];
        let shown_head = 3.min(digits.len());
        let shown_tail = 2.min(digits.len() - shown_head);
        let hidden = digits.len() - shown_head - shown_tail;
        format!(
            "+{}{}{}",
            &digits[..shown_head],
            "*".repeat(hidden),
            &digits[digits.len() - shown_tail..]
        )
    }
}

/// Debug output masks the number, so it never lands in a log by accident.
impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_e164_and_typing_noise() {
        assert_eq!(
            PhoneNumber::parse("+1 (555) 123-4567").map(|p| p.as_str().to_owned()),
            Ok("+15551234567".to_owned())
        );
        assert!(PhoneNumber::parse("+4915112345678").is_ok());
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "",
            "+",
            "5551234567",
            "+0551234567",
            "+1234567",
            "+1234567890123456",
            "+1555abc4567",
            "++15551234567",
        ] {
            assert_eq!(PhoneNumber::parse(bad), Err(PhoneError::NotE164), "{bad}");
        }
    }

    #[test]
    fn masks_all_but_head_and_tail() {
        let p = PhoneNumber::parse("+15551234567").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.masked(), "+155******67");
        assert!(!format!("{p:?}").contains("1234"));
    }
}
