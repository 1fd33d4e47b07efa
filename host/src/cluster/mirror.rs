//! This node's copy of what the registry holds about its own clients, for the day Redis loses
//! it.
//!
//! The registry lives in Redis, which a deployment may run without persistence (the tests do:
//! `--save '' --appendonly no`). When it restarts empty, every node registers its live clients
//! again ([`super::lease`]), and a client is more than its id: its uid, its groups with what it
//! declared on joining (for the offline notice), its info map. The node that holds a client
//! keeps that here.
//!
//! The copy is refreshed by reading Redis back, never by replaying writes: a write about a
//! client may come from any node's API or plugin, and that node tells the holder (a membership
//! packet, or [`Kind::Touch`](super::wire::Kind::Touch)); the holder marks the client dirty and
//! one task reads its state ([`RedisRegistry::snapshot`]) after the write. Writes are rare next to
//! sends (a join, a bind, an info update), and the read is off every caller's path.
//!
//! Memory: one entry per local client, about 150 bytes plus its groups and info.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tracing::debug;

use super::redis_registry::RedisRegistry;
use crate::registry::RegistryError;

/// What the registry holds about one client, as its node last read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Its uid, if bound.
    pub uid: Option<String>,
    /// Its groups, each with the member data it joined with (as stored).
    pub groups: Vec<(String, String)>,
    /// Its info map.
    pub info: Vec<(String, String)>,
}

struct Entry {
    system: String,
    snapshot: Snapshot,
}

/// The local clients' snapshots, and the clients whose snapshot is stale.
#[derive(Default)]
pub struct Mirror {
    entries: Mutex<HashMap<String, Entry>>,
    dirty: Mutex<HashSet<String>>,
    wake: Notify,
}

impl Mirror {
    /// A local client connected, bound to `uid` or not.
    pub fn up(&self, system: &str, client: &str, uid: Option<&str>) {
        let snapshot = Snapshot {
            uid: uid.map(str::to_owned),
            ..Snapshot::default()
        };
        self.entries.lock().insert(
            client.to_owned(),
            Entry {
                system: system.to_owned(),
                snapshot,
            },
        );
    }

    /// A local client went away.
    pub fn down(&self, client: &str) {
        self.entries.lock().remove(client);
        self.dirty.lock().remove(client);
    }

    /// Something about local `client` changed in the registry: read it again.
    pub fn touch(&self, client: &str) {
        if self.entries.lock().contains_key(client) {
            self.dirty.lock().insert(client.to_owned());
            self.wake.notify_one();
        }
    }

    /// Run the refresh now (after an outage, reads that failed are due again).
    pub fn kick(&self) {
        self.wake.notify_one();
    }

    /// Whether `client` is still held here.
    pub fn holds(&self, client: &str) -> bool {
        self.entries.lock().contains_key(client)
    }

    /// Every local client: system, id, snapshot.
    pub fn all(&self) -> Vec<(String, String, Snapshot)> {
        self.entries
            .lock()
            .iter()
            .map(|(c, e)| (e.system.clone(), c.clone(), e.snapshot.clone()))
            .collect()
    }

    /// The systems of the local clients.
    pub fn systems(&self) -> HashSet<String> {
        self.entries
            .lock()
            .values()
            .map(|e| e.system.clone())
            .collect()
    }

    /// Read dirty clients back from `registry`, forever. A read that fails leaves the client
    /// dirty for the next wake-up (the next change, or the resync after an outage).
    pub async fn refresh_loop(self: Arc<Self>, registry: Arc<RedisRegistry>) {
        loop {
            self.wake.notified().await;
            let dirty: Vec<String> = self.dirty.lock().drain().collect();
            for client in dirty {
                let Some(system) = self.entries.lock().get(&client).map(|e| e.system.clone())
                else {
                    continue;
                };
                match registry.snapshot(&system, &client).await {
                    Ok(s) => {
                        if let Some(e) = self.entries.lock().get_mut(&client) {
                            e.snapshot = s;
                        }
                    }
                    Err(RegistryError::UnknownClient(_) | RegistryError::UnknownSystem(_)) => {}
                    Err(e) => {
                        debug!(client, cause = %e, "mirror refresh failed; kept dirty");
                        self.dirty.lock().insert(client);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_held_clients_are_touched_and_listed() {
        let m = Mirror::default();
        m.up("s", "a", Some("u1"));
        m.up("t", "b", None);
        m.touch("a");
        m.touch("stranger");
        assert_eq!(m.dirty.lock().len(), 1);
        m.down("a");
        assert!(!m.holds("a"));
        assert!(m.dirty.lock().is_empty());
        let all = m.all();
        assert_eq!(all, vec![("t".into(), "b".into(), Snapshot::default())]);
        assert_eq!(m.systems(), HashSet::from(["t".to_owned()]));
    }
}
