//! The agents the gateway has lately read, kept in memory so a signed
//! request's agent, key and policy cost no query while they are fresh.
//!
//! Memory is trusted for an agent's policy and its sealed key (keys are never
//! rotated in place). The admin API on this replica forgets what it changes;
//! another replica's memory may lag a policy change (trusted networks,
//! remembered approvals) by up to [`FRESH_FOR`], as the RADIUS client list
//! does. That the agent still exists and is enabled is never taken from
//! memory: the statement that spends the request's nonce asks it, so a
//! disabled or deleted agent is refused at once on every replica.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use uuid::Uuid;

use crate::{auth::AgentIdentity, store::AgentRow};

/// How long an agent read from the database is used before it is read again.
pub const FRESH_FOR: Duration = Duration::from_secs(5);

/// Past this many agents, the stale ones are dropped on the next read, so
/// agents deleted on another replica do not pile up.
const PRUNE_ABOVE: usize = 10_000;

/// An agent as read, with its policy already parsed.
#[derive(Debug)]
pub struct KnownAgent {
    pub row: AgentRow,
    pub identity: AgentIdentity,
    read_at: Instant,
}

#[derive(Debug, Default)]
pub struct KnownAgents(Mutex<HashMap<Uuid, Arc<KnownAgent>>>);

impl KnownAgents {
    fn entries(&self) -> MutexGuard<'_, HashMap<Uuid, Arc<KnownAgent>>> {
        // Entries are replaced whole; a panic elsewhere cannot leave one half-written.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The agent, if it was read less than [`FRESH_FOR`] ago.
    pub fn fresh(&self, id: Uuid) -> Option<Arc<KnownAgent>> {
        self.entries()
            .get(&id)
            .filter(|known| known.read_at.elapsed() < FRESH_FOR)
            .cloned()
    }

    /// Keeps an agent just read from the database.
    pub fn remember(&self, row: AgentRow) -> Arc<KnownAgent> {
        let known = Arc::new(KnownAgent {
            identity: AgentIdentity::from_row(&row),
            row,
            read_at: Instant::now(),
        });
        let mut entries = self.entries();
        if entries.len() >= PRUNE_ABOVE {
            entries.retain(|_, known| known.read_at.elapsed() < FRESH_FOR);
        }
        entries.insert(known.row.id, known.clone());
        known
    }

    /// Forgets one agent: it changed, or the database says it is gone.
    pub fn forget(&self, id: Uuid) {
        self.entries().remove(&id);
    }

    /// Forgets every agent: a provider's policy, which each agent carries, changed.
    pub fn forget_all(&self) {
        self.entries().clear();
    }
}
