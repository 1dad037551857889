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

use std::{sync::Arc, time::Duration};

use uuid::Uuid;

use crate::{auth::AgentIdentity, recent::Recent, store::AgentRow};

/// How long an agent read from the database is used before it is read again.
pub const FRESH_FOR: Duration = Duration::from_secs(5);

/// An agent as read, with its policy already parsed.
#[derive(Debug)]
pub struct KnownAgent {
    pub row: AgentRow,
    pub identity: AgentIdentity,
}

#[derive(Debug)]
pub struct KnownAgents(Recent<Arc<KnownAgent>>);

impl Default for KnownAgents {
    fn default() -> Self {
        Self(Recent::new(FRESH_FOR))
    }
}

impl KnownAgents {
    /// The agent, if it was read less than [`FRESH_FOR`] ago.
    pub fn fresh(&self, id: Uuid) -> Option<Arc<KnownAgent>> {
        self.0.fresh(id)
    }

    /// Keeps an agent just read from the database.
    pub fn remember(&self, row: AgentRow) -> Arc<KnownAgent> {
        let known = Arc::new(KnownAgent {
            identity: AgentIdentity::from_row(&row),
            row,
        });
        self.0.remember(known.row.id, known.clone());
        known
    }

    /// Forgets one agent: it changed, or the database says it is gone.
    pub fn forget(&self, id: Uuid) {
        self.0.forget(id);
    }

    /// Forgets every agent: a provider's policy, which each agent carries, changed.
    pub fn forget_all(&self) {
        self.0.forget_all();
    }
}
