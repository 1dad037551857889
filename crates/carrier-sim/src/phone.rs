//! Phone-number checks.

/// E.164 as the simulator accepts it: `+` then 8 to 15 digits.
pub fn is_e164(number: &str) -> bool {
    number
        .strip_prefix('+')
        .is_some_and(|digits| (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::is_e164;

    #[test]
    fn accepts_and_rejects() {
        assert!(is_e164("+15551234567"));
        assert!(is_e164("+12345678"));
        assert!(is_e164("+123456789012345"));
        assert!(!is_e164("15551234567"));
        assert!(!is_e164("+1234567"));
        assert!(!is_e164("+1234567890123456"));
        assert!(!is_e164("+1555123456a"));
        assert!(!is_e164("+1 555 123 4567"));
        assert!(!is_e164("+"));
        assert!(!is_e164("+١٢٣٤٥٦٧٨٩")); // non-ASCII digits
    }
}
