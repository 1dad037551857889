//! Values read from the database lately, kept in memory for a short while so
//! a hot path does not read them again: the agents of signed requests, the
//! providers' directories. Entries older than their freshness are read again
//! by the caller; the admin API forgets what it changes.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use uuid::Uuid;

/// Past this many entries, the stale ones are dropped on the next insert, so
/// ids that are never asked for again (deleted on another replica) do not
/// pile up.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug)]
pub struct Recent<V> {
    fresh_for: Duration,
    entries: Mutex<HashMap<Uuid, (Instant, V)>>,
}

impl<V: Clone> Recent<V> {
    pub fn new(fresh_for: Duration) -> Self {
        Self {
            fresh_for,
            entries: Mutex::default(),
        }
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<Uuid, (Instant, V)>> {
        // Entries are replaced whole; a panic elsewhere cannot leave one half-written.
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The value, if it was remembered less than the freshness ago.
    pub fn fresh(&self, id: Uuid) -> Option<V> {
        self.entries()
            .get(&id)
            .filter(|(read_at, _)| read_at.elapsed() < self.fresh_for)
            .map(|(_, value)| value.clone())
    }

    /// The value however old, to be compared with what was just read.
    pub fn any_age(&self, id: Uuid) -> Option<V> {
        self.entries().get(&id).map(|(_, value)| value.clone())
    }

    pub fn remember(&self, id: Uuid, value: V) {
        let mut entries = self.entries();
        if entries.len() >= PRUNE_ABOVE {
            entries.retain(|_, (read_at, _)| read_at.elapsed() < self.fresh_for);
        }
        entries.insert(id, (Instant::now(), value));
    }

    pub fn forget(&self, id: Uuid) {
        self.entries().remove(&id);
    }

    pub fn forget_all(&self) {
        self.entries().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fresh_values_are_served_as_fresh() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let long = Recent::new(Duration::from_secs(60));
        long.remember(a, 1);
        assert_eq!(long.fresh(a), Some(1));
        assert_eq!(long.fresh(b), None);
        long.forget(a);
        assert_eq!((long.fresh(a), long.any_age(a)), (None, None));

        let stale = Recent::new(Duration::ZERO);
        stale.remember(a, 2);
        assert_eq!(stale.fresh(a), None, "past its freshness: read again");
        assert_eq!(stale.any_age(a), Some(2), "still there to compare with");
        stale.forget_all();
        assert_eq!(stale.any_age(a), None);
    }
}
