//! Arbitrary input to the parsers: errors, never panics, never false acceptance.

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use secrecy::ExposeSecret;
use vigil_secrets::{Aad, HashParams, Keyring, PasswordHasher};

fn ring() -> Keyring {
    Keyring::parse("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_ciphertexts_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        prop_assert!(ring().decrypt(&bytes, &Aad::new("x")).is_err());
        let _ = ring().needs_rotation(&bytes);
        let _ = Keyring::key_id_of(&bytes);
    }

    #[test]
    fn round_trip_any_plaintext_and_aad(
        plaintext in proptest::collection::vec(any::<u8>(), 0..200),
        purpose in "\\PC{0,20}",
        user in "\\PC{0,20}",
        seed in any::<u64>(),
    ) {
        let ring = ring();
        let aad = Aad::new(&purpose).with("user", &user);
        let ct = ring.encrypt(&mut StdRng::seed_from_u64(seed), &plaintext, &aad).unwrap();
        let opened = ring.decrypt(&ct, &aad).unwrap();
        prop_assert_eq!(opened.expose_secret(), &plaintext[..]);
    }

    #[test]
    fn keyring_specs_never_panic(spec in "\\PC{0,80}") {
        let _ = Keyring::parse(&spec);
    }

    #[test]
    fn phc_strings_never_panic(phc in "\\$argon2id\\$v=19\\$[a-z0-9=,]{0,20}\\$[A-Za-z0-9+/]{0,30}\\$[A-Za-z0-9+/]{0,50}|\\PC{0,60}") {
        let hasher = PasswordHasher::new(HashParams::INSECURE_FAST_FOR_TESTS).unwrap();
        // Random strings with tiny parameters; anything accepted would be a bug.
        if let Ok(ok) = hasher.verify(b"pw", &phc) {
            prop_assert!(!ok);
        }
    }
}
