//! Keyed token hashing and the constant-time helper.

use rand::SeedableRng;
use rand::rngs::StdRng;
use secrecy::{ExposeSecret, SecretString};
use vigil_secrets::{TokenHashError, TokenHasher, ct_eq, generate_token};

const PEPPER: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

#[test]
fn hash_is_stable_hex_and_keyed() {
    let hasher = TokenHasher::new(PEPPER).unwrap();
    let a = hasher.hash("agent", b"vat_token");
    assert_eq!(a.len(), 64);
    assert!(a.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(a, hasher.hash("agent", b"vat_token"));
    assert_ne!(a, hasher.hash("agent", b"vat_tokem"));
    // Domain separation by purpose, unambiguous at the boundary.
    assert_ne!(a, hasher.hash("admin_token", b"vat_token"));
    assert_ne!(hasher.hash("ab", b"c"), hasher.hash("a", b"bc"));
    // Another pepper, another hash.
    let other = TokenHasher::new(b"another pepper, thirty-two bytes").unwrap();
    assert_ne!(a, other.hash("agent", b"vat_token"));
}

#[test]
fn matches_hmac_sha256_reference() {
    // HMAC-SHA256(key = PEPPER, msg = 00000005 "agent" "tok"), computed independently
    // with `openssl dgst -sha256 -hmac`.
    let hasher = TokenHasher::new(PEPPER).unwrap();
    assert_eq!(
        hasher.hash("agent", b"tok"),
        "8f12c6a305e096b3a6ccb72723a1adc91c32da0f94a1515ff656f14a35b3d7d1"
    );
}

#[test]
fn verify_in_constant_time() {
    let hasher = TokenHasher::new(PEPPER).unwrap();
    let stored = hasher.hash("agent", b"secret");
    assert!(hasher.verify("agent", b"secret", &stored));
    assert!(!hasher.verify("agent", b"secreT", &stored));
    assert!(!hasher.verify("agent", b"secret", &stored[..63]));
    assert!(!hasher.verify("agent", b"secret", ""));
}

#[test]
fn pepper_is_checked() {
    assert_eq!(
        TokenHasher::new(&PEPPER[..31]).unwrap_err(),
        TokenHashError::PepperTooShort { got: 31, min: 32 }
    );
    assert_eq!(
        TokenHasher::from_base64(&SecretString::from("not base64")).unwrap_err(),
        TokenHashError::InvalidBase64
    );
    let b64 = SecretString::from("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=");
    let from_b64 = TokenHasher::from_base64(&b64).unwrap();
    assert_eq!(
        from_b64.hash("x", b"y"),
        TokenHasher::new(PEPPER).unwrap().hash("x", b"y")
    );
    assert!(!format!("{from_b64:?}").contains("0123"));
}

#[test]
fn generated_tokens() {
    let mut rng = StdRng::seed_from_u64(8);
    let a = generate_token(&mut rng, "vat");
    let b = generate_token(&mut rng, "vat");
    assert_ne!(a.expose_secret(), b.expose_secret());
    let body = a.expose_secret().strip_prefix("vat_").unwrap();
    assert_eq!(body.len(), 43);
    assert!(
        body.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    );
    assert!(!format!("{a:?}").contains(body));
}

#[test]
fn ct_eq_helper() {
    assert!(ct_eq(b"abc", b"abc"));
    assert!(!ct_eq(b"abc", b"abd"));
    assert!(!ct_eq(b"abc", b"ab"));
    assert!(ct_eq(b"", b""));
}
