//! Verification policy: windows, replay, look-ahead, resync.

use vigil_otp::{Code, Digits, Hotp, Totp, TotpMatch, VerifyError};

const NOW: u64 = 1_700_000_015; // step 56_666_667, 15 s into it

#[test]
fn totp_accepts_one_step_either_side() {
    let secret = super::rfc_seed();
    let totp = Totp::default();
    let current = totp.step(NOW);
    for drift in [-1i64, 0, 1] {
        let step = current.checked_add_signed(drift).unwrap();
        let code = totp.generate_step(&secret, step);
        assert_eq!(totp.verify(&secret, &code, NOW, None), Ok(TotpMatch { step, drift }));
    }
    for drift in [-3i64, -2, 2, 3] {
        let code = totp.generate_step(&secret, current.checked_add_signed(drift).unwrap());
        assert_eq!(
            totp.verify(&secret, &code, NOW, None),
            Err(VerifyError::Mismatch),
            "drift {drift}"
        );
    }
}

#[test]
fn totp_skew_is_configurable() {
    let secret = super::rfc_seed();
    let exact = Totp::default().with_skew(0);
    let current = exact.step(NOW);
    assert!(
        exact
            .verify(&secret, &exact.generate_step(&secret, current), NOW, None)
            .is_ok()
    );
    let previous = exact.generate_step(&secret, current - 1);
    assert_eq!(exact.verify(&secret, &previous, NOW, None), Err(VerifyError::Mismatch));

    let wide = Totp::default().with_skew(2);
    assert_eq!(
        wide.verify(&secret, &wide.generate_step(&secret, current - 2), NOW, None)
            .unwrap()
            .drift,
        -2
    );
}

