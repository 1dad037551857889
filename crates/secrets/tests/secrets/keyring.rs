//! Envelope encryption: round trip, wrong key, wrong AAD, tampering, rotation.

use rand::SeedableRng;
use rand::rngs::StdRng;
use secrecy::ExposeSecret;
use vigil_secrets::{Aad, Keyring, KeyringError, SealError};

// 32 bytes each, standard base64.
const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const K2: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

fn rng() -> StdRng {
    StdRng::seed_from_u64(42)
}

fn aad(user: &str) -> Aad {
    Aad::new("totp_seed").with("provider", "prv_a").with("user", user)
}

#[test]
fn round_trip() {
    let ring = Keyring::parse(&format!("k1:{K1}")).unwrap();
    let ct = ring
        .encrypt(&mut rng(), b"twenty bytes of seed", &aad("usr_1"))
        .unwrap();
    assert_eq!(
        ring.decrypt(&ct, &aad("usr_1")).unwrap().expose_secret(),
        b"twenty bytes of seed"
    );
    assert_eq!(Keyring::key_id_of(&ct).unwrap(), "k1");
    // version, id length, id, nonce, ciphertext, tag
    assert_eq!(ct.len(), 1 + 1 + 2 + 12 + 20 + 16);
    assert!(!ct.windows(5).any(|w| w == b"bytes"), "plaintext visible in ciphertext");
}

#[test]
fn empty_plaintext_round_trips() {
    let ring = Keyring::parse(&format!("k1:{K1}")).unwrap();
    let ct = ring.encrypt(&mut rng(), b"", &aad("u")).unwrap();
    assert!(ring.decrypt(&ct, &aad("u")).unwrap().is_empty());
}

#[test]
fn nonces_are_fresh() {
    let ring = Keyring::parse(&format!("k1:{K1}")).unwrap();
    let mut rng = rng();
    let a = ring.encrypt(&mut rng, b"same", &aad("u")).unwrap();
    let b = ring.encrypt(&mut rng, b"same", &aad("u")).unwrap();
    assert_ne!(a, b);
}

#[test]
fn wrong_key_fails() {
    let ring1 = Keyring::parse(&format!("k1:{K1}")).unwrap();
    // Same id, different key material (e.g. a misconfigured replica).
    let impostor = Keyring::parse(&format!("k1:{K2}")).unwrap();
    let ct = ring1.encrypt(&mut rng(), b"secret", &aad("u")).unwrap();
    assert_eq!(impostor.decrypt(&ct, &aad("u")).unwrap_err(), SealError::Decrypt);
}

#[test]
fn ciphertext_bound_to_its_row() {
    let ring = Keyring::parse(&format!("k1:{K1}")).unwrap();
    let ct = ring.encrypt(&mut rng(), b"secret", &aad("usr_1")).unwrap();
    for other in [
        aad("usr_2"),
        Aad::new("totp_seed").with("provider", "prv_b").with("user", "usr_1"),
        Aad::new("hotp_seed").with("provider", "prv_a").with("user", "usr_1"),
        Aad::new("totp_seed").with("provider", "prv_a"),
        // Same bytes, split differently: length prefixes keep them apart.
        Aad::new("totp_seed").with("provider", "prv_au").with("ser", "usr_1"),
    ] {
        assert_eq!(ring.decrypt(&ct, &other).unwrap_err(), SealError::Decrypt, "{other:?}");
    }
}

#[test]
fn tampering_is_detected_anywhere() {
    let ring = Keyring::parse(&format!("k1:{K1}")).unwrap();
    let ct = ring.encrypt(&mut rng(), b"secret seed", &aad("u")).unwrap();
    for i in 0..ct.len() {
        let mut bad = ct.clone();
        bad[i] ^= 0x01;
        assert!(
            ring.decrypt(&bad, &aad("u")).is_err(),
            "flip at byte {i} went unnoticed"
        );
    }
    assert!(ring.decrypt(&ct[..ct.len() - 1], &aad("u")).is_err());
    let mut longer = ct.clone();
    longer.push(0);
    assert!(ring.decrypt(&longer, &aad("u")).is_err());
}

#[test]
fn malformed_ciphertexts_are_typed_errors() {
    let ring = Keyring::parse(&format!("k1:{K1}")).unwrap();
    assert_eq!(ring.decrypt(b"", &aad("u")).unwrap_err(), SealError::Malformed);
    assert_eq!(ring.decrypt(&[1], &aad("u")).unwrap_err(), SealError::Malformed);
    assert_eq!(
        ring.decrypt(&[9, 2, b'k', b'1'], &aad("u")).unwrap_err(),
        SealError::UnsupportedVersion(9)
    );
    assert_eq!(
        ring.decrypt(&[1, 2, b'k', b'1', 0, 0], &aad("u")).unwrap_err(),
        SealError::Malformed
    );
    let mut zero_id = vec![1, 0];
    zero_id.extend_from_slice(&[0; 40]);
    assert_eq!(ring.decrypt(&zero_id, &aad("u")).unwrap_err(), SealError::Malformed);
    let mut bad_id = vec![1, 2, b'k', b'/'];
    bad_id.extend_from_slice(&[0; 40]);
    assert_eq!(ring.decrypt(&bad_id, &aad("u")).unwrap_err(), SealError::Malformed);
}

