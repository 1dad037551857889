//! RFC 5080 §2.2.2 duplicate detection. A NAS retransmits an Access-Request
//! (same source, identifier and request authenticator) when our answer is slow
//! or lost; re-running the handler would push a second approval to the user's
//! phone. So: while the first copy is being handled, copies are dropped (the
//! one answer goes to the same address and port); after it, copies get the
//! cached answer for `window`.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Monotonic time, injected so the cache window is testable without sleeping.
pub trait MonotonicClock: Send + Sync + 'static {
    fn now(&self) -> Instant;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl MonotonicClock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// What makes two datagrams the same request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DedupKey {
    pub source: SocketAddr,
    pub identifier: u8,
    pub authenticator: [u8; 16],
}

/// The cache's verdict on an incoming request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// First sighting: handle it, then call `complete` or `abandon`.
    New,
    /// The first copy is still being handled: drop this one.
    InFlight,
    /// Already answered: send these bytes again.
    Cached(Arc<[u8]>),
    /// Every slot holds a request in flight: drop (and count) this one.
    Full,
}

enum Entry {
    InFlight,
    Done { response: Arc<[u8]>, generation: u64 },
}

/// Bounded by `capacity` entries, in flight and answered together; answered
/// ones are evicted oldest first when room is needed, before their window ends.
pub struct DedupCache {
    window: Duration,
    capacity: usize,
    entries: HashMap<DedupKey, Entry>,
    // Answered entries in completion order; stale items are skipped by generation.
    order: VecDeque<(DedupKey, u64, Instant)>,
    next_generation: u64,
}

impl DedupCache {
    pub fn new(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
            next_generation: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn begin(&mut self, key: DedupKey, now: Instant) -> Begin {
        self.purge_expired(now);
        match self.entries.get(&key) {
            Some(Entry::InFlight) => return Begin::InFlight,
            Some(Entry::Done { response, .. }) => return Begin::Cached(Arc::clone(response)),
            None => {}
        }
        while self.entries.len() >= self.capacity {
            if !self.evict_oldest_answered() {
                return Begin::Full;
            }
        }
        self.entries.insert(key, Entry::InFlight);
        Begin::New
    }

    /// Records the answer sent for `key`; copies within the window get it again.
    pub fn complete(&mut self, key: DedupKey, response: Arc<[u8]>, now: Instant) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let expires = now.checked_add(self.window).unwrap_or(now);
        self.entries.insert(key, Entry::Done { response, generation });
        self.order.push_back((key, generation, expires));
    }

    /// Forgets a request that got no answer, so a retransmission is handled afresh.
    pub fn abandon(&mut self, key: DedupKey) {
        if matches!(self.entries.get(&key), Some(Entry::InFlight)) {
            self.entries.remove(&key);
        }
    }

    fn purge_expired(&mut self, now: Instant) {
        while let Some(&(key, generation, expires)) = self.order.front() {
            if expires > now {
                break;
            }
            self.order.pop_front();
            self.remove_if_generation(key, generation);
        }
    }

    fn evict_oldest_answered(&mut self) -> bool {
        while let Some((key, generation, _)) = self.order.pop_front() {
            if self.remove_if_generation(key, generation) {
                return true;
            }
        }
        false
    }

    fn remove_if_generation(&mut self, key: DedupKey, generation: u64) -> bool {
        let current = matches!(self.entries.get(&key), Some(Entry::Done { generation: g, .. }) if *g == generation);
        if current {
            self.entries.remove(&key);
        }
        current
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn key(id: u8) -> DedupKey {
        DedupKey {
            source: "192.0.2.1:40000".parse().unwrap(),
            identifier: id,
            authenticator: [id; 16],
        }
    }

    fn bytes(b: u8) -> Arc<[u8]> {
        Arc::from(vec![b; 20])
    }

    #[test]
    fn in_flight_then_cached_then_expired() {
        let t0 = Instant::now();
        let mut c = DedupCache::new(Duration::from_secs(30), 10);
        assert_eq!(c.begin(key(1), t0), Begin::New);
        assert_eq!(c.begin(key(1), t0 + Duration::from_secs(5)), Begin::InFlight);
        c.complete(key(1), bytes(7), t0 + Duration::from_secs(6));
        assert_eq!(c.begin(key(1), t0 + Duration::from_secs(35)), Begin::Cached(bytes(7)));
        // The window runs from the answer, not from the first sighting.
        assert_eq!(c.begin(key(1), t0 + Duration::from_secs(36)), Begin::New);
    }

    #[test]
    fn same_id_new_authenticator_or_other_port_is_a_new_request() {
        let t0 = Instant::now();
        let mut c = DedupCache::new(Duration::from_secs(30), 10);
        assert_eq!(c.begin(key(1), t0), Begin::New);
        let mut other = key(1);
        other.authenticator = [9; 16];
        assert_eq!(c.begin(other, t0), Begin::New);
        let mut port = key(1);
        port.source = "192.0.2.1:40001".parse().unwrap();
        assert_eq!(c.begin(port, t0), Begin::New);
    }

    #[test]
    fn abandon_lets_a_retransmission_through() {
        let t0 = Instant::now();
        let mut c = DedupCache::new(Duration::from_secs(30), 10);
        assert_eq!(c.begin(key(1), t0), Begin::New);
        c.abandon(key(1));
        assert_eq!(c.begin(key(1), t0), Begin::New);
    }

    #[test]
    fn bounded_evicts_oldest_answer_and_refuses_when_all_in_flight() {
        let t0 = Instant::now();
        let mut c = DedupCache::new(Duration::from_secs(30), 2);
        assert_eq!(c.begin(key(1), t0), Begin::New);
        c.complete(key(1), bytes(1), t0);
        assert_eq!(c.begin(key(2), t0), Begin::New);
        c.complete(key(2), bytes(2), t0);
        assert_eq!(c.begin(key(3), t0), Begin::New);
        assert_eq!(c.len(), 2);
        assert_eq!(c.begin(key(1), t0), Begin::New, "oldest answer was evicted");
        assert_eq!(c.begin(key(4), t0), Begin::Full, "both slots in flight");
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn recompleted_key_is_not_evicted_by_its_stale_order_entry() {
        let t0 = Instant::now();
        let mut c = DedupCache::new(Duration::from_secs(10), 10);
        assert_eq!(c.begin(key(1), t0), Begin::New);
        c.complete(key(1), bytes(1), t0);
        let t1 = t0 + Duration::from_secs(11);
        assert_eq!(c.begin(key(1), t1), Begin::New);
        c.complete(key(1), bytes(2), t1);
        assert_eq!(c.begin(key(1), t1 + Duration::from_secs(5)), Begin::Cached(bytes(2)));
    }
}
