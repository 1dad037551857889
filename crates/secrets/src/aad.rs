//! Associated data: what row a ciphertext belongs to.

use std::fmt;

/// Associated data binding a ciphertext to its row. Authenticated, not encrypted,
/// never stored with the ciphertext: the caller rebuilds it from the row's columns
/// when decrypting, so a ciphertext copied to another row (another user, another
/// provider, another purpose) fails to decrypt.
///
/// Every part is length-prefixed, so `("ab", "c")` and `("a", "bc")` differ.
///
/// ```
/// use vigil_secrets::Aad;
/// let aad = Aad::new("totp_seed").with("provider", "prv_01J...").with("user", "usr_01J...");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Aad {
    purpose_len: usize,
    bytes: Vec<u8>,
}

impl Aad {
    /// Starts with the purpose (`"totp_seed"`, `"hotp_seed"`, `"device_key"`, ...):
    /// a seed can never be decrypted as another kind of secret.
    pub fn new(purpose: &str) -> Self {
        let mut aad = Self {
            purpose_len: purpose.len(),
            bytes: Vec::with_capacity(64),
        };
        aad.push(purpose.as_bytes());
        aad
    }

    /// Adds a named field (`"provider"`, `"user"`, `"factor"`, ...).
    pub fn with(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.push(name.as_bytes());
        self.push(value.as_ref());
        self
    }

    fn push(&mut self, part: &[u8]) {
        // Parts are ids and names; a u32 length cannot overflow in practice, and
        // saturating keeps the encoding total (lengths only need to be unambiguous).
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        self.bytes.extend_from_slice(&len.to_be_bytes());
        self.bytes.extend_from_slice(part);
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for Aad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let purpose = self.bytes.get(4..4 + self.purpose_len).unwrap_or_default();
        write!(
            f,
            "Aad({:?}, {} bytes)",
            String::from_utf8_lossy(purpose),
            self.bytes.len()
        )
    }
}
