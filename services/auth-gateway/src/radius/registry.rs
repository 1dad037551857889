//! The clients the server answers, as an in-memory snapshot: the registry is
//! asked for every datagram, so it never waits on the database. A task
//! reloads it every few seconds and when the admin API changes a client.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, RwLock},
    time::Duration,
};

use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;
use vigil_core::{AgentId, ProviderId};
use vigil_radius::{Cidr, ClientRegistry, RadiusClient, SharedSecret, StaticClients};

use super::{Mode, client_id_text, secret_aad, store};
use crate::{
    app::Gateway,
    auth::{AgentIdentity, parse_networks},
};

const RELOAD_EVERY: Duration = Duration::from_secs(5);

/// What answering one client's packets needs besides its secret.
#[derive(Debug, Clone)]
pub struct ClientEntry {
    pub id: String,
    pub name: String,
    pub mode: Mode,
    /// Second-factor mode: how long to wait for the user.
    pub timeout: Duration,
    pub agent: AgentIdentity,
}

#[derive(Debug, Default)]
struct Snapshot {
    clients: StaticClients,
    entries: HashMap<String, Arc<ClientEntry>>,
}

/// Swapped whole on reload; readers take a cheap `Arc` clone.
#[derive(Debug, Default)]
pub struct Registry(RwLock<Arc<Snapshot>>);

impl Registry {
    fn current(&self) -> Arc<Snapshot> {
        // A panicking writer leaves a whole snapshot behind; keep serving it.
        self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// The client a validated request came from (by the id the server put on it).
    pub fn entry(&self, id: &str) -> Option<Arc<ClientEntry>> {
        self.current().entries.get(id).cloned()
    }

    /// Reads the enabled clients and swaps them in. On a database error the
    /// previous snapshot stays: a blip must not turn every client away.
    pub async fn reload(&self, gateway: &Gateway) {
        let rows = match gateway.pool.acquire().await {
            Ok(mut conn) => store::serving(&mut conn).await,
            Err(e) => Err(e),
        };
        let rows = match rows {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(%error, "reloading RADIUS clients failed; keeping the previous list");
                return;
            }
        };
        let snapshot = build(gateway, rows);
        let count = snapshot.entries.len();
        let before = {
            let mut guard = self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            std::mem::replace(&mut *guard, Arc::new(snapshot)).entries.len()
        };
        if before != count {
            tracing::info!(clients = count, "RADIUS clients loaded");
        }
    }
}

fn build(gateway: &Gateway, rows: Vec<store::ServingRow>) -> Snapshot {
    let mut snapshot = Snapshot::default();
    for row in rows {
        let id = client_id_text(row.client.id);
        let (Ok(cidr), Some(mode)) = (row.client.source_cidr.parse::<Cidr>(), Mode::parse(&row.client.mode)) else {
            tracing::error!(client = %id, "RADIUS client has an invalid address or mode; skipped");
            continue;
        };
        let secret = match gateway
            .keyring
            .decrypt(&row.client.secret_ciphertext, &secret_aad(row.client.id))
        {
            Ok(secret) => SharedSecret::new(secret.expose_secret()),
            Err(error) => {
                // Usually a key missing from VIGIL_KEYS after a rotation.
                tracing::error!(client = %id, %error, "RADIUS shared secret cannot be decrypted; client skipped");
                continue;
            }
        };
        let entry = ClientEntry {
            id: id.clone(),
            name: row.client.name,
            mode,
            timeout: Duration::from_secs(u64::try_from(row.client.timeout_secs).unwrap_or(60)),
            agent: AgentIdentity {
                agent_id: AgentId::from_uuid(row.client.agent_id),
                provider_id: ProviderId::from_uuid(row.client.provider_id),
                require_user_match: row.require_user_match,
                remember_minutes: u32::try_from(row.remember_minutes).unwrap_or(0),
                trusted_networks: parse_networks(&row.trusted_networks),
                block_user_on_fraud: row.block_user_on_fraud,
                caps: row.caps.to_wire(),
            },
        };
        snapshot.clients = std::mem::take(&mut snapshot.clients).with(cidr, RadiusClient { id: id.clone(), secret });
        snapshot.entries.insert(id, Arc::new(entry));
    }
    snapshot
}

impl ClientRegistry for Registry {
    fn lookup(&self, source: IpAddr) -> Option<RadiusClient> {
        self.current().clients.lookup(source)
    }
}

/// Reloads every few seconds, and at once when the admin API signals a change.
pub async fn keep_fresh(registry: Arc<Registry>, gateway: Arc<Gateway>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(RELOAD_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = gateway.radius_changed.notified() => {}
            _ = tick.tick() => {}
        }
        registry.reload(&gateway).await;
    }
}
