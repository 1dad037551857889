//! Codec errors. Every malformed input maps to one of these; nothing panics.

/// Why bytes are not a well-formed RADIUS packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("packet is {0} bytes, shorter than the 20-byte header")]
    TooShort(usize),
    #[error("length field {0} is outside 20..=4096")]
    BadLength(u16),
    #[error("length field says {declared} bytes but only {received} arrived")]
    Truncated { declared: usize, received: usize },
    #[error("unsupported packet code {0}")]
    UnsupportedCode(u8),
    #[error("attribute at offset {offset} is cut off by the end of the packet")]
    AttributeOverrun { offset: usize },
    #[error("attribute at offset {offset} has length {length}, below its 2-byte header")]
    AttributeTooShort { offset: usize, length: u8 },
    #[error("attribute {attr_type} has an invalid value length {length}")]
    InvalidAttributeLength { attr_type: u8, length: usize },
    #[error("attribute {attr_type} may appear only once")]
    DuplicateAttribute { attr_type: u8 },
}

/// Why a packet cannot be put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("attribute {attr_type} value is {length} bytes, above the 253 a RADIUS attribute holds")]
    AttributeTooLong { attr_type: u8, length: usize },
    #[error("packet would be {0} bytes, above the 4096 RADIUS allows")]
    PacketTooLong(usize),
    #[error("password is {0} bytes, above the 128 User-Password holds")]
    PasswordTooLong(usize),
    #[error("only an Access-Request can be signed as a request")]
    NotARequest,
}
