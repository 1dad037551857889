//! The code parser: examples, then properties over arbitrary input.

use proptest::prelude::*;
use vigil_otp::{Code, CodeError, Digits, OtpSecret, ParamError};

#[test]
fn parse_examples() {
    assert_eq!(Code::parse("123456", Digits::Six).unwrap().as_str(), "123456");
    assert_eq!(Code::parse("  123 456\t\n", Digits::Six).unwrap().as_str(), "123456");
    assert_eq!(Code::parse("0000 0001", Digits::Eight).unwrap().as_str(), "00000001");
    assert_eq!(Code::parse("", Digits::Six), Err(CodeError::Empty));
    assert_eq!(Code::parse("   ", Digits::Six), Err(CodeError::Empty));
    assert_eq!(
        Code::parse("12345", Digits::Six),
        Err(CodeError::WrongLength { expected: 6, got: 5 })
    );
    assert_eq!(
        Code::parse("1234567", Digits::Six),
        Err(CodeError::WrongLength { expected: 6, got: 7 })
    );
    assert_eq!(
        Code::parse("123456", Digits::Eight),
        Err(CodeError::WrongLength { expected: 8, got: 6 })
    );
    assert_eq!(Code::parse("123-456", Digits::Six), Err(CodeError::NonDigit));
    assert_eq!(Code::parse("12345a", Digits::Six), Err(CodeError::NonDigit));
    assert_eq!(Code::parse("+12345", Digits::Six), Err(CodeError::NonDigit));
    // Non-ASCII digits (Arabic-Indic, full-width) are not code digits.
    assert_eq!(Code::parse("١٢٣٤٥٦", Digits::Six), Err(CodeError::NonDigit));
    assert_eq!(Code::parse("１２３４５６", Digits::Six), Err(CodeError::NonDigit));
}

#[test]
fn code_debug_hides_the_digits() {
    let code = Code::parse("987654", Digits::Six).unwrap();
    let shown = format!("{code:?}");
    assert!(!shown.contains("987654"), "{shown}");
}

#[test]
fn code_equality() {
    let a = Code::parse("123456", Digits::Six).unwrap();
    assert_eq!(a, Code::parse("123 456", Digits::Six).unwrap());
    assert_ne!(a, Code::parse("123457", Digits::Six).unwrap());
}

#[test]
fn seed_parsing_and_redaction() {
    let seed = OtpSecret::from_base32("gezd gnbv gy3t qojq gezd gnbv gy3t qojq").unwrap();
    assert_eq!(seed.expose_bytes(), b"12345678901234567890");
    assert_eq!(seed.to_base32().as_str(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    assert_eq!(
        OtpSecret::from_base32("GEZDGNBVGY3TQOJQ===="),
        Err(ParamError::SeedTooShort { got: 10, min: 16 })
    );
    assert_eq!(OtpSecret::from_base32("not base32!"), Err(ParamError::InvalidBase32));
    assert!(matches!(
        OtpSecret::from_bytes(&[0u8; 300]),
        Err(ParamError::SeedTooLong { .. })
    ));
    assert!(!format!("{seed:?}").contains("GEZD"));
    assert!(!format!("{seed:?}").contains("12345"));
}

fn digits() -> impl Strategy<Value = Digits> {
    prop_oneof![Just(Digits::Six), Just(Digits::Eight)]
}

proptest! {
    #[test]
    fn parse_never_panics(input in "\\PC{0,40}", d in digits()) {
        let _ = Code::parse(&input, d);
    }

    #[test]
    fn digits_with_any_whitespace_parse(raw in "[0-9]{8}", spaces in proptest::collection::vec((0usize..9, "[ \t\u{a0}\u{2009}]"), 0..5), d in digits()) {
        let want = &raw[..d.len()];
        // Whitespace goes before digit `at` (or at the end).
        let mut typed = String::new();
        for (i, c) in want.chars().chain(std::iter::once('\n')).enumerate() {
            for (_, ws) in spaces.iter().filter(|(at, _)| *at == i) {
                typed.push_str(ws);
            }
            typed.push(c);
        }
        let code = Code::parse(&typed, d).unwrap();
        prop_assert_eq!(code.as_str(), want);
    }

    #[test]
    fn any_non_digit_is_rejected(prefix in "[0-9]{0,4}", bad in "[^0-9\\s]", suffix in "[0-9]{0,4}", d in digits()) {
        let typed = format!("{prefix}{bad}{suffix}");
        prop_assert_eq!(Code::parse(&typed, d), Err(CodeError::NonDigit));
    }

    #[test]
    fn wrong_lengths_are_rejected(raw in "[0-9]{1,20}", d in digits()) {
        let result = Code::parse(&raw, d);
        if raw.len() == d.len() {
            prop_assert!(result.is_ok());
        } else {
            prop_assert_eq!(result, Err(CodeError::WrongLength { expected: d.len(), got: raw.len() }));
        }
    }

    #[test]
    fn generated_codes_round_trip(seed in proptest::collection::vec(any::<u8>(), 16..64), counter in any::<u64>(), d in digits()) {
        let secret = OtpSecret::from_bytes(&seed).unwrap();
        let hotp = vigil_otp::Hotp::new(vigil_otp::Algorithm::Sha256, d);
        let code = hotp.generate(&secret, counter);
        prop_assert_eq!(code.as_str().len(), d.len());
        prop_assert_eq!(Code::parse(code.as_str(), d).unwrap(), code);
    }

    #[test]
    fn base32_round_trips(seed in proptest::collection::vec(any::<u8>(), 16..=256)) {
        let secret = OtpSecret::from_bytes(&seed).unwrap();
        let text = secret.to_base32();
        let parsed = OtpSecret::from_base32(&text.to_lowercase()).unwrap();
        prop_assert_eq!(parsed.expose_bytes(), &seed[..]);
    }
}
