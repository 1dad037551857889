//! Ids as the services mint them, at a time a test picks.

use chrono::{DateTime, Utc};
use uuid::{NoContext, Timestamp, Uuid};

/// A UUIDv7 minted at `at` (the services' ids are v7, minted at the moment
/// their row is written): for rows a test back-dates.
pub fn uuid_v7_at(at: DateTime<Utc>) -> Uuid {
    let secs = u64::try_from(at.timestamp()).unwrap_or(0);
    Uuid::new_v7(Timestamp::from_unix(NoContext, secs, at.timestamp_subsec_nanos()))
}
