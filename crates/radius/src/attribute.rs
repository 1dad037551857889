//! Attributes: raw type/value pairs, so unknown and vendor attributes pass
//! through untouched, plus the value rules for the types Vigil reads.

use std::fmt;

use crate::error::DecodeError;

/// Attribute type numbers (IANA RADIUS Types registry).
pub mod attr {
    pub const USER_NAME: u8 = 1;
    pub const USER_PASSWORD: u8 = 2;
    pub const CHAP_PASSWORD: u8 = 3;
    pub const NAS_IP_ADDRESS: u8 = 4;
    pub const NAS_PORT: u8 = 5;
    pub const SERVICE_TYPE: u8 = 6;
    pub const REPLY_MESSAGE: u8 = 18;
    pub const STATE: u8 = 24;
    pub const CLASS: u8 = 25;
    pub const VENDOR_SPECIFIC: u8 = 26;
    pub const SESSION_TIMEOUT: u8 = 27;
    pub const CALLED_STATION_ID: u8 = 30;
    pub const CALLING_STATION_ID: u8 = 31;
    pub const NAS_IDENTIFIER: u8 = 32;
    pub const PROXY_STATE: u8 = 33;
    pub const EAP_MESSAGE: u8 = 79;
    pub const MESSAGE_AUTHENTICATOR: u8 = 80;
}

/// Largest value one attribute holds (its length octet counts the 2-byte header).
pub const MAX_VALUE_LEN: usize = 253;

/// One attribute as it is on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Attribute {
    pub typ: u8,
    pub value: Vec<u8>,
}

impl Attribute {
    pub fn new(typ: u8, value: impl Into<Vec<u8>>) -> Self {
        Self {
            typ,
            value: value.into(),
        }
    }

    /// A Vendor-Specific attribute (RFC 2865 §5.26): vendor id then opaque data.
    pub fn vendor_specific(vendor_id: u32, data: &[u8]) -> Self {
        let mut value = Vec::with_capacity(4 + data.len());
        value.extend_from_slice(&vendor_id.to_be_bytes());
        value.extend_from_slice(data);
        Self::new(attr::VENDOR_SPECIFIC, value)
    }
}

impl fmt::Debug for Attribute {
    // Hidden passwords and authenticators are not for logs, even obfuscated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.typ {
            attr::USER_PASSWORD | attr::CHAP_PASSWORD => {
                write!(f, "Attribute({}, <{} bytes redacted>)", self.typ, self.value.len())
            }
            _ => write!(f, "Attribute({}, {:02x?})", self.typ, self.value),
        }
    }
}

/// A Vendor-Specific attribute split into vendor id and data, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VendorSpecific<'a> {
    pub vendor_id: u32,
    pub data: &'a [u8],
}

impl<'a> VendorSpecific<'a> {
    pub(crate) fn parse(value: &'a [u8]) -> Option<Self> {
        let (id, data) = value.split_first_chunk::<4>()?;
        Some(Self {
            vendor_id: u32::from_be_bytes(*id),
            data,
        })
    }
}

/// Checks the value length rules of the attribute types Vigil interprets, so
/// accessors never meet a value of the wrong size. Unknown types pass as-is.
pub(crate) fn check_value(typ: u8, value: &[u8]) -> Result<(), DecodeError> {
    let len = value.len();
    let ok = match typ {
        // RFC 2865 §5.2: 16..=128 octets, a multiple of 16.
        attr::USER_PASSWORD => (16..=128).contains(&len) && len % 16 == 0,
        attr::CHAP_PASSWORD => len == 17,
        attr::NAS_IP_ADDRESS | attr::NAS_PORT | attr::SERVICE_TYPE | attr::SESSION_TIMEOUT => len == 4,
        attr::MESSAGE_AUTHENTICATOR => len == 16,
        // Vendor id plus at least one octet of data (RFC 2865 §5.26: Length >= 7).
        attr::VENDOR_SPECIFIC => len >= 5,
        // Text and string attributes with a defined meaning are never empty (Length >= 3).
        attr::USER_NAME
        | attr::REPLY_MESSAGE
        | attr::STATE
        | attr::CLASS
        | attr::CALLED_STATION_ID
        | attr::CALLING_STATION_ID
        | attr::NAS_IDENTIFIER
        | attr::PROXY_STATE => len >= 1,
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(DecodeError::InvalidAttributeLength {
            attr_type: typ,
            length: len,
        })
    }
}
