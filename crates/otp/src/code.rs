//! A one-time code as the user typed it, parsed before any HMAC runs.

use std::fmt;

use subtle::ConstantTimeEq;

use crate::{CodeError, Digits};

/// A well-formed code: 6 or 8 ASCII digits. `Debug` hides the digits (a fresh code is
/// a live credential for up to a minute); equality is constant-time.
#[derive(Clone, Copy)]
pub struct Code {
    digits: [u8; 8],
    len: Digits,
}

impl Code {
    /// Parses user input for a token of `expected` digits.
    ///
    /// Whitespace anywhere is ignored (apps display `123 456`), then the rest must be
    /// exactly `expected` ASCII digits.
    pub fn parse(input: &str, expected: Digits) -> Result<Self, CodeError> {
        let mut digits = [0u8; 8];
        let mut got = 0usize;
        let mut non_digit = false;
        for c in input.chars().filter(|c| !c.is_whitespace()) {
            if !c.is_ascii_digit() {
                non_digit = true;
            } else if got < digits.len() {
                digits[got] = c as u8;
            }
            // Count every non-space char so the error reports what was typed.
            got = got.saturating_add(1);
        }
        if got == 0 {
            return Err(CodeError::Empty);
        }
        if non_digit {
            return Err(CodeError::NonDigit);
        }
        if got != expected.len() {
            return Err(CodeError::WrongLength {
                expected: expected.len(),
                got,
            });
        }
        Ok(Self { digits, len: expected })
    }

    /// Builds the code for an HOTP value (already reduced modulo 10^digits).
    pub(crate) fn from_value(value: u32, len: Digits) -> Self {
        let mut digits = [0u8; 8];
        let mut rest = value;
        for slot in digits[..len.len()].iter_mut().rev() {
            *slot = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        Self { digits, len }
    }

    pub fn digits(&self) -> Digits {
        self.len
    }

    /// The digits, to show or send to the user (SMS, test tooling).
    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored, so this cannot fail.
        std::str::from_utf8(&self.digits[..self.len.len()]).unwrap_or_default()
    }
}

impl ConstantTimeEq for Code {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        // Lengths are public (they come from the token's configuration).
        let same_len = subtle::Choice::from(u8::from(self.len == other.len));
        same_len & self.digits.ct_eq(&other.digits)
    }
}

impl PartialEq for Code {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for Code {}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Code([REDACTED; {} digits])", self.len.len())
    }
}
