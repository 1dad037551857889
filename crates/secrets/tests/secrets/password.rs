//! argon2id: right, wrong, PHC errors, rehash.

use rand::SeedableRng;
use rand::rngs::StdRng;
use vigil_secrets::{HashError, HashParams, PasswordHasher, PhcError};

fn fast() -> PasswordHasher {
    PasswordHasher::new(HashParams::INSECURE_FAST_FOR_TESTS).unwrap()
}

#[test]
fn verify_right_and_wrong() {
    let hasher = fast();
    let stored = hasher.hash(&mut StdRng::seed_from_u64(1), b"123456").unwrap();
    assert!(
        stored.as_str().starts_with("$argon2id$v=19$m=8,t=1,p=1$"),
        "{}",
        stored.as_str()
    );
    assert!(hasher.verify(b"123456", stored.as_str()).unwrap());
    assert!(!hasher.verify(b"123457", stored.as_str()).unwrap());
    assert!(!hasher.verify(b"", stored.as_str()).unwrap());
}

#[test]
fn salts_differ() {
    let hasher = fast();
    let mut rng = StdRng::seed_from_u64(2);
    let a = hasher.hash(&mut rng, b"pin").unwrap();
    let b = hasher.hash(&mut rng, b"pin").unwrap();
    assert_ne!(a, b);
    assert!(hasher.verify(b"pin", a.as_str()).unwrap() && hasher.verify(b"pin", b.as_str()).unwrap());
}

#[test]
fn hashes_verify_under_other_parameters() {
    // A row hashed with old parameters still verifies, and is flagged for rehash.
    let old = fast();
    let stored = old.hash(&mut StdRng::seed_from_u64(3), b"pw").unwrap();
    let current = PasswordHasher::new(HashParams {
        m_cost_kib: 16,
        t_cost: 2,
        p_cost: 1,
    })
    .unwrap();
    assert!(current.verify(b"pw", stored.as_str()).unwrap());
    assert!(current.needs_rehash(stored.as_str()).unwrap());
    assert!(!old.needs_rehash(stored.as_str()).unwrap());
}

#[test]
fn production_default_is_owasp() {
    let hasher = PasswordHasher::default();
    assert_eq!(hasher.params(), HashParams::OWASP);
    assert_eq!(
        HashParams::OWASP,
        HashParams {
            m_cost_kib: 19456,
            t_cost: 2,
            p_cost: 1
        }
    );
    let stored = hasher.hash(&mut StdRng::seed_from_u64(4), b"pw").unwrap();
    assert!(stored.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    assert!(hasher.verify(b"pw", stored.as_str()).unwrap());
}

#[test]
fn phc_parse_errors_are_typed() {
    let hasher = fast();
    let good = hasher.hash(&mut StdRng::seed_from_u64(5), b"pw").unwrap().into_string();
    let cases: [(&str, HashError); 7] = [
        ("", HashError::Phc(PhcError::Format)),
        ("not a hash", HashError::Phc(PhcError::Format)),
        ("$argon2id$v=19$m=8,t=1,p=1", HashError::Phc(PhcError::Format)),
        (
            "$argon2id$v=19$m=8,t=1,p=1,zz=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
            HashError::Phc(PhcError::Params),
        ),
        (
            "$argon2id$v=99$m=8,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
            HashError::Phc(PhcError::Version),
        ),
        (
            "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHRzYWx0$!!!",
            HashError::Phc(PhcError::Format),
        ),
        (
            "$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
            HashError::UnsupportedAlgorithm("argon2i".into()),
        ),
    ];
    for (phc, want) in cases {
        assert_eq!(hasher.verify(b"pw", phc).unwrap_err(), want, "{phc:?}");
    }
    assert!(matches!(
        hasher.verify(b"pw", "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"),
        Err(HashError::UnsupportedAlgorithm(alg)) if alg == "pbkdf2-sha256"
    ));
    // A bad salt (too short) and a bad parameter value.
    assert!(matches!(
        hasher.verify(b"pw", "$argon2id$v=19$m=8,t=1,p=1$c2E$aGFzaGhhc2hoYXNoaGFzaA"),
        Err(HashError::Phc(PhcError::Salt))
    ));
    assert!(matches!(
        hasher.verify(
            b"pw",
            "$argon2id$v=19$m=abc,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA"
        ),
        Err(HashError::Phc(_))
    ));
    // A truncated real hash never verifies.
    assert!(!matches!(hasher.verify(b"pw", &good[..good.len() - 10]), Ok(true)));
    // A hash output below the minimum length.
    assert_eq!(
        hasher
            .verify(b"pw", "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaA")
            .unwrap_err(),
        HashError::Phc(PhcError::Output)
    );
    // Another algorithm is always due for rehash.
    assert!(
        hasher
            .needs_rehash("$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA")
            .unwrap()
    );
}

#[test]
fn invalid_parameters_are_refused() {
    assert!(matches!(
        PasswordHasher::new(HashParams {
            m_cost_kib: 1,
            t_cost: 1,
            p_cost: 1
        }),
        Err(HashError::Params(_))
    ));
    assert!(matches!(
        PasswordHasher::new(HashParams {
            m_cost_kib: 8,
            t_cost: 0,
            p_cost: 1
        }),
        Err(HashError::Params(_))
    ));
}

#[test]
fn dummy_verification_runs() {
    fast().verify_dummy(b"whatever");
}

#[test]
fn debug_is_redacted() {
    let hasher = fast();
    let stored = hasher.hash(&mut StdRng::seed_from_u64(6), b"pw").unwrap();
    assert!(!format!("{stored:?}").contains("argon2id"));
    assert!(format!("{hasher:?}").contains("m_cost_kib"));
}