#[test]
fn totp_step_boundaries_use_the_injected_time() {
    let secret = super::rfc_seed();
    let totp = Totp::default().with_skew(0);
    let code = totp.generate(&secret, 1_700_000_010); // step 56_666_667 spans ..010 ..= ..039
    assert!(totp.verify(&secret, &code, 1_700_000_039, None).is_ok());
    assert_eq!(
        totp.verify(&secret, &code, 1_700_000_040, None),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(
        totp.verify(&secret, &code, 1_700_000_009, None),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn totp_refuses_a_replayed_code() {
    let secret = super::rfc_seed();
    let totp = Totp::default();
    let code = totp.generate(&secret, NOW);
    let first = totp.verify(&secret, &code, NOW, None).unwrap();
    // Same code again, now and a step later (still inside the window).
    assert_eq!(
        totp.verify(&secret, &code, NOW, Some(first.step)),
        Err(VerifyError::Replayed)
    );
    assert_eq!(
        totp.verify(&secret, &code, NOW + 30, Some(first.step)),
        Err(VerifyError::Replayed)
    );
    // An older code inside the window is refused too: at or before last_step.
    let older = totp.generate_step(&secret, first.step - 1);
    assert_eq!(
        totp.verify(&secret, &older, NOW, Some(first.step)),
        Err(VerifyError::Replayed)
    );
    // The next step's code is fine.
    let next = totp.generate_step(&secret, first.step + 1);
    assert_eq!(
        totp.verify(&secret, &next, NOW + 30, Some(first.step)).unwrap().step,
        first.step + 1
    );
}

#[test]
fn totp_wrong_code_and_wrong_length() {
    let secret = super::rfc_seed();
    let totp = Totp::default();
    let good = totp.generate(&secret, NOW);
    let wrong_digit = if good.as_str().starts_with('0') { "1" } else { "0" };
    let bad = Code::parse(&format!("{wrong_digit}{}", &good.as_str()[1..]), Digits::Six).unwrap();
    assert_eq!(totp.verify(&secret, &bad, NOW, None), Err(VerifyError::Mismatch));
    let eight = Code::parse("12345678", Digits::Eight).unwrap();
    assert_eq!(totp.verify(&secret, &eight, NOW, None), Err(VerifyError::WrongLength));
}

#[test]
fn totp_near_the_epoch_and_the_end_of_time() {
    let secret = super::rfc_seed();
    let totp = Totp::default();
    let code = totp.generate(&secret, 0);
    assert_eq!(totp.verify(&secret, &code, 5, None).unwrap().step, 0);
    let late = totp.generate(&secret, u64::MAX);
    assert!(totp.verify(&secret, &late, u64::MAX, None).is_ok());
}

#[test]
fn hotp_look_ahead_returns_the_next_counter() {
    let secret = super::rfc_seed();
    let hotp = Hotp::default();
    assert_eq!(hotp.verify(&secret, &hotp.generate(&secret, 5), 5), Ok(6));
    assert_eq!(hotp.verify(&secret, &hotp.generate(&secret, 15), 5), Ok(16)); // edge: +10
    assert_eq!(
        hotp.verify(&secret, &hotp.generate(&secret, 16), 5),
        Err(VerifyError::Mismatch)
    );
    // A code behind the stored counter (already used or skipped) is refused.
    assert_eq!(
        hotp.verify(&secret, &hotp.generate(&secret, 4), 5),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn hotp_code_cannot_be_used_twice() {
    let secret = super::rfc_seed();
    let hotp = Hotp::default();
    let code = hotp.generate(&secret, 2);
    let counter = hotp.verify(&secret, &code, 0).unwrap();
    assert_eq!(counter, 3);
    assert_eq!(hotp.verify(&secret, &code, counter), Err(VerifyError::Mismatch));
}

#[test]
fn hotp_look_ahead_is_configurable() {
    let secret = super::rfc_seed();
    let strict = Hotp {
        look_ahead: 0,
        ..Hotp::default()
    };
    assert_eq!(
        strict.verify(&secret, &strict.generate(&secret, 1), 0),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(strict.verify(&secret, &strict.generate(&secret, 0), 0), Ok(1));
}

#[test]
fn hotp_resync_needs_two_consecutive_codes_in_the_window() {
    let secret = super::rfc_seed();
    let hotp = Hotp::default();
    let g = |c| hotp.generate(&secret, c);
    // Beyond the look-ahead, one code is not enough...
    assert_eq!(hotp.verify(&secret, &g(50), 0), Err(VerifyError::Mismatch));
    // ...two consecutive ones are.
    assert_eq!(hotp.resync(&secret, &g(50), &g(51), 0), Ok(52));
    assert_eq!(hotp.resync(&secret, &g(100), &g(101), 0), Ok(102)); // edge of the window
    assert_eq!(hotp.resync(&secret, &g(101), &g(102), 0), Err(VerifyError::Mismatch));
    // Not consecutive, or in the wrong order.
    assert_eq!(hotp.resync(&secret, &g(50), &g(52), 0), Err(VerifyError::Mismatch));
    assert_eq!(hotp.resync(&secret, &g(51), &g(50), 0), Err(VerifyError::Mismatch));
    // Behind the stored counter.
    assert_eq!(hotp.resync(&secret, &g(3), &g(4), 10), Err(VerifyError::Mismatch));
}

#[test]
fn hotp_counter_overflow_is_an_error_not_a_panic() {
    let secret = super::rfc_seed();
    let hotp = Hotp::default();
    let last = hotp.generate(&secret, u64::MAX);
    assert_eq!(hotp.verify(&secret, &last, u64::MAX - 3), Err(VerifyError::OutOfRange));
    assert_eq!(
        hotp.verify(&secret, &hotp.generate(&secret, u64::MAX - 1), u64::MAX - 3),
        Ok(u64::MAX)
    );
}

#[test]
fn windows_are_capped() {
    let secret = super::rfc_seed();
    assert_eq!(Totp::default().with_skew(u32::MAX).skew(), vigil_otp::MAX_SKEW);
    let wide = Hotp {
        look_ahead: u64::MAX,
        resync_window: u64::MAX,
        ..Hotp::default()
    };
    let far = wide.generate(&secret, vigil_otp::MAX_HOTP_WINDOW + 1);
    assert_eq!(wide.verify(&secret, &far, 0), Err(VerifyError::Mismatch));
    let edge = wide.generate(&secret, vigil_otp::MAX_HOTP_WINDOW);
    assert_eq!(wide.verify(&secret, &edge, 0), Ok(vigil_otp::MAX_HOTP_WINDOW + 1));
}
