//! The JetStream streams, one per domain, declared here and nowhere else.
//! Every service calls [`ensure_streams`] at start-up; declaring is idempotent.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::BusError;

pub struct StreamSpec {
    pub name: &'static str,
    pub subjects: &'static [&'static str],
    /// How long events stay for late or recovering consumers.
    pub max_age: Duration,
}

pub(crate) const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Window in which JetStream drops a second publish with the same
/// `Nats-Msg-Id`; it covers an outbox relay retrying after a crash.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);

pub const STREAMS: &[StreamSpec] = &[
    StreamSpec {
        name: "VIGIL_PROVIDER",
        subjects: &["vigil.provider.>"],
        max_age: Duration::from_secs(30 * 24 * 60 * 60),
    },
    StreamSpec {
        name: "VIGIL_USER",
        subjects: &["vigil.user.>"],
        max_age: Duration::from_secs(30 * 24 * 60 * 60),
    },
    StreamSpec {
        name: "VIGIL_CHALLENGE",
        subjects: &["vigil.challenge.>"],
        max_age: DAY,
    },
    // Delivery requests carry one-time codes: keep them no longer than needed.
    StreamSpec {
        name: "VIGIL_DELIVERY",
        subjects: &["vigil.delivery.>"],
        max_age: Duration::from_secs(60 * 60),
    },
    StreamSpec {
        name: "VIGIL_USAGE",
        subjects: &["vigil.usage.>"],
        max_age: Duration::from_secs(35 * 24 * 60 * 60),
    },
    StreamSpec {
        name: "VIGIL_FRAUD",
        subjects: &["vigil.fraud.>"],
        max_age: Duration::from_secs(30 * 24 * 60 * 60),
    },
];

/// Name of the stream that captures `subject`.
pub fn stream_for(subject: &str) -> Option<&'static str> {
    STREAMS
        .iter()
        .find(|s| {
            s.subjects
                .iter()
                .any(|p| p.strip_suffix('>').is_some_and(|prefix| subject.starts_with(prefix)))
        })
        .map(|s| s.name)
}

/// Creates the streams that do not exist yet.
pub async fn ensure_streams(js: &jetstream::Context, replicas: usize) -> Result<(), BusError> {
    for spec in STREAMS {
        js.get_or_create_stream(stream::Config {
            name: spec.name.to_owned(),
            subjects: spec.subjects.iter().map(|s| (*s).to_owned()).collect(),
            max_age: spec.max_age,
            duplicate_window: DUPLICATE_WINDOW,
            storage: stream::StorageType::File,
            num_replicas: replicas.max(1),
            ..Default::default()
        })
        .await
        .map_err(|e| BusError::JetStream(format!("stream {}: {e}", spec.name)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_subject_has_a_stream_and_rpc_subjects_have_none() {
        use crate::subjects::*;
        for s in [
            PROVIDER_CREATED,
            PROVIDER_UPDATED,
            USER_CREATED,
            USER_STATUS_CHANGED,
            USER_DELETED,
            CHALLENGE_CREATED,
            CHALLENGE_COMPLETED,
            CHALLENGE_DELIVERED,
            DELIVERY_REQUESTED,
            DELIVERY_STATUS,
            DELIVERY_ANSWERED,
            USAGE_AUTHENTICATION,
            USAGE_TELEPHONY,
            FRAUD_REPORTED,
        ] {
            assert!(stream_for(s).is_some(), "{s}");
        }
        for s in [
            RPC_CHALLENGE_PREAUTH,
            RPC_CHALLENGE_START,
            RPC_CHALLENGE_VERIFY,
            RPC_CHALLENGE_STATUS,
            RPC_CHALLENGE_CREATE_USER,
        ] {
            assert_eq!(stream_for(s), None, "{s}");
        }
    }
}
