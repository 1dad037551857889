//! The State of an Access-Challenge: the challenge id and a keyed MAC over
//! the client, the user and the challenge, so a State cannot be forged, moved
//! to another RADIUS client or answered for another user. Keyed with the
//! gateway's token pepper, so any replica can check a State another made.

use vigil_core::ChallengeId;
use vigil_secrets::TokenHasher;

const PURPOSE: &str = "radius_state";
/// 128 bits of the HMAC-SHA256, hex: ample against guessing within a challenge's lifetime.
const MAC_HEX_LEN: usize = 32;

fn mac(hasher: &TokenHasher, client_id: &str, username: &str, challenge_id: &str) -> String {
    // Length-prefixed fields: no two (client, user, challenge) triples share an input.
    let mut input = Vec::new();
    for field in [client_id, username, challenge_id] {
        input.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
        input.extend_from_slice(field.as_bytes());
    }
    let mut full = hasher.hash(PURPOSE, &input);
    full.truncate(MAC_HEX_LEN);
    full
}

/// The State for a challenge started for `username` through `client_id`.
pub fn mint(hasher: &TokenHasher, client_id: &str, username: &str, challenge_id: &str) -> Vec<u8> {
    format!("{challenge_id}.{}", mac(hasher, client_id, username, challenge_id)).into_bytes()
}

/// The challenge id a State stands for, if this client minted it for this user.
pub fn open(hasher: &TokenHasher, client_id: &str, username: &str, state: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(state).ok()?;
    let (challenge_id, presented) = text.split_once('.')?;
    ChallengeId::parse(challenge_id).ok()?;
    let expected = mac(hasher, client_id, username, challenge_id);
    vigil_secrets::ct_eq(expected.as_bytes(), presented.as_bytes()).then(|| challenge_id.to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn hasher(pepper: u8) -> TokenHasher {
        TokenHasher::new(&[pepper; 32]).unwrap()
    }

    #[test]
    fn a_state_opens_only_for_its_client_user_and_key() {
        let h = hasher(1);
        let challenge = ChallengeId::new().to_string();
        let state = mint(&h, "rcl_a", "alice", &challenge);
        assert!(state.len() <= 253, "fits one RADIUS attribute");
        assert_eq!(open(&h, "rcl_a", "alice", &state), Some(challenge.clone()));
        assert_eq!(open(&h, "rcl_b", "alice", &state), None);
        assert_eq!(open(&h, "rcl_a", "bob", &state), None);
        assert_eq!(open(&hasher(2), "rcl_a", "alice", &state), None);
    }

    #[test]
    fn forged_or_garbled_states_do_not_open() {
        let h = hasher(1);
        let other = ChallengeId::new().to_string();
        let state = mint(&h, "rcl_a", "alice", &ChallengeId::new().to_string());
        let text = String::from_utf8(state).unwrap();
        let (_, tag) = text.split_once('.').unwrap();
        // Another challenge id with this MAC.
        assert_eq!(open(&h, "rcl_a", "alice", format!("{other}.{tag}").as_bytes()), None);
        assert_eq!(open(&h, "rcl_a", "alice", b""), None);
        assert_eq!(open(&h, "rcl_a", "alice", b"chl_x.y"), None);
        assert_eq!(open(&h, "rcl_a", "alice", &[0xff, 0xfe, b'.']), None);
        assert_eq!(open(&h, "rcl_a", "alice", format!("{other}.").as_bytes()), None);
    }
}
