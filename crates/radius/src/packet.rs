//! The packet: header and attribute list, decoded strictly and re-encoded
//! byte for byte (RFC 2865 §3 and §5).

use std::net::Ipv4Addr;

use crate::attribute::{Attribute, MAX_VALUE_LEN, VendorSpecific, attr, check_value};
use crate::error::{DecodeError, EncodeError};

/// Code, identifier, length and authenticator.
pub const HEADER_LEN: usize = 20;
/// RFC 2865 §3: the largest packet.
pub const MAX_PACKET_LEN: usize = 4096;

/// The packet codes Vigil speaks. Accounting and Status-Server are not served
/// on the authentication port, so they are decode errors here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    AccessRequest,
    AccessAccept,
    AccessReject,
    AccessChallenge,
}

impl Code {
    pub fn from_u8(code: u8) -> Result<Self, DecodeError> {
        match code {
            1 => Ok(Self::AccessRequest),
            2 => Ok(Self::AccessAccept),
            3 => Ok(Self::AccessReject),
            11 => Ok(Self::AccessChallenge),
            other => Err(DecodeError::UnsupportedCode(other)),
        }
    }

    pub fn as_u8(self) -> u8 {
        match self {
            Self::AccessRequest => 1,
            Self::AccessAccept => 2,
            Self::AccessReject => 3,
            Self::AccessChallenge => 11,
        }
    }
}

/// A decoded packet. The authenticator is kept as received: what it means
/// (random request authenticator or response authenticator) depends on the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub code: Code,
    pub identifier: u8,
    pub authenticator: [u8; 16],
    pub attributes: Vec<Attribute>,
}

/// The length field of a buffer that [`Packet::decode`] accepted.
pub(crate) fn declared_len(buf: &[u8]) -> Option<usize> {
    let len = buf.get(2..4)?;
    Some(usize::from(u16::from_be_bytes([len[0], len[1]])))
}

impl Packet {
    pub fn new(code: Code, identifier: u8, authenticator: [u8; 16]) -> Self {
        Self {
            code,
            identifier,
            authenticator,
            attributes: Vec::new(),
        }
    }

