//! Turning a datagram into a validated Access-Request, or a counted reason to
//! drop it. RADIUS never answers a packet it cannot authenticate: a reply would
//! tell an attacker something, so every failure here is a silent drop.

use std::fmt;
use std::net::SocketAddr;

use crate::attribute::{Attribute, attr};
use crate::client::{ClientRegistry, RadiusClient, SharedSecret};
use crate::crypto::{check_message_authenticator, unhide_password};
use crate::error::DecodeError;
use crate::packet::{Code, Packet};

/// Why a datagram was dropped. [`ValidationError::kind`] gives the counter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("no RADIUS client is registered for {0}")]
    UnknownClient(std::net::IpAddr),
    #[error("malformed packet: {0}")]
    Malformed(#[from] DecodeError),
    #[error("code {0:?} is not a request")]
    NotARequest(Code),
    #[error("Access-Request without Message-Authenticator")]
    MissingMessageAuthenticator,
    #[error("Message-Authenticator does not match (wrong shared secret or tampering)")]
    BadMessageAuthenticator,
}

/// The counter a drop goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropKind {
    UnknownClient,
    Malformed,
    MissingMessageAuthenticator,
    BadMessageAuthenticator,
}

impl ValidationError {
    pub fn kind(&self) -> DropKind {
        match self {
            Self::UnknownClient(_) => DropKind::UnknownClient,
            Self::Malformed(_) | Self::NotARequest(_) => DropKind::Malformed,
            Self::MissingMessageAuthenticator => DropKind::MissingMessageAuthenticator,
            Self::BadMessageAuthenticator => DropKind::BadMessageAuthenticator,
        }
    }
}

/// Decodes an Access-Request and checks its Message-Authenticator against
/// `secret`. The Message-Authenticator is required (Blast-RADIUS defence,
/// CVE-2024-3596), whatever the request carries.
pub fn verify_request(buf: &[u8], secret: &SharedSecret) -> Result<Packet, ValidationError> {
    let packet = Packet::decode(buf)?;
    if packet.code != Code::AccessRequest {
        return Err(ValidationError::NotARequest(packet.code));
    }
    match check_message_authenticator(buf, secret.expose()) {
        None => Err(ValidationError::MissingMessageAuthenticator),
        Some(false) => Err(ValidationError::BadMessageAuthenticator),
        Some(true) => Ok(packet),
    }
}

/// Everything the server does to a datagram before a handler sees it: find
/// the client by source address, decode, require and verify Message-Authenticator.
pub fn validate_request(
    buf: &[u8],
    source: SocketAddr,
    registry: &dyn ClientRegistry,
) -> Result<Request, ValidationError> {
    let client = registry
        .lookup(source.ip())
        .ok_or(ValidationError::UnknownClient(source.ip()))?;
    let packet = verify_request(buf, &client.secret)?;
    Ok(Request { client, source, packet })
}

/// A User-Password in the clear. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Vec<u8>);

impl Password {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The password as text, when it is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A validated Access-Request from a known client: what a handler receives.
#[derive(Debug, Clone)]
pub struct Request {
    client: RadiusClient,
    source: SocketAddr,
    packet: Packet,
}

impl Request {
    pub fn client(&self) -> &RadiusClient {
        &self.client
    }

    pub fn source(&self) -> SocketAddr {
        self.source
    }

    pub fn packet(&self) -> &Packet {
        &self.packet
    }

    pub fn identifier(&self) -> u8 {
        self.packet.identifier
    }

    pub fn user_name(&self) -> Option<&str> {
        self.packet.user_name()
    }

    /// User-Password revealed with the client's secret; `None` when absent
    /// (for example a CHAP request or a challenge answer that carries only State).
    pub fn password(&self) -> Option<Password> {
        let hidden = self.packet.attribute(attr::USER_PASSWORD)?;
        Some(Password(unhide_password(
            hidden,
            self.client.secret.expose(),
            &self.packet.authenticator,
        )))
    }

    /// The State of an earlier Access-Challenge this request answers.
    pub fn state(&self) -> Option<&[u8]> {
        self.packet.state()
    }

    pub fn nas_ip_address(&self) -> Option<std::net::Ipv4Addr> {
        self.packet.nas_ip_address()
    }

    pub fn nas_identifier(&self) -> Option<&str> {
        self.packet.nas_identifier()
    }

    pub fn calling_station_id(&self) -> Option<&str> {
        self.packet.calling_station_id()
    }

    pub fn called_station_id(&self) -> Option<&str> {
        self.packet.called_station_id()
    }

    /// What a response to this request must echo and be signed with; kept by
    /// the server while the handler owns the request.
    pub fn reply_context(&self) -> ReplyContext {
        ReplyContext {
            identifier: self.packet.identifier,
            request_authenticator: self.packet.authenticator,
            proxy_state: self
                .packet
                .attributes
                .iter()
                .filter(|a| a.typ == attr::PROXY_STATE)
                .cloned()
                .collect(),
            secret: self.client.secret.clone(),
        }
    }
}

/// The parts of a request its response depends on.
#[derive(Debug, Clone)]
pub struct ReplyContext {
    pub identifier: u8,
    pub request_authenticator: [u8; 16],
    /// Copied into the response unmodified and in order (RFC 2865 §5.33).
    pub proxy_state: Vec<Attribute>,
    pub secret: SharedSecret,
}
