//! Building and signing Access-Accept / Access-Reject / Access-Challenge.

use crate::attribute::{Attribute, MAX_VALUE_LEN, attr};
use crate::crypto::{find_message_authenticator, message_authenticator, response_authenticator};
use crate::error::EncodeError;
use crate::packet::{Code, HEADER_LEN, Packet};
use crate::request::ReplyContext;

/// A handler's answer. Identifier, Proxy-State, Message-Authenticator and the
/// Response Authenticator are filled in by [`Response::encode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    code: Code,
    attributes: Vec<Attribute>,
}

impl Response {
    pub fn accept() -> Self {
        Self {
            code: Code::AccessAccept,
            attributes: Vec::new(),
        }
    }

    pub fn reject() -> Self {
        Self {
            code: Code::AccessReject,
            attributes: Vec::new(),
        }
    }

    /// An Access-Challenge; the client sends `state` back with the user's answer.
    pub fn challenge(state: impl Into<Vec<u8>>) -> Self {
        Self {
            code: Code::AccessChallenge,
            attributes: vec![Attribute::new(attr::STATE, state)],
        }
    }

    pub fn code(&self) -> Code {
        self.code
    }

    pub fn attributes(&self) -> &[Attribute] {
        &self.attributes
    }

    /// Adds Reply-Message text, split over several attributes when longer than
    /// one holds (RFC 2865 §5.18 says clients concatenate them).
    pub fn with_reply_message(mut self, text: &str) -> Self {
        let mut rest = text;
        while !rest.is_empty() {
            let mut cut = rest.len().min(MAX_VALUE_LEN);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (head, tail) = rest.split_at(cut);
            self.attributes
                .push(Attribute::new(attr::REPLY_MESSAGE, head.as_bytes()));
            rest = tail;
        }
        self
    }

    pub fn with_session_timeout(self, seconds: u32) -> Self {
        self.with_attribute(Attribute::new(attr::SESSION_TIMEOUT, seconds.to_be_bytes()))
    }

    /// Class (RFC 2865 §5.25): opaque, echoed by the NAS in accounting.
    pub fn with_class(self, class: impl Into<Vec<u8>>) -> Self {
        self.with_attribute(Attribute::new(attr::CLASS, class))
    }

    pub fn with_vendor_specific(self, vendor_id: u32, data: &[u8]) -> Self {
        self.with_attribute(Attribute::vendor_specific(vendor_id, data))
    }

    /// Any other attribute. Message-Authenticator and Proxy-State are managed by
    /// [`Response::encode`] and ignored here.
    pub fn with_attribute(mut self, attribute: Attribute) -> Self {
        if attribute.typ != attr::MESSAGE_AUTHENTICATOR && attribute.typ != attr::PROXY_STATE {
            self.attributes.push(attribute);
        }
        self
    }

    /// The datagram answering the request `ctx` describes: Message-Authenticator
    /// first (as the Blast-RADIUS guidance asks, so no attacker-chosen prefix
    /// precedes it), then our attributes, then the request's Proxy-State; the
    /// HMAC is computed over the packet carrying the request authenticator,
    /// then the Response Authenticator replaces it.
    pub fn encode(&self, ctx: &ReplyContext) -> Result<Vec<u8>, EncodeError> {
        let mut attributes = Vec::with_capacity(self.attributes.len() + ctx.proxy_state.len() + 1);
        attributes.push(Attribute::new(attr::MESSAGE_AUTHENTICATOR, [0u8; 16]));
        attributes.extend(self.attributes.iter().cloned());
        attributes.extend(ctx.proxy_state.iter().cloned());
        let packet = Packet {
            code: self.code,
            identifier: ctx.identifier,
            authenticator: ctx.request_authenticator,
            attributes,
        };
        let mut bytes = packet.encode()?;
        let secret = ctx.secret.expose();
        if let Some(at) = find_message_authenticator(&bytes) {
            let ma = message_authenticator(&bytes, secret);
            if let Some(slot) = bytes.get_mut(at..at + 16) {
                slot.copy_from_slice(&ma);
            }
        }
        let ra = response_authenticator(&bytes, secret);
        if let Some(slot) = bytes.get_mut(4..HEADER_LEN) {
            slot.copy_from_slice(&ra);
        }
        Ok(bytes)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::client::SharedSecret;
    use crate::crypto::verify_response;

    fn ctx() -> ReplyContext {
        ReplyContext {
            identifier: 42,
            request_authenticator: [9; 16],
            proxy_state: vec![
                Attribute::new(attr::PROXY_STATE, "p1"),
                Attribute::new(attr::PROXY_STATE, "p2"),
            ],
            secret: SharedSecret::new("s3cret"),
        }
    }

    #[test]
    fn long_reply_message_splits_on_char_boundaries() {
        let text = "é".repeat(200); // 400 bytes, two-byte chars
        let r = Response::reject().with_reply_message(&text);
        let parts: Vec<&Attribute> = r.attributes().iter().collect();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|a| a.value.len() <= MAX_VALUE_LEN));
        let bytes = r.encode(&ctx()).unwrap();
        assert_eq!(Packet::decode(&bytes).unwrap().reply_message().unwrap(), text);
        assert!(Response::accept().with_reply_message("").attributes().is_empty());
    }

    #[test]
    fn encode_signs_orders_and_echoes() {
        let r = Response::challenge(b"st".to_vec())
            .with_reply_message("code?")
            .with_attribute(Attribute::new(attr::MESSAGE_AUTHENTICATOR, [1; 16]))
            .with_attribute(Attribute::new(attr::PROXY_STATE, "forged"));
        let bytes = r.encode(&ctx()).unwrap();
        assert!(verify_response(&bytes, &[9; 16], b"s3cret"));
        assert!(!verify_response(&bytes, &[9; 16], b"other"));
        assert!(!verify_response(&bytes, &[8; 16], b"s3cret"));
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(p.code, Code::AccessChallenge);
        assert_eq!(p.identifier, 42);
        let types: Vec<u8> = p.attributes.iter().map(|a| a.typ).collect();
        assert_eq!(
            types,
            [attr::MESSAGE_AUTHENTICATOR, attr::STATE, attr::REPLY_MESSAGE, 33, 33]
        );
        let states: Vec<&[u8]> = p.attributes_of(attr::PROXY_STATE).collect();
        assert_eq!(states, [&b"p1"[..], &b"p2"[..]]);
    }

    #[test]
    fn oversized_response_is_an_error() {
        let mut r = Response::accept();
        for _ in 0..17 {
            r = r.with_class(vec![0; 253]);
        }
        assert!(matches!(r.encode(&ctx()), Err(EncodeError::PacketTooLong(_))));
    }
}
