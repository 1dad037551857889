//! Signed agent requests. Every AuthGateway call carries:
//!
//! - `x-vigil-agent-id`: the agent (`agt_...`)
//! - `x-vigil-timestamp`: Unix seconds when it was signed
//! - `x-vigil-nonce`: 16 to 64 characters, never reused by the agent
//! - `x-vigil-signature`: `v1=` + hex HMAC-SHA256 under the agent key over
//!   `v1\n{method}\n{timestamp}\n{nonce}\n{hex sha256(body)}`
//!
//! `method` is the gRPC path (`/vigil.v1.AuthGateway/Authenticate`) and `body`
//! the protobuf encoding of the request message. This follows the signed
//! request schemes of established MFA APIs (method, date, nonce and body under
//! an HMAC) rather than mutual TLS, so agents behind TLS-terminating proxies
//! still authenticate end to end. The gateway bounds the clock skew and
//! remembers nonces within it, so a captured request cannot be replayed.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use rand::{Rng, distr::Alphanumeric};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;

pub const AGENT_ID: &str = "x-vigil-agent-id";
pub const TIMESTAMP: &str = "x-vigil-timestamp";
pub const NONCE: &str = "x-vigil-nonce";
pub const SIGNATURE: &str = "x-vigil-signature";

/// How far an agent's clock may be from the gateway's.
pub const MAX_SKEW_SECS: i64 = 300;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("missing or malformed {0} header")]
    Header(&'static str),
    #[error("the request timestamp is more than {MAX_SKEW_SECS} s away from the gateway's clock")]
    Skew,
    #[error("the signature does not match")]
    Mismatch,
}

/// The signature headers as read from a request, before they are checked.
#[derive(Debug, Clone)]
pub struct Presented {
    pub agent_id: String,
    pub timestamp: i64,
    pub nonce: String,
    signature: Vec<u8>,
}

fn header<'a>(metadata: &'a MetadataMap, name: &'static str) -> Result<&'a str, SignatureError> {
    metadata
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or(SignatureError::Header(name))
}

