//! Wrapping event payloads in the `Envelope` and unwrapping them again.

use std::time::SystemTime;

use prost::Message;
use uuid::Uuid;
use vigil_proto::events::Envelope;

use crate::BusError;

/// An event payload: a protobuf message with the subject it is published on.
pub trait Event: Message + Default + Send + Sync {
    /// The subject, `vigil.<domain>.<event>`.
    const SUBJECT: &'static str;
    /// The fully qualified payload type written into `Envelope.type`.
    const TYPE: &'static str;
}

/// Wraps `event` for `provider_id` in a fresh envelope with a UUIDv7 id.
pub fn wrap<E: Event>(provider_id: &str, event: &E, now: SystemTime) -> Envelope {
    Envelope {
        id: Uuid::now_v7().to_string(),
        r#type: E::TYPE.to_owned(),
        provider_id: provider_id.to_owned(),
        time: Some(now.into()),
        payload: event.encode_to_vec(),
    }
}

/// Decodes an envelope from the wire.
pub fn decode_envelope(bytes: &[u8]) -> Result<Envelope, BusError> {
    let envelope = Envelope::decode(bytes).map_err(|e| BusError::Malformed(e.to_string()))?;
    Uuid::parse_str(&envelope.id).map_err(|_| BusError::Malformed("envelope id is not a UUID".into()))?;
    Ok(envelope)
}

/// The envelope's id as a UUID (validated by [`decode_envelope`]).
pub fn envelope_id(envelope: &Envelope) -> Result<Uuid, BusError> {
    Uuid::parse_str(&envelope.id).map_err(|_| BusError::Malformed("envelope id is not a UUID".into()))
}

/// Unwraps the payload, refusing an envelope of another type.
pub fn unwrap<E: Event>(envelope: &Envelope) -> Result<E, BusError> {
    if envelope.r#type != E::TYPE {
        return Err(BusError::WrongType {
            expected: E::TYPE,
            actual: envelope.r#type.clone(),
        });
    }
    E::decode(envelope.payload.as_slice()).map_err(|e| BusError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_proto::events::{ChallengeCreated, ProviderCreated};

    #[test]
    fn wraps_and_unwraps() -> Result<(), BusError> {
        let event = ProviderCreated {
            provider_id: "prv_x".into(),
            name: "Acme".into(),
            usage_model: 2,
        };
        let env = wrap("prv_x", &event, SystemTime::now());
        let bytes = env.encode_to_vec();
        let back = decode_envelope(&bytes)?;
        assert_eq!(back.provider_id, "prv_x");
        assert_eq!(unwrap::<ProviderCreated>(&back)?, event);
        assert!(matches!(
            unwrap::<ChallengeCreated>(&back),
            Err(BusError::WrongType { .. })
        ));
        Ok(())
    }

    #[test]
    fn refuses_garbage() {
        assert!(decode_envelope(b"\xff\xff\xff").is_err());
        let no_id = Envelope::default().encode_to_vec();
        assert!(decode_envelope(&no_id).is_err());
    }
}
