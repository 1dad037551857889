//! Property tests: no input makes the codec or the validator panic, and what
//! the encoder writes the decoder reads back unchanged.

use proptest::prelude::*;
use vigil_radius::{
    Attribute, Code, Packet, SharedSecret, attr, hide_password, sign_request, unhide_password, verify_request,
    verify_response,
};

/// Attributes that satisfy the per-type length rules, any type number.
fn attribute() -> impl Strategy<Value = Attribute> {
    prop_oneof![
        (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..=253)).prop_filter_map("type rules", |(t, v)| {
            let known = [1u8, 2, 3, 4, 5, 6, 18, 24, 25, 26, 27, 30, 31, 32, 33, 80];
            (!known.contains(&t)).then(|| Attribute::new(t, v))
        }),
        proptest::collection::vec(any::<u8>(), 1..=253).prop_map(|v| Attribute::new(attr::STATE, v)),
        any::<u32>().prop_map(|v| Attribute::new(attr::SESSION_TIMEOUT, v.to_be_bytes())),
        (any::<u32>(), proptest::collection::vec(any::<u8>(), 1..=249))
            .prop_map(|(id, d)| Attribute::vendor_specific(id, &d)),
    ]
}

fn code() -> impl Strategy<Value = Code> {
    prop_oneof![
        Just(Code::AccessRequest),
        Just(Code::AccessAccept),
        Just(Code::AccessReject),
        Just(Code::AccessChallenge)
    ]
}

/// Header-shaped bytes with a matching length field, so fuzzing reaches the attribute walker.
fn plausible_datagram() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![Just(1u8), Just(2), Just(3), Just(11), any::<u8>()],
        proptest::collection::vec(any::<u8>(), 16..600),
    )
        .prop_map(|(code, mut body)| {
            let len = (body.len() + 4) as u16;
            let mut out = vec![code, 0];
            out.extend_from_slice(&len.to_be_bytes());
            out.append(&mut body);
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
        let _ = Packet::decode(&bytes);
        let _ = verify_request(&bytes, &SharedSecret::new("s"));
        let _ = verify_response(&bytes, &[0; 16], b"s");
    }

    #[test]
    fn plausible_datagrams_never_panic(bytes in plausible_datagram()) {
        if let Ok(p) = Packet::decode(&bytes) {
            // Whatever decodes re-encodes to the same octets (minus padding).
            let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
            prop_assert_eq!(p.encode().unwrap(), bytes[..len].to_vec());
        }
        let _ = verify_request(&bytes, &SharedSecret::new("s"));
    }

    #[test]
    fn encode_decode_round_trip(code in code(), id in any::<u8>(), auth in any::<[u8; 16]>(),
                                attrs in proptest::collection::vec(attribute(), 0..12)) {
        let p = Packet { code, identifier: id, authenticator: auth, attributes: attrs };
        match p.encode() {
            Ok(bytes) => prop_assert_eq!(Packet::decode(&bytes).unwrap(), p),
            Err(_) => prop_assert!(p.attributes.iter().map(|a| a.value.len() + 2).sum::<usize>() + 20 > 4096),
        }
    }

    #[test]
    fn signed_requests_verify_and_any_bit_flip_fails(id in any::<u8>(), auth in any::<[u8; 16]>(),
                                                     attrs in proptest::collection::vec(attribute(), 0..4),
                                                     flip in any::<prop::sample::Index>()) {
        let mut p = Packet { code: Code::AccessRequest, identifier: id, authenticator: auth, attributes: attrs };
        p.attributes.push(Attribute::new(attr::USER_NAME, "u"));
        let bytes = sign_request(&p, b"secret").unwrap();
        prop_assert!(verify_request(&bytes, &SharedSecret::new("secret")).is_ok());
        prop_assert!(verify_request(&bytes, &SharedSecret::new("secreT")).is_err());
        let mut bad = bytes.clone();
        let i = flip.index(bad.len());
        bad[i] ^= 0x01;
        prop_assert!(verify_request(&bad, &SharedSecret::new("secret")).is_err());
    }

    #[test]
    fn password_hiding_round_trips(pw in proptest::collection::vec(1u8..=255, 0..=128),
                                   secret in proptest::collection::vec(any::<u8>(), 1..64),
                                   auth in any::<[u8; 16]>()) {
        let hidden = hide_password(&pw, &secret, &auth).unwrap();
        prop_assert_eq!(unhide_password(&hidden, &secret, &auth), pw);
    }

    #[test]
    fn unhide_never_panics(hidden in proptest::collection::vec(any::<u8>(), 0..300), auth in any::<[u8; 16]>()) {
        let _ = unhide_password(&hidden, b"s", &auth);
    }
}
