//! `otpauth://` Key URIs, the format every authenticator app scans.
//!
//! `otpauth://TYPE/ISSUER:ACCOUNT?secret=BASE32&issuer=ISSUER&algorithm=..&digits=..&period=..`
//! (`counter=` instead of `period=` for HOTP). Issuer and account are percent-encoded
//! separately, so a space or `@` survives and the `:` separator stays unambiguous.

use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use zeroize::Zeroizing;

use crate::{Hotp, OtpSecret, Totp, UriError};

/// Everything but RFC 3986 unreserved characters is encoded (space as `%20`, never `+`,
/// which some apps show literally).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A Key URI. It embeds the seed, so it is zeroed on drop and `Debug` hides it:
/// show it to the enrolling user once (as text or a QR image), never store or log it.
#[derive(Clone, PartialEq, Eq)]
pub struct OtpAuthUri(Zeroizing<String>);

impl OtpAuthUri {
    /// The URI for a TOTP token.
    pub fn totp(totp: &Totp, secret: &OtpSecret, issuer: &str, account: &str) -> Result<Self, UriError> {
        let params = format!(
            "&algorithm={}&digits={}&period={}",
            totp.algorithm(),
            totp.digits(),
            totp.period()
        );
        build("totp", secret, issuer, account, &params)
    }

    /// The URI for an HOTP token whose next expected counter is `counter`.
    pub fn hotp(hotp: &Hotp, secret: &OtpSecret, counter: u64, issuer: &str, account: &str) -> Result<Self, UriError> {
        let params = format!("&algorithm={}&digits={}&counter={counter}", hotp.algorithm, hotp.digits);
        build("hotp", secret, issuer, account, &params)
    }

    /// The URI text, to hand to the enrolling user.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

fn build(kind: &str, secret: &OtpSecret, issuer: &str, account: &str, params: &str) -> Result<OtpAuthUri, UriError> {
    let issuer = issuer.trim();
    let account = account.trim();
    if issuer.is_empty() {
        return Err(UriError::EmptyIssuer);
    }
    if account.is_empty() {
        return Err(UriError::EmptyAccount);
    }
    if issuer.contains(':') || account.contains(':') {
        return Err(UriError::Colon);
    }
    let issuer = utf8_percent_encode(issuer, COMPONENT).to_string();
    let account = utf8_percent_encode(account, COMPONENT);
    let secret = secret.to_base32();
    let mut uri = Zeroizing::new(String::with_capacity(96 + secret.len() + 2 * issuer.len()));
    // `write!` to a String cannot fail; push_str keeps the seed out of temporaries.
    uri.push_str("otpauth://");
    uri.push_str(kind);
    uri.push('/');
    uri.push_str(&issuer);
    uri.push(':');
    uri.push_str(&account.to_string());
    uri.push_str("?secret=");
    uri.push_str(&secret);
    uri.push_str("&issuer=");
    uri.push_str(&issuer);
    uri.push_str(params);
    Ok(OtpAuthUri(uri))
}

impl fmt::Debug for OtpAuthUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OtpAuthUri([REDACTED])")
    }
}
