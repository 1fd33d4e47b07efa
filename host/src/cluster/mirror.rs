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
//! Memory: one entry per local client. A client with no uid, group or info (most of them) costs
//! its id and a 24-byte slot: the system name is shared and the snapshot boxed only when there
//! is something in it. Before, every slot held an empty snapshot and a copy of the system
//! name (~250 bytes per client at 19k, counting the table's spare slots).

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
    system: Arc<str>,
    /// `None`: nothing but the id (no uid, group or info).
    snapshot: Option<Box<Snapshot>>,
}

impl Snapshot {
    /// Boxed, or `None` when empty.
    fn boxed(self) -> Option<Box<Snapshot>> {
        (self != Snapshot::default()).then(|| Box::new(self))
    }
}

/// The clients and the names of their systems, each held once while it has clients here.
#[derive(Default)]
struct Table {
    entries: HashMap<String, Entry>,
    systems: HashSet<Arc<str>>,
}

impl Table {
    fn system(&mut self, name: &str) -> Arc<str> {
        if let Some(s) = self.systems.get(name) {
            return s.clone();
        }
        let s: Arc<str> = Arc::from(name);
        self.systems.insert(s.clone());
        s
    }

    /// The name of a system whose last client here just went is let go.
    fn release(&mut self, system: Arc<str>) {
        // Held by the set and by `system`: no entry uses it any more.
        if Arc::strong_count(&system) == 2 {
            self.systems.remove(&*system);
        }
    }
}

/// The local clients' snapshots, and the clients whose snapshot is stale.
#[derive(Default)]
pub struct Mirror {
    entries: Mutex<Table>,
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
        let mut table = self.entries.lock();
        let system = table.system(system);
        table.entries.insert(
            client.to_owned(),
            Entry {
                system,
                snapshot: snapshot.boxed(),
            },
        );
    }

    /// A local client went away.
    pub fn down(&self, client: &str) {
        let mut table = self.entries.lock();
        if let Some(gone) = table.entries.remove(client) {
            table.release(gone.system);
        }
        // A table that held many clients gives their slots back.
        crate::registry::shrink(&mut table.entries);
        drop(table);
        self.dirty.lock().remove(client);
    }

    /// Something about local `client` changed in the registry: read it again.
    pub fn touch(&self, client: &str) {
        if self.entries.lock().entries.contains_key(client) {
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
        self.entries.lock().entries.contains_key(client)
    }

    /// Every local client: system, id, snapshot.
    pub fn all(&self) -> Vec<(String, String, Snapshot)> {
        self.entries
            .lock()
            .entries
            .iter()
            .map(|(c, e)| {
                let snapshot = e.snapshot.as_deref().cloned().unwrap_or_default();
                (e.system.to_string(), c.clone(), snapshot)
            })
            .collect()
    }

    /// The systems of the local clients.
    pub fn systems(&self) -> HashSet<String> {
        self.entries
            .lock()
            .entries
            .values()
            .map(|e| e.system.to_string())
            .collect()
    }

    /// Read dirty clients back from `registry`, forever. A read that fails leaves the client
    /// dirty for the next wake-up (the next change, or the resync after an outage).
    pub async fn refresh_loop(self: Arc<Self>, registry: Arc<RedisRegistry>) {
        loop {
            self.wake.notified().await;
            let dirty: Vec<String> = self.dirty.lock().drain().collect();
            for client in dirty {
                let system = self
                    .entries
                    .lock()
                    .entries
                    .get(&client)
                    .map(|e| e.system.clone());
                let Some(system) = system else {
                    continue;
                };
                match registry.snapshot(&system, &client).await {
                    Ok(s) => {
                        if let Some(e) = self.entries.lock().entries.get_mut(&client) {
                            e.snapshot = s.boxed();
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
        // The uid of "c" is kept, boxed; "b" has nothing to box.
        m.up("s", "c", Some("u2"));
        let held = m.entries.lock();
        assert_eq!(
            held.entries["c"]
                .snapshot
                .as_deref()
                .and_then(|s| s.uid.as_deref()),
            Some("u2")
        );
        assert!(held.entries["b"].snapshot.is_none());
        assert_eq!(
            held.systems.len(),
            2,
            "one name per system: {:?}",
            held.systems
        );
    }

    /// A table that held many clients gives their slots back when they leave.
    #[test]
    fn the_table_shrinks_after_a_crowd_left() {
        let m = Mirror::default();
        for i in 0..10_000 {
            m.up("s", &format!("c{i}"), None);
        }
        let full = m.entries.lock().entries.capacity();
        for i in 0..9_990 {
            m.down(&format!("c{i}"));
        }
        let after = m.entries.lock().entries.capacity();
        assert!(after * 8 < full, "capacity {full} → {after}");
        assert_eq!(m.all().len(), 10);
        // The last client of a system takes its name with it.
        m.up("gone", "x", None);
        assert_eq!(m.entries.lock().systems.len(), 2);
        m.down("x");
        assert_eq!(m.entries.lock().systems.len(), 1);
    }
}
