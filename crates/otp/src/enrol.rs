//! Enrolment: a fresh seed and the URI / QR image that carries it to the user's app.

use rand::{CryptoRng, RngCore};

use crate::{Hotp, OtpAuthUri, OtpSecret, QrError, Totp, UriError, qr_png, qr_svg};

/// A new token: the seed to encrypt and store, and its URI to show once.
#[derive(Debug)]
pub struct Enrolment {
    pub secret: OtpSecret,
    pub uri: OtpAuthUri,
}

impl Enrolment {
    /// A new TOTP token with a seed of the algorithm's output size.
    pub fn totp<R: CryptoRng + RngCore + ?Sized>(
        rng: &mut R,
        totp: &Totp,
        issuer: &str,
        account: &str,
    ) -> Result<Self, UriError> {
        let secret = OtpSecret::generate(rng, totp.algorithm());
        let uri = OtpAuthUri::totp(totp, &secret, issuer, account)?;
        Ok(Self { secret, uri })
    }

    /// A new HOTP token; its next expected counter is 0.
    pub fn hotp<R: CryptoRng + RngCore + ?Sized>(
        rng: &mut R,
        hotp: &Hotp,
        issuer: &str,
        account: &str,
    ) -> Result<Self, UriError> {
        let secret = OtpSecret::generate(rng, hotp.algorithm);
        let uri = OtpAuthUri::hotp(hotp, &secret, 0, issuer, account)?;
        Ok(Self { secret, uri })
    }

    /// The URI as a PNG QR image (`scale` pixels per module).
    pub fn qr_png(&self, scale: u32) -> Result<Vec<u8>, QrError> {
        qr_png(&self.uri, scale)
    }

    /// The URI as an SVG QR image at least `min_px` square.
    pub fn qr_svg(&self, min_px: u32) -> Result<String, QrError> {
        qr_svg(&self.uri, min_px)
    }
}
