//! Backup codes: generation and input normalisation.

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use vigil_otp::{BACKUP_ALPHABET, BACKUP_CODE_COUNT, BackupCode, BackupCodeError, generate_backup_codes};

#[test]
fn ten_distinct_well_formed_codes() {
    let codes = generate_backup_codes(&mut StdRng::seed_from_u64(9));
    assert_eq!(codes.len(), BACKUP_CODE_COUNT);
    for (i, code) in codes.iter().enumerate() {
        let shown = code.display();
        assert_eq!(shown.len(), 11);
        assert_eq!(&shown[5..6], "-");
        assert!(code.normalized().bytes().all(|b| BACKUP_ALPHABET.contains(&b)));
        assert!(codes[i + 1..].iter().all(|other| other != code));
    }
}

#[test]
fn the_alphabet_has_no_look_alikes() {
    for c in *b"01ilo" {
        assert!(!BACKUP_ALPHABET.contains(&c), "{}", c as char);
    }
}

#[test]
fn parse_normalises_case_dashes_and_spaces() {
    let code = BackupCode::parse("abcde-fghjk").unwrap();
    for typed in [
        "ABCDE-FGHJK",
        "abcdefghjk",
        " abcde fghjk ",
        "ab-cde-fg-hjk",
        "AbCdE\tFgHjK",
    ] {
        assert_eq!(BackupCode::parse(typed).unwrap(), code, "{typed}");
    }
    assert_eq!(code.normalized(), "abcdefghjk");
    assert_eq!(code.display().as_str(), "abcde-fghjk");
}

#[test]
fn parse_rejects_bad_input() {
    assert_eq!(
        BackupCode::parse(""),
        Err(BackupCodeError::WrongLength { expected: 10, got: 0 })
    );
    assert_eq!(
        BackupCode::parse("abcde-fghj"),
        Err(BackupCodeError::WrongLength { expected: 10, got: 9 })
    );
    assert_eq!(
        BackupCode::parse("abcde-fghjkm"),
        Err(BackupCodeError::WrongLength { expected: 10, got: 11 })
    );
    assert_eq!(BackupCode::parse("abcde-fgh0k"), Err(BackupCodeError::InvalidChar));
    assert_eq!(BackupCode::parse("abcde-fghlk"), Err(BackupCodeError::InvalidChar));
    assert_eq!(BackupCode::parse("abcde-fgh_k"), Err(BackupCodeError::InvalidChar));
    assert_eq!(BackupCode::parse("abcde-fghék"), Err(BackupCodeError::InvalidChar));
}

#[test]
fn debug_hides_the_code() {
    let code = BackupCode::parse("abcde-fghjk").unwrap();
    assert!(!format!("{code:?}").contains("abcde"));
}

proptest! {
    #[test]
    fn parse_never_panics(input in "\\PC{0,30}") {
        let _ = BackupCode::parse(&input);
    }

    #[test]
    fn display_form_round_trips(seed in any::<u64>(), upper in any::<bool>()) {
        let code = BackupCode::generate(&mut StdRng::seed_from_u64(seed));
        let shown = code.display();
        let typed = if upper { shown.to_uppercase() } else { shown.to_string() };
        prop_assert_eq!(BackupCode::parse(&typed).unwrap(), code);
    }
}
