//! AES-256-GCM envelope encryption under a rotating set of key-encryption keys.
//!
//! Ciphertext layout (stored as bytes, e.g. a `BYTEA` column):
//!
//! ```text
//! version (1 byte, 0x01) | id_len (1) | key id (id_len bytes, ASCII) | nonce (12) | ciphertext | tag (16)
//! ```
//!
//! The GCM associated data is a domain label, the header (version, key id) and the
//! caller's [`Aad`], so neither the header nor the row binding can be altered.
//! Nonces are 96 random bits from the injected RNG; with random nonces NIST SP 800-38D
//! allows 2^32 encryptions per key — rotate long before (Vigil encrypts at enrolment
//! only, so this is far away).

use std::fmt;
use std::str::FromStr;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::{CryptoRng, RngCore};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::{Aad, KeyringError, SealError, SecretBytes};

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;
const MAX_KEY_ID_LEN: usize = 32;
/// Separates Vigil's AAD from any other use of the same key.
const DOMAIN: &[u8] = b"vigil-secrets/aead/v1";

/// A key-encryption key: its id and its AES-256-GCM key schedule.
struct Kek {
    id: String,
    cipher: Aes256Gcm,
}

/// The key-encryption keys from configuration. The first is active (used to
/// encrypt); all of them decrypt. `Debug` shows the ids, never the keys.
///
/// Rotation: put a new key first (`VIGIL_KEYS="k3:…,k2:…"`), deploy, re-encrypt rows
/// for which [`Keyring::needs_rotation`] is true with [`Keyring::reencrypt`], then drop
/// the old key from the configuration.
pub struct Keyring {
    keys: Vec<Kek>,
}

/// The parsed header of a ciphertext.
struct Header<'a> {
    /// The header bytes (version, id length, id), authenticated as AAD.
    raw: &'a [u8],
    key_id: &'a str,
    nonce: &'a [u8],
    body: &'a [u8],
}

impl Keyring {
    /// Parses `id:base64key[,id:base64key...]`; the first entry is the active key.
    /// Keys are 32 bytes in standard base64 (e.g. `openssl rand -base64 32`).
    pub fn parse(spec: &str) -> Result<Self, KeyringError> {
        let mut keys: Vec<Kek> = Vec::new();
        for (index, entry) in spec.split(',').map(str::trim).filter(|e| !e.is_empty()).enumerate() {
            let position = index + 1;
            let (id, key) = entry
                .split_once(':')
                .ok_or(KeyringError::MissingSeparator { position })?;
            let id = id.trim();
            if !valid_key_id(id) {
                return Err(KeyringError::InvalidKeyId { position });
            }
            if keys.iter().any(|k| k.id == id) {
                return Err(KeyringError::DuplicateKeyId { id: id.to_owned() });
            }
            let cipher = decode_key(key.trim()).ok_or_else(|| KeyringError::InvalidKey { id: id.to_owned() })?;
            keys.push(Kek {
                id: id.to_owned(),
                cipher,
            });
        }
        if keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        Ok(Self { keys })
    }

    /// [`Keyring::parse`] on a configuration secret.
    pub fn from_secret(spec: &SecretString) -> Result<Self, KeyringError> {
        Self::parse(spec.expose_secret())
    }

    /// A fresh random key as a keyring entry, `id:base64key`, for operators
    /// (`vigil keys new`) and tests.
    pub fn generate_entry<R: CryptoRng + RngCore + ?Sized>(
        rng: &mut R,
        id: &str,
    ) -> Result<SecretString, KeyringError> {
        if !valid_key_id(id) {
            return Err(KeyringError::InvalidKeyId { position: 1 });
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(key.as_mut());
        let encoded = Zeroizing::new(STANDARD.encode(key.as_ref()));
        Ok(SecretString::from(format!("{id}:{}", encoded.as_str())))
    }

    /// The id of the key new ciphertexts are encrypted with.
    pub fn active_key_id(&self) -> &str {
        self.active().id.as_str()
    }

    /// All key ids, active first.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    /// Encrypts `plaintext` under the active key, bound to `aad`.
    pub fn encrypt<R: CryptoRng + RngCore + ?Sized>(
        &self,
        rng: &mut R,
        plaintext: &[u8],
        aad: &Aad,
    ) -> Result<Vec<u8>, SealError> {
        let kek = self.active();
        let id = kek.id.as_bytes();
        let header_len = 2 + id.len();
        let mut out = Vec::with_capacity(header_len + NONCE_LEN + plaintext.len() + TAG_LEN);
        out.push(VERSION);
        // Key ids are at most 32 bytes (checked at parse), so this fits in a byte.
        out.push(u8::try_from(id.len()).map_err(|_| SealError::Encrypt)?);
        out.extend_from_slice(id);
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let (header, rest) = out.split_at_mut(header_len);
        let full_aad = full_aad(header, aad);
        let body = &mut rest[NONCE_LEN..];
        let tag = kek
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &full_aad, body)
            .map_err(|_| SealError::Encrypt)?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Decrypts a ciphertext made by any key of this keyring, checking it belongs to `aad`.
    pub fn decrypt(&self, ciphertext: &[u8], aad: &Aad) -> Result<SecretBytes, SealError> {
        let header = parse(ciphertext)?;
        let kek = self.find(header.key_id)?;
        let (body, tag) = header.body.split_at(header.body.len() - TAG_LEN);
        let mut plaintext = SecretBytes::new(body.to_vec());
        let full_aad = full_aad(header.raw, aad);
        kek.cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(header.nonce),
                &full_aad,
                plaintext.as_mut_slice(),
                Tag::from_slice(tag),
            )
            .map_err(|_| SealError::Decrypt)?;
        Ok(plaintext)
    }

