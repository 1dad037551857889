//! RADIUS's MD5 constructions: User-Password hiding (RFC 2865 §5.2), the
//! Response Authenticator (§3) and Message-Authenticator (RFC 3579 §3.2).

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

use crate::attribute::attr;
use crate::error::EncodeError;
use crate::packet::{Code, HEADER_LEN, Packet, declared_len};

type HmacMd5 = Hmac<Md5>;

/// Longest User-Password plaintext (RFC 2865 §5.2).
pub const MAX_PASSWORD_LEN: usize = 128;

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn hmac_md5(key: &[u8], data: &[u8]) -> [u8; 16] {
    // HMAC takes keys of any length (RFC 2104 hashes long ones), so the
    // constructor's error case cannot happen.
    let mut mac = match HmacMd5::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Hides a password for User-Password: pad to 16 with NULs, then XOR each
/// block with MD5(secret + previous ciphertext block), starting from the
/// request authenticator.
pub fn hide_password(password: &[u8], secret: &[u8], request_authenticator: &[u8; 16]) -> Result<Vec<u8>, EncodeError> {
    if password.len() > MAX_PASSWORD_LEN {
        return Err(EncodeError::PasswordTooLong(password.len()));
    }
    let padded_len = password.len().div_ceil(16).max(1) * 16;
    let mut out = password.to_vec();
    out.resize(padded_len, 0);
    let mut prev: [u8; 16] = *request_authenticator;
    for block in out.chunks_mut(16) {
        let b = md5(&[secret, &prev]);
        for (c, k) in block.iter_mut().zip(b) {
            *c ^= k;
        }
        prev.copy_from_slice(block);
    }
    Ok(out)
}

/// Reverses [`hide_password`]; trailing NUL padding is removed. A value that
/// is not whole 16-octet blocks only loses its incomplete tail.
pub fn unhide_password(hidden: &[u8], secret: &[u8], request_authenticator: &[u8; 16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hidden.len());
    let mut prev: &[u8] = request_authenticator;
    for block in hidden.chunks_exact(16) {
        let b = md5(&[secret, prev]);
        out.extend(block.iter().zip(b).map(|(c, k)| c ^ k));
        prev = block;
    }
    while out.last() == Some(&0) {
        out.pop();
    }
    out
}

/// HMAC-MD5 over a whole packet whose Message-Authenticator value is zeroed.
pub fn message_authenticator(packet_with_zeroed_ma: &[u8], secret: &[u8]) -> [u8; 16] {
    hmac_md5(secret, packet_with_zeroed_ma)
}

/// MD5(Code + ID + Length + RequestAuth + Attributes + Secret), for a response
/// whose authenticator field still holds the request authenticator.
pub fn response_authenticator(response_with_request_auth: &[u8], secret: &[u8]) -> [u8; 16] {
    md5(&[response_with_request_auth, secret])
}

/// Byte offset of the Message-Authenticator value in an encoded packet.
/// Walks the raw attributes defensively: callers may pass unchecked bytes.
pub(crate) fn find_message_authenticator(packet: &[u8]) -> Option<usize> {
    let end = declared_len(packet)?.min(packet.len());
    let mut off = HEADER_LEN;
    while off + 2 <= end {
        let typ = *packet.get(off)?;
        let len = usize::from(*packet.get(off + 1)?);
        if len < 2 || off + len > end {
            return None;
        }
        if typ == attr::MESSAGE_AUTHENTICATOR && len == 18 {
            return Some(off + 2);
        }
        off += len;
    }
    None
}

/// Recomputes the Message-Authenticator of `packet` (authenticator field as
/// given) and compares it in constant time with the one it carries.
pub(crate) fn check_message_authenticator(packet: &[u8], secret: &[u8]) -> Option<bool> {
    let at = find_message_authenticator(packet)?;
    let end = declared_len(packet)?;
    let mut copy = packet.get(..end)?.to_vec();
    let received: [u8; 16] = copy.get(at..at + 16)?.try_into().ok()?;
    copy.get_mut(at..at + 16)?.fill(0);
    let expected = message_authenticator(&copy, secret);
    Some(bool::from(expected.ct_eq(&received)))
}

/// Encodes an Access-Request with a valid Message-Authenticator (added as the
/// first attribute when absent), as a NAS would send it. Used by tests and
/// tools; the server never sends requests.
pub fn sign_request(packet: &Packet, secret: &[u8]) -> Result<Vec<u8>, EncodeError> {
    if packet.code != Code::AccessRequest {
        return Err(EncodeError::NotARequest);
    }
    let mut p = packet.clone();
    match p.attributes.iter_mut().find(|a| a.typ == attr::MESSAGE_AUTHENTICATOR) {
        Some(a) => a.value = vec![0; 16],
        None => p
            .attributes
            .insert(0, crate::Attribute::new(attr::MESSAGE_AUTHENTICATOR, vec![0; 16])),
    }
    let mut bytes = p.encode()?;
    if let Some(at) = find_message_authenticator(&bytes) {
        let ma = message_authenticator(&bytes, secret);
        if let Some(slot) = bytes.get_mut(at..at + 16) {
            slot.copy_from_slice(&ma);
        }
    }
    Ok(bytes)
}

/// Checks a response as a NAS would: Response Authenticator and, when present,
/// Message-Authenticator, both against the request authenticator.
pub fn verify_response(response: &[u8], request_authenticator: &[u8; 16], secret: &[u8]) -> bool {
    let Some(end) = declared_len(response) else {
        return false;
    };
    let Some(bytes) = response.get(..end) else { return false };
    let Some(received) = bytes.get(4..HEADER_LEN) else {
        return false;
    };
    let mut copy = bytes.to_vec();
    copy[4..HEADER_LEN].copy_from_slice(request_authenticator);
    let expected = response_authenticator(&copy, secret);
    if !bool::from(expected.ct_eq(received)) {
        return false;
    }
    match find_message_authenticator(&copy) {
        Some(_) => check_message_authenticator(&copy, secret).unwrap_or(false),
        None => true,
    }
}
