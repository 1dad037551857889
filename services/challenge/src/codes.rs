//! One-time codes: generated from the OS RNG, stored only as an HMAC bound to
//! the challenge, compared in constant time.

use hmac::{Hmac, Mac};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const CODE_DIGITS: usize = 6;

#[derive(Clone)]
pub struct CodeHasher {
    key: SecretString,
}

impl CodeHasher {
    pub fn new(key: SecretString) -> Self {
        Self { key }
    }

    /// A uniformly random 6-digit code.
    pub fn generate(&self) -> String {
        format!("{:06}", rand::rng().random_range(0..1_000_000u32))
    }

    /// The stored form. Binding the challenge id stops a hash from one
    /// challenge matching another's code.
    pub fn hash(&self, challenge_id: &str, code: &str) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.expose_secret().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(challenge_id.as_bytes());
        mac.update(b":");
        mac.update(code.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    pub fn matches(&self, challenge_id: &str, typed: &str, stored: &[u8]) -> bool {
        let Some(code) = normalise(typed) else { return false };
        self.hash(challenge_id, &code).ct_eq(stored).into()
    }
}

/// What users type: digits, perhaps with spaces or a dash in the middle.
fn normalise(typed: &str) -> Option<String> {
    let code: String = typed.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    (code.len() == CODE_DIGITS && code.bytes().all(|b| b.is_ascii_digit())).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> CodeHasher {
        CodeHasher::new(SecretString::from("0123456789abcdef0123"))
    }

    #[test]
    fn generated_codes_have_six_digits() {
        let h = hasher();
        for _ in 0..1000 {
            let code = h.generate();
            assert_eq!(code.len(), 6);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn matches_only_the_right_code_for_the_right_challenge() {
        let h = hasher();
        let stored = h.hash("chl_a", "123456");
        assert!(h.matches("chl_a", "123456", &stored));
        assert!(h.matches("chl_a", " 123-456 ", &stored));
        assert!(!h.matches("chl_a", "123457", &stored));
        assert!(!h.matches("chl_b", "123456", &stored));
        assert!(!h.matches("chl_a", "12345", &stored));
        assert!(!h.matches("chl_a", "abcdef", &stored));
        assert!(!h.matches("chl_a", "", &stored));
    }
}
