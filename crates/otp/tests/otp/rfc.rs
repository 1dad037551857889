//! The published test vectors.

use vigil_otp::{Algorithm, Digits, Hotp, OtpSecret, Totp, hotp};

#[test]
fn rfc4226_appendix_d() {
    let expected = [
        "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489",
    ];
    let secret = super::rfc_seed();
    for (counter, want) in expected.iter().enumerate() {
        let code = hotp(&secret, counter as u64, Algorithm::Sha1, Digits::Six);
        assert_eq!(code.as_str(), *want, "counter {counter}");
        assert_eq!(Hotp::default().generate(&secret, counter as u64).as_str(), *want);
    }
}

#[test]
fn rfc6238_appendix_b_all_algorithms() {
    let sha1 = OtpSecret::from_bytes(b"12345678901234567890").unwrap();
    let sha256 = OtpSecret::from_bytes(b"12345678901234567890123456789012").unwrap();
    let sha512 = OtpSecret::from_bytes(b"1234567890123456789012345678901234567890123456789012345678901234").unwrap();
    // (time, SHA1, SHA256, SHA512)
    let table: [(u64, &str, &str, &str); 6] = [
        (59, "94287082", "46119246", "90693936"),
        (1_111_111_109, "07081804", "68084774", "25091201"),
        (1_111_111_111, "14050471", "67062674", "99943326"),
        (1_234_567_890, "89005924", "91819424", "93441116"),
        (2_000_000_000, "69279037", "90698825", "38618901"),
        (20_000_000_000, "65353130", "77737706", "47863826"),
    ];
    for (time, c1, c256, c512) in table {
        for (alg, secret, want) in [
            (Algorithm::Sha1, &sha1, c1),
            (Algorithm::Sha256, &sha256, c256),
            (Algorithm::Sha512, &sha512, c512),
        ] {
            let totp = Totp::new(alg, Digits::Eight, 30).unwrap();
            assert_eq!(totp.generate(secret, time).as_str(), want, "{alg} at {time}");
        }
    }
}

#[test]
fn six_digits_are_the_low_digits_of_eight() {
    let secret = super::rfc_seed();
    let six = Totp::default().generate(&secret, 59);
    assert_eq!(six.as_str(), "287082");
}

#[test]
fn algorithm_names() {
    for alg in [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512] {
        assert_eq!(Algorithm::parse(alg.as_str()), Ok(alg));
    }
    assert_eq!(Algorithm::parse("sha-256"), Ok(Algorithm::Sha256));
    assert!(Algorithm::parse("MD5").is_err());
    assert_eq!(Digits::from_len(8), Ok(Digits::Eight));
    assert!(Digits::from_len(7).is_err());
    assert!(Totp::new(Algorithm::Sha1, Digits::Six, 0).is_err());
}