#[test]
fn unknown_key_id() {
    let old = Keyring::parse(&format!("k1:{K1}")).unwrap();
    let new = Keyring::parse(&format!("k2:{K2}")).unwrap();
    let ct = old.encrypt(&mut rng(), b"secret", &aad("u")).unwrap();
    assert_eq!(
        new.decrypt(&ct, &aad("u")).unwrap_err(),
        SealError::UnknownKey { id: "k1".into() }
    );
    assert_eq!(
        new.needs_rotation(&ct).unwrap_err(),
        SealError::UnknownKey { id: "k1".into() }
    );
}

#[test]
fn rotation() {
    let mut rng = rng();
    let before = Keyring::parse(&format!("k1:{K1}")).unwrap();
    let old_ct = before.encrypt(&mut rng, b"seed", &aad("u")).unwrap();
    assert!(!before.needs_rotation(&old_ct).unwrap());

    let during = Keyring::parse(&format!("k2:{K2}, k1:{K1}")).unwrap();
    assert_eq!(during.active_key_id(), "k2");
    assert_eq!(during.key_ids().collect::<Vec<_>>(), ["k2", "k1"]);
    // Old rows still decrypt; new rows use the new key.
    assert_eq!(during.decrypt(&old_ct, &aad("u")).unwrap().expose_secret(), b"seed");
    assert_eq!(
        Keyring::key_id_of(&during.encrypt(&mut rng, b"x", &aad("u")).unwrap()).unwrap(),
        "k2"
    );
    assert!(during.needs_rotation(&old_ct).unwrap());
    // Re-encryption keeps the row binding: the wrong row's AAD cannot be used to launder it.
    assert_eq!(
        during.reencrypt(&mut rng, &old_ct, &aad("v")).unwrap_err(),
        SealError::Decrypt
    );
    let new_ct = during.reencrypt(&mut rng, &old_ct, &aad("u")).unwrap();
    assert!(!during.needs_rotation(&new_ct).unwrap());

    let after = Keyring::parse(&format!("k2:{K2}")).unwrap();
    assert_eq!(after.decrypt(&new_ct, &aad("u")).unwrap().expose_secret(), b"seed");
    assert!(after.decrypt(&old_ct, &aad("u")).is_err());
}

#[test]
fn keyring_configuration_errors() {
    assert_eq!(Keyring::parse("").unwrap_err(), KeyringError::Empty);
    assert_eq!(Keyring::parse(" , ").unwrap_err(), KeyringError::Empty);
    assert_eq!(
        Keyring::parse(K1).unwrap_err(),
        KeyringError::MissingSeparator { position: 1 }
    );
    assert_eq!(
        Keyring::parse(&format!("k1:{K1},:{K2}")).unwrap_err(),
        KeyringError::InvalidKeyId { position: 2 }
    );
    assert_eq!(
        Keyring::parse(&format!("k 1:{K1}")).unwrap_err(),
        KeyringError::InvalidKeyId { position: 1 }
    );
    assert_eq!(
        Keyring::parse(&format!("{}:{K1}", "k".repeat(33))).unwrap_err(),
        KeyringError::InvalidKeyId { position: 1 }
    );
    assert_eq!(
        Keyring::parse(&format!("k1:{K1},k1:{K2}")).unwrap_err(),
        KeyringError::DuplicateKeyId { id: "k1".into() }
    );
    assert_eq!(
        Keyring::parse("k1:not base64!").unwrap_err(),
        KeyringError::InvalidKey { id: "k1".into() }
    );
    // 16 and 33 bytes: not AES-256 keys.
    assert_eq!(
        Keyring::parse("k1:AAECAwQFBgcICQoLDA0ODw==").unwrap_err(),
        KeyringError::InvalidKey { id: "k1".into() }
    );
    assert_eq!(
        Keyring::parse("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g").unwrap_err(),
        KeyringError::InvalidKey { id: "k1".into() }
    );
    // Errors never echo key material.
    let err = Keyring::parse(&format!("k1:{K1},k2:{}", &K2[..20]))
        .unwrap_err()
        .to_string();
    assert!(!err.contains(&K1[..10]) && !err.contains(&K2[..10]), "{err}");
}

#[test]
fn debug_never_prints_keys_or_plaintext() {
    let ring: Keyring = format!("k2:{K2},k1:{K1}").parse().unwrap();
    let shown = format!("{ring:?}");
    assert!(shown.contains("k2") && shown.contains("k1"), "{shown}");
    assert!(!shown.contains(&K1[..8]) && !shown.contains(&K2[..8]), "{shown}");
    let ct = ring.encrypt(&mut rng(), b"plaintext!", &aad("u")).unwrap();
    let plain = ring.decrypt(&ct, &aad("u")).unwrap();
    assert!(!format!("{plain:?}").contains("plaintext"));
    let entry = Keyring::generate_entry(&mut rng(), "k9").unwrap();
    assert!(!format!("{entry:?}").contains("k9:"));
    assert!(Keyring::parse(entry.expose_secret()).is_ok());
}
