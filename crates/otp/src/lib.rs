//! OATH one-time passwords for Vigil: HOTP (RFC 4226), TOTP (RFC 6238), the
//! verification policy around them, enrolment URIs and QR images, and backup codes.
//!
//! Everything here is pure: no clock reads, no global RNG, no I/O. Time is passed
//! as Unix seconds and randomness as an RNG, so windows and replays are tested by
//! moving numbers. Seeds live in [`OtpSecret`] (zeroed on drop, redacted in `Debug`);
//! encrypting them at rest is `vigil-secrets`' job.
//!
//! # Verifying a TOTP code
//! ```
//! use vigil_otp::{Code, OtpSecret, Totp, VerifyError};
//!
//! let secret = OtpSecret::from_bytes(b"12345678901234567890").unwrap();
//! let totp = Totp::default(); // SHA-1, 6 digits, 30 s, ±1 step
//! let now = 1_700_000_000; // from the injected clock
//! let typed = totp.generate(&secret, now); // what the user's app shows
//!
//! // Parse at the edge: spaces ignored, typed error for anything else.
//! let code = Code::parse(typed.as_str(), totp.digits()).unwrap();
//! let m = totp.verify(&secret, &code, now, None).unwrap();
//! // Persist m.step as the token's last_step (atomically: WHERE last_step < m.step).
//! assert_eq!(totp.verify(&secret, &code, now, Some(m.step)), Err(VerifyError::Replayed));
//! ```
//!
//! # Verifying an HOTP code
//! ```
//! use vigil_otp::{Hotp, OtpSecret};
//!
//! let secret = OtpSecret::from_bytes(b"12345678901234567890").unwrap();
//! let hotp = Hotp::default(); // SHA-1, 6 digits, look-ahead 10, resync window 100
//! let stored_counter = 0; // the next expected counter, from the database
//! let code = hotp.generate(&secret, 3); // the user pressed the button 4 times
//! let new_counter = hotp.verify(&secret, &code, stored_counter).unwrap();
//! assert_eq!(new_counter, 4); // persist it
//!
//! // Far out of sync: two consecutive codes within the resync window.
//! let (a, b) = (hotp.generate(&secret, 60), hotp.generate(&secret, 61));
//! assert_eq!(hotp.resync(&secret, &a, &b, new_counter).unwrap(), 62);
//! ```
//!
//! # Enrolling
//! ```
//! use vigil_otp::{Enrolment, Totp};
//!
//! let mut rng = rand::rng(); // services pass their injected CSPRNG
//! let e = Enrolment::totp(&mut rng, &Totp::default(), "Vigil Corp", "alice@example.com").unwrap();
//! // Encrypt e.secret.expose_bytes() with vigil-secrets and store it;
//! // show e.uri.expose() / the QR image to the user once.
//! assert!(e.uri.expose().starts_with("otpauth://totp/Vigil%20Corp:alice%40example.com?secret="));
//! let png: Vec<u8> = e.qr_png(8).unwrap();
//! let svg: String = e.qr_svg(256).unwrap();
//! # assert!(png.starts_with(b"\x89PNG") && svg.contains("<svg"));
//! ```
//!
//! # Backup codes
//! ```
//! use vigil_otp::{BackupCode, generate_backup_codes};
//!
//! let codes = generate_backup_codes(&mut rand::rng()); // ten codes
//! let shown = codes[0].display(); // "xxxxx-xxxxx", shown once
//! // Store argon2id hashes of code.normalized(); on use, parse what was typed:
//! let typed = BackupCode::parse(&shown.to_uppercase().replace('-', " ")).unwrap();
//! assert_eq!(typed.normalized(), codes[0].normalized());
//! ```
//!
//! # Why not `totp-rs`
//! `totp-rs` (6.x) covers TOTP only — no HOTP counter, look-ahead or resync —
//! has no notion of a last used step, needs Rust 1.88 (the workspace is on 1.85),
//! and its QR feature pulls in the `image` crate. The OTP arithmetic itself is the
//! ten lines of [`hotp()`] over the RustCrypto `hmac`/`sha1`/`sha2` crates already in
//! the workspace, checked against every RFC 4226 / RFC 6238 test vector.

mod algorithm;
mod backup;
mod code;
mod enrol;
mod error;
mod hotp;
mod qr;
mod secret;
mod totp;
mod uri;

pub use algorithm::{Algorithm, Digits};
pub use backup::{BACKUP_ALPHABET, BACKUP_CODE_COUNT, BACKUP_CODE_LEN, BackupCode, generate_backup_codes};
pub use code::Code;
pub use enrol::Enrolment;
pub use error::{BackupCodeError, CodeError, ParamError, QrError, UriError, VerifyError};
pub use hotp::{DEFAULT_LOOK_AHEAD, DEFAULT_RESYNC_WINDOW, Hotp, MAX_HOTP_WINDOW, hotp};
pub use qr::{MAX_SCALE, payload_qr_png, qr_png, qr_svg};
pub use secret::{MAX_SEED_LEN, MIN_SEED_LEN, OtpSecret};
pub use totp::{DEFAULT_PERIOD, DEFAULT_SKEW, MAX_SKEW, Totp, TotpMatch};
pub use uri::OtpAuthUri;
