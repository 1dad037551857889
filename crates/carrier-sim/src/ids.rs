//! Twilio-shaped identifiers.

use rand::Rng as _;

/// A message SID: `SM` followed by 32 lowercase hex digits.
pub fn message_sid() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    format!("SM{}", hex::encode(bytes))
}

/// A call SID: `CA` followed by 32 lowercase hex digits.
pub fn call_sid() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    format!("CA{}", hex::encode(bytes))
}

/// A random lowercase-hex string of `bytes` random bytes.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(buf.as_mut_slice());
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    #[test]
    fn message_sid_shape() {
        let sid = super::message_sid();
        assert_eq!(sid.len(), 34);
        assert!(sid.starts_with("SM"));
        assert!(
            sid[2..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_ne!(sid, super::message_sid());
    }
}