    /// The id of the key a ciphertext was encrypted with (header only; not authenticated
    /// until [`Keyring::decrypt`]).
    pub fn key_id_of(ciphertext: &[u8]) -> Result<&str, SealError> {
        Ok(parse(ciphertext)?.key_id)
    }

    /// True when the ciphertext is under a key other than the active one.
    /// Fails for a malformed ciphertext or an unknown key (it could not be re-encrypted).
    pub fn needs_rotation(&self, ciphertext: &[u8]) -> Result<bool, SealError> {
        let id = parse(ciphertext)?.key_id;
        self.find(id)?;
        Ok(id != self.active_key_id())
    }

    /// Decrypts with whichever key made the ciphertext and encrypts again under the
    /// active key, with the same associated data and a fresh nonce.
    pub fn reencrypt<R: CryptoRng + RngCore + ?Sized>(
        &self,
        rng: &mut R,
        ciphertext: &[u8],
        aad: &Aad,
    ) -> Result<Vec<u8>, SealError> {
        let plaintext = self.decrypt(ciphertext, aad)?;
        self.encrypt(rng, plaintext.expose_secret(), aad)
    }

    fn active(&self) -> &Kek {
        // `parse` refuses an empty keyring, so index 0 exists.
        &self.keys[0]
    }

    fn find(&self, id: &str) -> Result<&Kek, SealError> {
        self.keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| SealError::UnknownKey { id: id.to_owned() })
    }
}

impl FromStr for Keyring {
    type Err = KeyringError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        Self::parse(spec)
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("active", &self.active_key_id())
            .field("keys", &self.key_ids().collect::<Vec<_>>())
            .finish()
    }
}

fn valid_key_id(id: &str) -> bool {
    (1..=MAX_KEY_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn decode_key(text: &str) -> Option<Aes256Gcm> {
    // Decode into a zeroed stack buffer one byte larger than a key, so a longer key is
    // detected (the decoder refuses to overflow) and no key bytes linger on the heap.
    let mut buf = Zeroizing::new([0u8; KEY_LEN + 3]);
    let len = STANDARD.decode_slice(text.as_bytes(), buf.as_mut()).ok()?;
    if len != KEY_LEN {
        return None;
    }
    Aes256Gcm::new_from_slice(&buf[..KEY_LEN]).ok()
}

fn full_aad(header: &[u8], aad: &Aad) -> Vec<u8> {
    let mut full = Vec::with_capacity(DOMAIN.len() + header.len() + aad.as_bytes().len());
    full.extend_from_slice(DOMAIN);
    full.extend_from_slice(header);
    full.extend_from_slice(aad.as_bytes());
    full
}

fn parse(ciphertext: &[u8]) -> Result<Header<'_>, SealError> {
    let (&version, rest) = ciphertext.split_first().ok_or(SealError::Malformed)?;
    if version != VERSION {
        return Err(SealError::UnsupportedVersion(version));
    }
    let (&id_len, rest) = rest.split_first().ok_or(SealError::Malformed)?;
    let id_len = usize::from(id_len);
    if id_len == 0 || id_len > MAX_KEY_ID_LEN || rest.len() < id_len + NONCE_LEN + TAG_LEN {
        return Err(SealError::Malformed);
    }
    let (id, rest) = rest.split_at(id_len);
    let key_id = std::str::from_utf8(id).map_err(|_| SealError::Malformed)?;
    if !valid_key_id(key_id) {
        return Err(SealError::Malformed);
    }
    let (nonce, body) = rest.split_at(NONCE_LEN);
    Ok(Header {
        raw: &ciphertext[..2 + id_len],
        key_id,
        nonce,
        body,
    })
}