impl Presented {
    pub fn from_metadata(metadata: &MetadataMap) -> Result<Self, SignatureError> {
        let agent_id = header(metadata, AGENT_ID)?.to_owned();
        let timestamp = header(metadata, TIMESTAMP)?
            .parse()
            .map_err(|_| SignatureError::Header(TIMESTAMP))?;
        let nonce = header(metadata, NONCE)?;
        if !(16..=64).contains(&nonce.len())
            || !nonce
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(SignatureError::Header(NONCE));
        }
        let signature = header(metadata, SIGNATURE)?
            .strip_prefix("v1=")
            .and_then(|h| hex::decode(h).ok())
            .filter(|s| s.len() == 32)
            .ok_or(SignatureError::Header(SIGNATURE))?;
        Ok(Self {
            agent_id,
            timestamp,
            nonce: nonce.to_owned(),
            signature,
        })
    }

    /// Checks the clock skew and the signature, in constant time.
    /// The request was signed within [`MAX_SKEW_SECS`] of `now_secs`: checked
    /// without the key, so a stale request can be refused before any lookup.
    pub fn check_clock(&self, now_secs: i64) -> Result<(), SignatureError> {
        if (now_secs - self.timestamp).abs() > MAX_SKEW_SECS {
            return Err(SignatureError::Skew);
        }
        Ok(())
    }

    pub fn verify(&self, key: &[u8], method: &str, body: &[u8], now_secs: i64) -> Result<(), SignatureError> {
        self.check_clock(now_secs)?;
        let expected = mac(key, method, self.timestamp, &self.nonce, body);
        if bool::from(expected.as_slice().ct_eq(&self.signature)) {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

fn mac(key: &[u8], method: &str, timestamp: i64, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    let body_hash = hex::encode(Sha256::digest(body));
    mac.update(format!("v1\n{method}\n{timestamp}\n{nonce}\n{body_hash}").as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The credential an agent received when it registered.
#[derive(Clone)]
pub struct AgentCredential {
    pub agent_id: String,
    pub key: String,
}

impl std::fmt::Debug for AgentCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentCredential")
            .field("agent_id", &self.agent_id)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl AgentCredential {
    /// Wraps `message` in a request signed for `method` now.
    pub fn sign<T: prost::Message>(&self, method: &str, message: T) -> tonic::Request<T> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let nonce: String = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(24)
            .map(char::from)
            .collect();
        self.sign_at(method, message, now, &nonce)
    }

    pub fn sign_at<T: prost::Message>(
        &self,
        method: &str,
        message: T,
        timestamp: i64,
        nonce: &str,
    ) -> tonic::Request<T> {
        let signature = mac(self.key.as_bytes(), method, timestamp, nonce, &message.encode_to_vec());
        let mut request = tonic::Request::new(message);
        let md = request.metadata_mut();
        for (name, value) in [
            (AGENT_ID, self.agent_id.clone()),
            (TIMESTAMP, timestamp.to_string()),
            (NONCE, nonce.to_owned()),
            (SIGNATURE, format!("v1={}", hex::encode(signature))),
        ] {
            if let Ok(value) = value.parse() {
                md.insert(name, value);
            }
        }
        request
    }
}

/// gRPC method paths of the agent API, as signed.
pub mod methods {
    pub const PREAUTH: &str = "/vigil.v1.AuthGateway/Preauth";
    pub const AUTHENTICATE: &str = "/vigil.v1.AuthGateway/Authenticate";
    pub const GET_AUTH_STATUS: &str = "/vigil.v1.AuthGateway/GetAuthStatus";
    pub const VERIFY_PASSCODE: &str = "/vigil.v1.AuthGateway/VerifyPasscode";
    pub const WATCH_AUTH: &str = "/vigil.v1.AuthGateway/WatchAuth";
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Msg {
        #[prost(string, tag = "1")]
        username: String,
    }

    fn credential() -> AgentCredential {
        AgentCredential {
            agent_id: "agt_x".into(),
            key: "vak_secret".into(),
        }
    }

    fn signed(ts: i64, nonce: &str) -> Presented {
        let request = credential().sign_at(methods::PREAUTH, Msg { username: "ann".into() }, ts, nonce);
        Presented::from_metadata(request.metadata()).unwrap_or_else(|e| panic!("{e}"))
    }

    const NONCE_A: &str = "abcdefghijklmnop";

    #[test]
    fn a_signed_request_verifies_once_signed_fields_match() {
        let body = Msg { username: "ann".into() }.encode_to_vec();
        let p = signed(1_000, NONCE_A);
        assert_eq!(p.verify(b"vak_secret", methods::PREAUTH, &body, 1_000), Ok(()));
        assert_eq!(p.verify(b"vak_secret", methods::PREAUTH, &body, 1_300), Ok(()));
        assert_eq!(
            p.verify(b"vak_secret", methods::PREAUTH, &body, 1_301),
            Err(SignatureError::Skew)
        );
        assert_eq!(
            p.verify(b"vak_other", methods::PREAUTH, &body, 1_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            p.verify(b"vak_secret", methods::AUTHENTICATE, &body, 1_000),
            Err(SignatureError::Mismatch)
        );
        let other = Msg { username: "bob".into() }.encode_to_vec();
        assert_eq!(
            p.verify(b"vak_secret", methods::PREAUTH, &other, 1_000),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        let request = credential().sign_at(methods::PREAUTH, Msg::default(), 1, "short");
        assert_eq!(
            Presented::from_metadata(request.metadata()).err(),
            Some(SignatureError::Header(NONCE))
        );
        let mut request = credential().sign_at(methods::PREAUTH, Msg::default(), 1, NONCE_A);
        request
            .metadata_mut()
            .insert(SIGNATURE, "v1=zz".parse().unwrap_or_else(|_| unreachable!()));
        assert_eq!(
            Presented::from_metadata(request.metadata()).err(),
            Some(SignatureError::Header(SIGNATURE))
        );
        let empty = MetadataMap::new();
        assert_eq!(
            Presented::from_metadata(&empty).err(),
            Some(SignatureError::Header(AGENT_ID))
        );
    }
}
