//! Enrolment: seeds, URIs, QR images.

use rand::SeedableRng;
use rand::rngs::StdRng;
use vigil_otp::{Algorithm, Digits, Enrolment, Hotp, MAX_SCALE, OtpAuthUri, QrError, Totp, UriError, qr_png};

#[test]
fn seeds_have_the_hash_output_size_and_differ() {
    let mut rng = StdRng::seed_from_u64(7);
    for (alg, len) in [(Algorithm::Sha1, 20), (Algorithm::Sha256, 32), (Algorithm::Sha512, 64)] {
        let totp = Totp::new(alg, Digits::Six, 30).unwrap();
        let a = Enrolment::totp(&mut rng, &totp, "Vigil", "alice").unwrap();
        let b = Enrolment::totp(&mut rng, &totp, "Vigil", "alice").unwrap();
        assert_eq!(a.secret.expose_bytes().len(), len);
        assert_ne!(a.secret, b.secret);
    }
}

#[test]
fn totp_uri_is_exact_and_percent_encoded() {
    let secret = super::rfc_seed();
    let totp = Totp::new(Algorithm::Sha256, Digits::Eight, 60).unwrap();
    let uri = OtpAuthUri::totp(&totp, &secret, "ACME Co", "alice@example.com").unwrap();
    assert_eq!(
        uri.expose(),
        "otpauth://totp/ACME%20Co:alice%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
         &issuer=ACME%20Co&algorithm=SHA256&digits=8&period=60"
    );
}

#[test]
fn hotp_uri_carries_the_counter() {
    let secret = super::rfc_seed();
    let uri = OtpAuthUri::hotp(&Hotp::default(), &secret, 42, "Vigil", "bob").unwrap();
    assert_eq!(
        uri.expose(),
        "otpauth://hotp/Vigil:bob?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Vigil&algorithm=SHA1&digits=6&counter=42"
    );
}

#[test]
fn uri_encodes_reserved_and_unicode_characters() {
    let secret = super::rfc_seed();
    let uri = OtpAuthUri::totp(&Totp::default(), &secret, "Ünïcode & Co/?#", "a+b=c d").unwrap();
    let text = uri.expose();
    assert!(
        text.starts_with("otpauth://totp/%C3%9Cn%C3%AFcode%20%26%20Co%2F%3F%23:a%2Bb%3Dc%20d?secret="),
        "{text}"
    );
    assert!(text.contains("&issuer=%C3%9Cn%C3%AFcode%20%26%20Co%2F%3F%23&"));
}

#[test]
fn uri_refuses_bad_labels() {
    let secret = super::rfc_seed();
    let totp = Totp::default();
    assert_eq!(OtpAuthUri::totp(&totp, &secret, "", "a"), Err(UriError::EmptyIssuer));
    assert_eq!(OtpAuthUri::totp(&totp, &secret, "V", "  "), Err(UriError::EmptyAccount));
    assert_eq!(OtpAuthUri::totp(&totp, &secret, "V:x", "a"), Err(UriError::Colon));
    assert_eq!(OtpAuthUri::totp(&totp, &secret, "V", "dom:a"), Err(UriError::Colon));
}

#[test]
fn uri_debug_hides_the_seed() {
    let uri = OtpAuthUri::totp(&Totp::default(), &super::rfc_seed(), "V", "a").unwrap();
    assert!(!format!("{uri:?}").contains("GEZD"));
    let e = Enrolment::totp(&mut StdRng::seed_from_u64(1), &Totp::default(), "V", "a").unwrap();
    let shown = format!("{e:?}");
    assert!(!shown.contains(e.secret.to_base32().as_str()), "{shown}");
}

#[test]
fn qr_png_is_a_decodable_bilevel_image() {
    let e = Enrolment::totp(
        &mut StdRng::seed_from_u64(2),
        &Totp::default(),
        "Vigil",
        "alice@example.com",
    )
    .unwrap();
    let bytes = e.qr_png(4).unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let info = reader.info();
    assert_eq!(info.width, info.height);
    assert_eq!(info.bit_depth, png::BitDepth::One);
    // Version ≥ 5 (37 modules) plus 2 × 4 quiet-zone modules, 4 px each.
    assert!(info.width >= (37 + 8) * 4, "{}", info.width);
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut buf).unwrap();
    let row = frame.line_size;
    // Top-left corner is quiet zone (white); a finder pattern starts at module 4.
    assert_eq!(buf[0] & 0x80, 0x80);
    let finder = 4 * 4 * row + 2; // row 16, pixel 16 = byte 2, bit 7
    assert_eq!(buf[finder] & 0x80, 0, "finder pattern is dark");
}

#[test]
fn qr_png_scale_is_bounded() {
    let e = Enrolment::hotp(&mut StdRng::seed_from_u64(3), &Hotp::default(), "Vigil", "bob").unwrap();
    assert!(matches!(qr_png(&e.uri, 0), Err(QrError::BadScale { .. })));
    assert!(matches!(qr_png(&e.uri, MAX_SCALE + 1), Err(QrError::BadScale { .. })));
    assert!(qr_png(&e.uri, 1).is_ok());
}

#[test]
fn qr_svg_is_an_svg_document() {
    let e = Enrolment::totp(&mut StdRng::seed_from_u64(4), &Totp::default(), "Vigil", "alice").unwrap();
    let svg = e.qr_svg(200).unwrap();
    assert!(svg.starts_with("<?xml") && svg.contains("<svg") && svg.trim_end().ends_with("</svg>"));
}
