//! Shared simulator state: the message log, per-number inboxes, injected
//! faults and counters. Every method takes the lock once and briefly; nothing
//! awaits while holding it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use vigil_twilio::MessageResource;

use crate::config::SimConfig;
use crate::control::{Faults, InboxEntry, Stats};

/// Oldest messages are forgotten past this, so a long-running dev stack does
/// not grow without bound.
const MAX_MESSAGES: usize = 10_000;

/// Timeouts for webhooks the simulator calls (status callbacks, inbound SMS).
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
const WEBHOOK_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Cheap-to-clone handle on the simulator's state.
#[derive(Clone)]
pub struct SimState {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: SimConfig,
    http: reqwest::Client,
    store: Mutex<Store>,
}

#[derive(Default)]
struct Store {
    messages: HashMap<String, Stored>,
    /// Message SIDs, oldest first, for eviction.
    order: VecDeque<String>,
    /// Recipient number -> message SIDs, oldest first.
    inboxes: HashMap<String, Vec<String>>,
    faults: Faults,
    stats: Stats,
}

struct Stored {
    resource: MessageResource,
    segments: u32,
    received_at: DateTime<Utc>,
}

impl SimState {
    /// Validates `cfg` and builds the HTTP client used for webhooks.
    pub fn new(cfg: SimConfig) -> anyhow::Result<Self> {
        if let Some(url) = &cfg.inbound_sms_url {
            url::Url::parse(url).with_context(|| format!("invalid inbound SMS URL {url:?}"))?;
        }
        let http = reqwest::Client::builder()
            .timeout(WEBHOOK_TIMEOUT)
            .connect_timeout(WEBHOOK_CONNECT_TIMEOUT)
            .user_agent(concat!("vigil-carrier-sim/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building webhook HTTP client")?;
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                http,
                store: Mutex::default(),
            }),
        })
    }

    pub fn config(&self) -> &SimConfig {
        &self.inner.cfg
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave the store half-updated
        // in a way that matters to a simulator, so keep serving.
        self.inner.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Consumes one injected fault, returning the status to fail with.
    pub(crate) fn take_fault(&self) -> Option<u16> {
        let mut store = self.store();
        if store.faults.fail_next == 0 {
            return None;
        }
        store.faults.fail_next -= 1;
        Some(store.faults.status)
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        self.store().faults = faults;
    }

    pub(crate) fn record_failure(&self) {
        self.store().stats.requests_failed += 1;
    }

    pub(crate) fn stats(&self) -> Stats {
        self.store().stats
    }

    /// Logs an accepted message and files it in the recipient's inbox.
    pub(crate) fn accept(&self, resource: MessageResource, segments: u32, received_at: DateTime<Utc>) {
        let mut store = self.store();
        store.stats.messages_accepted += 1;
        let sid = resource.sid.clone();
        store.inboxes.entry(resource.to.clone()).or_default().push(sid.clone());
        store.order.push_back(sid.clone());
        store.messages.insert(
            sid,
            Stored {
                resource,
                segments,
                received_at,
            },
        );
        while store.order.len() > MAX_MESSAGES {
            let Some(oldest) = store.order.pop_front() else {
                break;
            };
            store.forget(&oldest);
        }
    }

    /// Moves a message to `status`, returning its updated resource, or `None`
    /// if it has been evicted.
    pub(crate) fn set_status(&self, sid: &str, status: &str) -> Option<MessageResource> {
        let mut store = self.store();
        let stored = store.messages.get_mut(sid)?;
        status.clone_into(&mut stored.resource.status);
        Some(stored.resource.clone())
    }

    pub(crate) fn message(&self, sid: &str) -> Option<MessageResource> {
        self.store().messages.get(sid).map(|m| m.resource.clone())
    }

    pub(crate) fn inbox(&self, number: &str) -> Vec<InboxEntry> {
        let store = self.store();
        let Some(sids) = store.inboxes.get(number) else {
            return Vec::new();
        };
        sids.iter()
            .filter_map(|sid| store.messages.get(sid))
            .map(|m| InboxEntry {
                sid: m.resource.sid.clone(),
                from: m.resource.from.clone(),
                to: m.resource.to.clone(),
                body: m.resource.body.clone(),
                status: m.resource.status.clone(),
                num_segments: m.segments,
                received_at: m.received_at,
            })
            .collect()
    }

    /// Empties a number's inbox. The messages stay fetchable through the
    /// Messages API, as in Twilio's message log.
    pub(crate) fn clear_inbox(&self, number: &str) -> usize {
        self.store().inboxes.remove(number).map_or(0, |sids| sids.len())
    }

    /// Sender of the newest message in a number's inbox.
    pub(crate) fn latest_sender(&self, number: &str) -> Option<String> {
        let store = self.store();
        let sid = store.inboxes.get(number)?.last()?;
        store.messages.get(sid).map(|m| m.resource.from.clone())
    }
}

impl Store {
    fn forget(&mut self, sid: &str) {
        let Some(stored) = self.messages.remove(sid) else {
            return;
        };
        if let Some(sids) = self.inboxes.get_mut(&stored.resource.to) {
            sids.retain(|s| s != sid);
            if sids.is_empty() {
                self.inboxes.remove(&stored.resource.to);
            }
        }
    }
}
