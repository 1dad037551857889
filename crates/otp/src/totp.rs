//! TOTP (RFC 6238): HOTP over time steps, with a skew window and replay refusal.
//!
//! No function here reads a clock: the caller passes the current Unix time, so
//! windows are tested by moving a number, not by sleeping.

use subtle::ConstantTimeEq;

use crate::{Algorithm, Code, Digits, OtpSecret, ParamError, VerifyError, hotp};

/// Default period in seconds, the only one most authenticator apps honour.
pub const DEFAULT_PERIOD: u32 = 30;
/// Default tolerance: one step either side (RFC 6238 §5.2 recommends at most one
/// step of network delay; the earlier step also covers a slow typist).
pub const DEFAULT_SKEW: u32 = 1;
/// Largest accepted skew (five minutes either side at 30 s): beyond that, fix the
/// clock rather than widen the window.
pub const MAX_SKEW: u32 = 10;

/// A TOTP token's parameters and Vigil's acceptance window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totp {
    algorithm: Algorithm,
    digits: Digits,
    period: u32,
    skew: u32,
}

/// A successful TOTP verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotpMatch {
    /// The step the code belongs to: store it as the token's `last_step`, so this
    /// code (and every earlier one) is refused from now on.
    pub step: u64,
    /// `step` minus the current step (−skew ..= +skew): a device clock that is
    /// consistently off shows here.
    pub drift: i64,
}

impl Default for Totp {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::Sha1,
            digits: Digits::Six,
            period: DEFAULT_PERIOD,
            skew: DEFAULT_SKEW,
        }
    }
}

impl Totp {
    /// A token with `period` seconds per step and the default skew of one step.
    pub fn new(algorithm: Algorithm, digits: Digits, period: u32) -> Result<Self, ParamError> {
        if period == 0 {
            return Err(ParamError::ZeroPeriod);
        }
        Ok(Self {
            algorithm,
            digits,
            period,
            skew: DEFAULT_SKEW,
        })
    }

    /// Accept codes up to `skew` steps before or after the current one (0 = exact
    /// step), capped at [`MAX_SKEW`].
    pub fn with_skew(self, skew: u32) -> Self {
        Self {
            skew: skew.min(MAX_SKEW),
            ..self
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn digits(&self) -> Digits {
        self.digits
    }

    pub fn period(&self) -> u32 {
        self.period
    }

    pub fn skew(&self) -> u32 {
        self.skew
    }

    /// The time step `T = floor(unix_secs / period)` (RFC 6238 §4.2, T0 = 0).
    pub fn step(&self, unix_secs: u64) -> u64 {
        // `new` refuses a zero period; max(1) keeps `Default`/struct updates safe too.
        unix_secs / u64::from(self.period.max(1))
    }

    /// The code for the step containing `unix_secs`.
    pub fn generate(&self, secret: &OtpSecret, unix_secs: u64) -> Code {
        self.generate_step(secret, self.step(unix_secs))
    }

    /// The code for time step `step`.
    pub fn generate_step(&self, secret: &OtpSecret, step: u64) -> Code {
        hotp(secret, step, self.algorithm, self.digits)
    }

    /// Verifies `code` at `unix_secs`, given the last step accepted for this token
    /// (`None` if it was never used).
    ///
    /// Accepts steps `current − skew ..= current + skew` that are later than
    /// `last_step`. Returns the matched step for the caller to persist as the new
    /// `last_step`; a code whose step is at or before `last_step` is
    /// [`VerifyError::Replayed`]. The caller must persist atomically (for example
    /// `UPDATE … SET last_step = $new WHERE last_step < $new`) so that two
    /// concurrent logins with one code cannot both win.
    pub fn verify(
        &self,
        secret: &OtpSecret,
        code: &Code,
        unix_secs: u64,
        last_step: Option<u64>,
    ) -> Result<TotpMatch, VerifyError> {
        if code.digits() != self.digits {
            return Err(VerifyError::WrongLength);
        }
        let current = self.step(unix_secs);
        let first = current.saturating_sub(u64::from(self.skew));
        let last = current
            .checked_add(u64::from(self.skew))
            .ok_or(VerifyError::OutOfRange)?;
        let mut replayed = false;
        // Earliest step first; a match at or before last_step is skipped rather than
        // final, so a later step that happens to yield the same code is still accepted.
        for step in first..=last {
            if !bool::from(self.generate_step(secret, step).ct_eq(code)) {
                continue;
            }
            if last_step.is_some_and(|used| step <= used) {
                replayed = true;
                continue;
            }
            let drift = i64::try_from(step).unwrap_or(i64::MAX) - i64::try_from(current).unwrap_or(i64::MAX);
            return Ok(TotpMatch { step, drift });
        }
        Err(if replayed {
            VerifyError::Replayed
        } else {
            VerifyError::Mismatch
        })
    }
}