    /// Parses a datagram. Octets past the length field are padding and ignored
    /// (RFC 2865 §3); everything else must add up exactly.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let Some((header, _)) = buf.split_first_chunk::<HEADER_LEN>() else {
            return Err(DecodeError::TooShort(buf.len()));
        };
        let length = u16::from_be_bytes([header[2], header[3]]);
        let len = usize::from(length);
        if !(HEADER_LEN..=MAX_PACKET_LEN).contains(&len) {
            return Err(DecodeError::BadLength(length));
        }
        let Some(body) = buf.get(HEADER_LEN..len) else {
            return Err(DecodeError::Truncated {
                declared: len,
                received: buf.len(),
            });
        };
        let code = Code::from_u8(header[0])?;
        let mut authenticator = [0u8; 16];
        authenticator.copy_from_slice(&header[4..HEADER_LEN]);

        let mut attributes = Vec::new();
        let mut rest = body;
        let mut offset = HEADER_LEN;
        let mut seen_message_authenticator = false;
        while !rest.is_empty() {
            let &[typ, alen, ..] = rest else {
                return Err(DecodeError::AttributeOverrun { offset });
            };
            if alen < 2 {
                return Err(DecodeError::AttributeTooShort { offset, length: alen });
            }
            let Some(value) = rest.get(2..usize::from(alen)) else {
                return Err(DecodeError::AttributeOverrun { offset });
            };
            check_value(typ, value)?;
            // RFC 3579 §3.2: at most one; two would make the HMAC ambiguous.
            if typ == attr::MESSAGE_AUTHENTICATOR {
                if seen_message_authenticator {
                    return Err(DecodeError::DuplicateAttribute { attr_type: typ });
                }
                seen_message_authenticator = true;
            }
            attributes.push(Attribute::new(typ, value));
            rest = rest.get(usize::from(alen)..).unwrap_or_default();
            offset += usize::from(alen);
        }
        Ok(Self {
            code,
            identifier: header[1],
            authenticator,
            attributes,
        })
    }

    /// Serialises the packet as it stands (authenticator verbatim).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut len = HEADER_LEN;
        for a in &self.attributes {
            if a.value.len() > MAX_VALUE_LEN {
                return Err(EncodeError::AttributeTooLong {
                    attr_type: a.typ,
                    length: a.value.len(),
                });
            }
            len += 2 + a.value.len();
        }
        if len > MAX_PACKET_LEN {
            return Err(EncodeError::PacketTooLong(len));
        }
        let mut out = Vec::with_capacity(len);
        out.push(self.code.as_u8());
        out.push(self.identifier);
        // len <= 4096 was checked above, so it fits.
        out.extend_from_slice(
            &u16::try_from(len)
                .map_err(|_| EncodeError::PacketTooLong(len))?
                .to_be_bytes(),
        );
        out.extend_from_slice(&self.authenticator);
        for a in &self.attributes {
            out.push(a.typ);
            out.push(
                u8::try_from(a.value.len() + 2).map_err(|_| EncodeError::AttributeTooLong {
                    attr_type: a.typ,
                    length: a.value.len(),
                })?,
            );
            out.extend_from_slice(&a.value);
        }
        Ok(out)
    }

    /// The first value of an attribute type.
    pub fn attribute(&self, typ: u8) -> Option<&[u8]> {
        self.attributes
            .iter()
            .find(|a| a.typ == typ)
            .map(|a| a.value.as_slice())
    }

    /// Every value of an attribute type, in packet order.
    pub fn attributes_of(&self, typ: u8) -> impl Iterator<Item = &[u8]> {
        self.attributes
            .iter()
            .filter(move |a| a.typ == typ)
            .map(|a| a.value.as_slice())
    }

    /// A text attribute; `None` when absent or not UTF-8 (RFC 2865 text is UTF-8).
    pub fn text(&self, typ: u8) -> Option<&str> {
        self.attribute(typ).and_then(|v| std::str::from_utf8(v).ok())
    }

    fn integer(&self, typ: u8) -> Option<u32> {
        let v: [u8; 4] = self.attribute(typ)?.try_into().ok()?;
        Some(u32::from_be_bytes(v))
    }

    pub fn user_name(&self) -> Option<&str> {
        self.text(attr::USER_NAME)
    }

    pub fn nas_identifier(&self) -> Option<&str> {
        self.text(attr::NAS_IDENTIFIER)
    }

    pub fn calling_station_id(&self) -> Option<&str> {
        self.text(attr::CALLING_STATION_ID)
    }

    pub fn called_station_id(&self) -> Option<&str> {
        self.text(attr::CALLED_STATION_ID)
    }

    pub fn nas_ip_address(&self) -> Option<Ipv4Addr> {
        self.integer(attr::NAS_IP_ADDRESS).map(Ipv4Addr::from)
    }

    pub fn session_timeout(&self) -> Option<u32> {
        self.integer(attr::SESSION_TIMEOUT)
    }

    pub fn state(&self) -> Option<&[u8]> {
        self.attribute(attr::STATE)
    }

    /// All Reply-Message attributes joined, as RFC 2865 §5.18 says to display them.
    pub fn reply_message(&self) -> Option<String> {
        let parts: Vec<&[u8]> = self.attributes_of(attr::REPLY_MESSAGE).collect();
        if parts.is_empty() {
            return None;
        }
        Some(String::from_utf8_lossy(&parts.concat()).into_owned())
    }

    pub fn vendor_specific(&self) -> impl Iterator<Item = VendorSpecific<'_>> {
        self.attributes_of(attr::VENDOR_SPECIFIC)
            .filter_map(VendorSpecific::parse)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::crypto::{hide_password, response_authenticator, unhide_password};

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const SECRET: &[u8] = b"xyzzy5461";

    // RFC 2865 §7.1: PAP Access-Request from NAS 192.168.1.16 for user nemo.
    fn rfc_7_1_request() -> Vec<u8> {
        hex("01 00 00 38 0f 40 3f 94 73 97 80 57 bd 83 d5 cb 98 f4 22 7a
             01 06 6e 65 6d 6f 02 12 0d be 70 8d 93 d4 13 ce 31 96 e4 3f
             78 2a 0a ee 04 06 c0 a8 01 10 05 06 00 00 00 03")
    }

    // RFC 2865 §7.1: the Access-Accept answering it.
    fn rfc_7_1_accept() -> Vec<u8> {
        hex("02 00 00 26 86 fe 22 0e 76 24 ba 2a 10 05 f6 bf 9b 55 e0 b2
             06 06 00 00 00 01 0f 06 00 00 00 00 0e 06 c0 a8 01 03")
    }

    #[test]
    fn rfc2865_7_1_request_decodes_and_reencodes() {
        let raw = rfc_7_1_request();
        let p = Packet::decode(&raw).unwrap();
        assert_eq!(p.code, Code::AccessRequest);
        assert_eq!(p.identifier, 0);
        assert_eq!(p.user_name(), Some("nemo"));
        assert_eq!(p.nas_ip_address(), Some(Ipv4Addr::new(192, 168, 1, 16)));
        assert_eq!(p.integer(attr::NAS_PORT), Some(3));
        let hidden = p.attribute(attr::USER_PASSWORD).unwrap();
        assert_eq!(unhide_password(hidden, SECRET, &p.authenticator), b"arctangent");
        assert_eq!(hide_password(b"arctangent", SECRET, &p.authenticator).unwrap(), hidden);
        assert_eq!(p.encode().unwrap(), raw);
    }

    #[test]
    fn rfc2865_7_1_response_authenticator() {
        let request = Packet::decode(&rfc_7_1_request()).unwrap();
        let accept = rfc_7_1_accept();
        let mut with_request_auth = accept.clone();
        with_request_auth[4..20].copy_from_slice(&request.authenticator);
        assert_eq!(response_authenticator(&with_request_auth, SECRET), accept[4..20]);
        assert!(crate::crypto::verify_response(&accept, &request.authenticator, SECRET));
        let p = Packet::decode(&accept).unwrap();
        assert_eq!(p.code, Code::AccessAccept);
        assert_eq!(p.integer(attr::SERVICE_TYPE), Some(1));
    }

    #[test]
    fn rfc2865_7_2_chap_request_round_trips() {
        // RFC 2865 §7.2: CHAP Access-Request for flopsy, framed PPP.
        let raw = hex("01 01 00 47 2a ee 86 f0 8d 0d 55 96 9c a5 97 8e 0d 33 67 a2
                       01 08 66 6c 6f 70 73 79 03 13 16 e9 75 57 c3 16 18 58 95 f2
                       93 ff 63 44 07 72 75 04 06 c0 a8 01 10 05 06 00 00 00 14
                       06 06 00 00 00 02 07 06 00 00 00 01");
        let p = Packet::decode(&raw).unwrap();
        assert_eq!(p.identifier, 1);
        assert_eq!(p.user_name(), Some("flopsy"));
        assert_eq!(p.attribute(attr::CHAP_PASSWORD).unwrap().len(), 17);
        assert_eq!(p.encode().unwrap(), raw);
    }

    #[test]
    fn padding_past_length_is_ignored() {
        let mut raw = rfc_7_1_request();
        raw.extend_from_slice(&[0xAA; 7]);
        assert_eq!(Packet::decode(&raw).unwrap().encode().unwrap(), rfc_7_1_request());
    }

    #[test]
    fn length_and_attribute_errors() {
        let good = rfc_7_1_request();
        assert_eq!(Packet::decode(&good[..19]), Err(DecodeError::TooShort(19)));
        let mut bad = good.clone();
        bad[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(Packet::decode(&bad), Err(DecodeError::BadLength(19)));
        bad[2..4].copy_from_slice(&4097u16.to_be_bytes());
        assert_eq!(Packet::decode(&bad), Err(DecodeError::BadLength(4097)));
        assert_eq!(
            Packet::decode(&good[..40]),
            Err(DecodeError::Truncated {
                declared: 56,
                received: 40
            })
        );
        let mut bad = good.clone();
        bad[0] = 4;
        assert_eq!(Packet::decode(&bad), Err(DecodeError::UnsupportedCode(4)));
        let mut bad = good.clone();
        bad[21] = 1; // User-Name length 1
        assert_eq!(
            Packet::decode(&bad),
            Err(DecodeError::AttributeTooShort { offset: 20, length: 1 })
        );
        let mut bad = good.clone();
        bad[21] = 60; // User-Name runs past the end
        assert_eq!(Packet::decode(&bad), Err(DecodeError::AttributeOverrun { offset: 20 }));
        let mut bad = good.clone();
        bad[45] = 5; // NAS-IP-Address of 3 octets: NAS-IP then a stray octet
        assert!(matches!(
            Packet::decode(&bad),
            Err(DecodeError::InvalidAttributeLength { attr_type: 4, .. })
        ));
        // A lone type octet where an attribute header should be.
        let mut short = good.clone();
        short.push(1);
        short[2..4].copy_from_slice(&57u16.to_be_bytes());
        assert_eq!(
            Packet::decode(&short),
            Err(DecodeError::AttributeOverrun { offset: 56 })
        );
    }

    #[test]
    fn duplicate_message_authenticator_is_refused() {
        let mut p = Packet::new(Code::AccessRequest, 1, [0; 16]);
        p.attributes.push(Attribute::new(attr::MESSAGE_AUTHENTICATOR, [0; 16]));
        p.attributes.push(Attribute::new(attr::MESSAGE_AUTHENTICATOR, [0; 16]));
        let raw = p.encode().unwrap();
        assert_eq!(
            Packet::decode(&raw),
            Err(DecodeError::DuplicateAttribute { attr_type: 80 })
        );
    }

    #[test]
    fn encode_limits() {
        let mut p = Packet::new(Code::AccessAccept, 1, [0; 16]);
        p.attributes.push(Attribute::new(attr::CLASS, vec![1; 253]));
        assert!(p.encode().is_ok());
        p.attributes.push(Attribute::new(attr::CLASS, vec![1; 254]));
        assert_eq!(
            p.encode(),
            Err(EncodeError::AttributeTooLong {
                attr_type: 25,
                length: 254
            })
        );
        let mut p = Packet::new(Code::AccessAccept, 1, [0; 16]);
        p.attributes = vec![Attribute::new(attr::CLASS, vec![1; 253]); 17];
        assert_eq!(p.encode(), Err(EncodeError::PacketTooLong(20 + 17 * 255)));
    }

    #[test]
    fn vendor_specific_passes_through() {
        let mut p = Packet::new(Code::AccessRequest, 9, [3; 16]);
        p.attributes.push(Attribute::vendor_specific(311, &[1, 4, 0xde, 0xad]));
        p.attributes.push(Attribute::new(200, Vec::new())); // unknown, empty: kept as-is
        let raw = p.encode().unwrap();
        let back = Packet::decode(&raw).unwrap();
        assert_eq!(back, p);
        let vsa: Vec<_> = back.vendor_specific().collect();
        assert_eq!(vsa.len(), 1);
        assert_eq!(vsa[0].vendor_id, 311);
        assert_eq!(vsa[0].data, &[1, 4, 0xde, 0xad]);
    }

    #[test]
    fn password_hiding_round_trips_all_lengths() {
        let auth = [0x5a; 16];
        for len in [0usize, 1, 15, 16, 17, 31, 32, 100, 128] {
            let pw: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let hidden = hide_password(&pw, b"secret", &auth).unwrap();
            assert_eq!(hidden.len(), len.div_ceil(16).max(1) * 16);
            assert_eq!(unhide_password(&hidden, b"secret", &auth), pw);
            assert_ne!(unhide_password(&hidden, b"other", &auth), pw);
        }
        assert_eq!(
            hide_password(&[b'x'; 129], b"s", &auth),
            Err(EncodeError::PasswordTooLong(129))
        );
    }
}
