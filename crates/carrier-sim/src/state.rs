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
use crate::control::{
    CallEntry, DeviceBehaviour, DeviceStep, FaultApi, Faults, InboxEntry, PushEntry, Stats, VoiceBehaviour,
};

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
    /// Woken whenever a message lands in an inbox, for inbox reads that wait.
    arrivals: tokio::sync::Notify,
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
    /// Phone number -> how it answers calls (default: answer, press `#`).
    phones: HashMap<String, VoiceBehaviour>,
    /// Call SID -> call, and call SIDs per called number, oldest first.
    calls: HashMap<String, CallEntry>,
    call_log: HashMap<String, Vec<String>>,
    call_order: VecDeque<String>,
    devices: HashMap<String, Device>,
    /// Push registration token -> device id.
    tokens: HashMap<String, String>,
    /// Challenge id -> the number its sign-in screen shows.
    screens: HashMap<String, u32>,
}

/// A simulated device: its key pair, token, behaviour and what it received.
pub(crate) struct Device {
    pub key: ed25519_dalek::SigningKey,
    pub token: String,
    pub behaviour: DeviceBehaviour,
    pub pushes: Vec<PushEntry>,
    /// Deliveries the push service refuses (a `push_error` step), with the
    /// status: their retries fail too.
    pub failing: HashMap<String, u16>,
}

impl Device {
    pub(crate) fn new(key: ed25519_dalek::SigningKey, token: String, behaviour: DeviceBehaviour) -> Self {
        Self {
            key,
            token,
            behaviour,
            pushes: Vec::new(),
            failing: HashMap::new(),
        }
    }

    /// What to do with the next push: the next scripted step, else the standing behaviour.
    pub(crate) fn next_step(&mut self) -> DeviceStep {
        if self.behaviour.script.is_empty() {
            DeviceStep {
                action: self.behaviour.action,
                pick: self.behaviour.pick,
                status: self.behaviour.status,
            }
        } else {
            self.behaviour.script.remove(0)
        }
    }
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
                arrivals: tokio::sync::Notify::new(),
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

    /// Consumes one injected fault aimed at `api`, returning the status to
    /// fail with.
    pub(crate) fn take_fault(&self, api: FaultApi) -> Option<u16> {
        let mut store = self.store();
        if store.faults.fail_next == 0 || !(store.faults.api == FaultApi::Any || store.faults.api == api) {
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
        drop(store);
        self.inner.arrivals.notify_waiters();
    }

    /// The inbox of `number` once its newest message is not `after` (once it
    /// holds any, without `after`), or as it is when `wait` has passed: a
    /// reader waiting for an SMS needs one request, not one per poll.
    pub(crate) async fn inbox_after(&self, number: &str, after: Option<&str>, wait: Duration) -> Vec<InboxEntry> {
        let give_up = tokio::time::Instant::now() + wait;
        loop {
            // Registered before the look, so an arrival in between still wakes it.
            let arrival = self.inner.arrivals.notified();
            tokio::pin!(arrival);
            arrival.as_mut().enable();
            let inbox = self.inbox(number);
            let newest = inbox.last().map(|m| m.sid.as_str());
            if newest.is_some() && newest != after {
                return inbox;
            }
            if tokio::time::timeout_at(give_up, arrival).await.is_err() {
                return inbox;
            }
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

impl SimState {
    pub(crate) fn voice_behaviour(&self, number: &str) -> VoiceBehaviour {
        self.store().phones.get(number).cloned().unwrap_or_default()
    }

    pub(crate) fn set_voice_behaviour(&self, number: &str, behaviour: VoiceBehaviour) {
        self.store().phones.insert(number.to_owned(), behaviour);
    }

    /// Logs a placed call.
    pub(crate) fn place_call(&self, call: CallEntry) {
        let mut store = self.store();
        store.stats.calls_placed += 1;
        let sid = call.sid.clone();
        store.call_log.entry(call.to.clone()).or_default().push(sid.clone());
        store.call_order.push_back(sid.clone());
        store.calls.insert(sid, call);
        while store.call_order.len() > MAX_MESSAGES {
            let Some(oldest) = store.call_order.pop_front() else {
                break;
            };
            if let Some(call) = store.calls.remove(&oldest) {
                if let Some(sids) = store.call_log.get_mut(&call.to) {
                    sids.retain(|s| *s != oldest);
                }
            }
        }
    }

    /// Applies `change` to a call, if it is still known.
    pub(crate) fn update_call(&self, sid: &str, change: impl FnOnce(&mut CallEntry)) {
        if let Some(call) = self.store().calls.get_mut(sid) {
            change(call);
        }
    }

    pub(crate) fn calls_to(&self, number: &str) -> Vec<CallEntry> {
        let store = self.store();
        store
            .call_log
            .get(number)
            .map(|sids| sids.iter().filter_map(|sid| store.calls.get(sid).cloned()).collect())
            .unwrap_or_default()
    }

    pub(crate) fn add_device(&self, device_id: String, device: Device) {
        let mut store = self.store();
        store.tokens.insert(device.token.clone(), device_id.clone());
        store.devices.insert(device_id, device);
    }

    /// Runs `f` on a device, if it exists.
    pub(crate) fn with_device<T>(&self, device_id: &str, f: impl FnOnce(&mut Device) -> T) -> Option<T> {
        self.store().devices.get_mut(device_id).map(f)
    }

    /// The device registered under a push token, if any.
    pub(crate) fn device_for_token(&self, token: &str) -> Option<String> {
        self.store().tokens.get(token).cloned()
    }

    pub(crate) fn count_push(&self) {
        self.store().stats.pushes_accepted += 1;
    }

    pub(crate) fn show_screen(&self, challenge_id: &str, number: u32) {
        self.store().screens.insert(challenge_id.to_owned(), number);
    }

    pub(crate) fn screen(&self, challenge_id: &str) -> Option<u32> {
        self.store().screens.get(challenge_id).copied()
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
