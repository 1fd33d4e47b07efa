//! The in-process registry of a single gateway node.
//!
//! Bounded by `limits.*` (see [`LimitsConfig`]): before the bounds, one API caller put one
//! client in 100k groups, a system at 1M groups (1 GB) and an info map at 110k keys (11 MB per
//! `get_info`). Groups and uids live in `BTreeMap`s, which free their nodes as entries go;
//! client tables are `HashMap`s, which keep their capacity, so they are shrunk when they fall
//! far below it (see [`shrink`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::{Info, Joined, Left, Member, Registry, RegistryError, Result};
use crate::config::LimitsConfig;

/// A registry held in this process's memory.
#[derive(Default)]
pub struct LocalRegistry {
    /// One lock per system, so tenants never contend with each other.
    systems: RwLock<HashMap<String, Arc<Mutex<SystemState>>>>,
    limits: LimitsConfig,
}

/// Shrink `map` when it uses under a quarter of a capacity above 64 entries: a table that
/// held 100k clients otherwise keeps their slots (~5 MB) after they left. Amortized: a shrink
/// to `len` happens only after capacity/2 removals.
pub fn shrink<K: Eq + Hash, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 64 && map.len() < map.capacity() / 4 {
        map.shrink_to_fit();
    }
}

/// Bytes of an info map: keys plus values.
fn info_bytes(info: &Info) -> usize {
    info.iter().map(|(k, v)| k.len() + v.len()).sum()
}

#[derive(Default)]
struct SystemState {
    /// `None` means unlimited.
    max_connections: Option<usize>,
    clients: HashMap<String, ClientState>,
    /// Sorted so listings are stable for API users.
    groups: BTreeMap<String, BTreeMap<String, Member>>,
    uids: BTreeMap<String, BTreeSet<String>>,
}

#[derive(Default)]
struct ClientState {
    uid: Option<String>,
    groups: BTreeSet<String>,
    info: Info,
}

impl LocalRegistry {
    /// An empty registry with the default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty registry bounded by `limits`.
    pub fn with_limits(limits: LimitsConfig) -> Self {
        Self {
            systems: RwLock::default(),
            limits,
        }
    }

    fn check_info(&self, info: &Info) -> Result<()> {
        let max = self.limits.max_info_entries;
        if info.len() > max {
            return Err(RegistryError::InfoTooManyEntries {
                len: info.len(),
                max,
            });
        }
        let (len, max) = (info_bytes(info), self.limits.max_info_bytes);
        if len > max {
            return Err(RegistryError::InfoTooLarge { len, max });
        }
        Ok(())
    }

    fn system(&self, system: &str) -> Result<Arc<Mutex<SystemState>>> {
        self.systems
            .read()
            .get(system)
            .cloned()
            .ok_or_else(|| RegistryError::UnknownSystem(system.to_owned()))
    }

    fn with<T>(&self, system: &str, f: impl FnOnce(&mut SystemState) -> Result<T>) -> Result<T> {
        let state = self.system(system)?;
        let mut guard = state.lock();
        f(&mut guard)
    }
}

impl SystemState {
    fn client(&mut self, client: &str) -> Result<&mut ClientState> {
        self.clients
            .get_mut(client)
            .ok_or_else(|| RegistryError::UnknownClient(client.to_owned()))
    }

    /// Bind `uid` to `client`, replacing the uid it had.
    fn bind(&mut self, client: &str, uid: &str) -> Result<()> {
        self.client(client)?;
        self.unbind(client);
        self.client(client)?.uid = Some(uid.to_owned());
        self.uids
            .entry(uid.to_owned())
            .or_default()
            .insert(client.to_owned());
        Ok(())
    }

    fn unbind(&mut self, client: &str) -> Option<String> {
        let uid = self.clients.get_mut(client)?.uid.take()?;
        if let Some(set) = self.uids.get_mut(&uid) {
            set.remove(client);
            if set.is_empty() {
                self.uids.remove(&uid);
            }
        }
        Some(uid)
    }

    fn leave(&mut self, client: &str, group: &str) -> Option<Left> {
        let members = self.groups.get_mut(group)?;
        let member = members.remove(client)?;
        let others = members.keys().cloned().collect();
        if members.is_empty() {
            self.groups.remove(group);
        }
        if let Some(c) = self.clients.get_mut(client) {
            c.groups.remove(group);
        }
        Some(Left {
            group: group.to_owned(),
            member,
            others,
        })
    }
}

#[async_trait::async_trait]
impl Registry for LocalRegistry {
    async fn register_system(&self, system: &str, max_connections: Option<usize>) -> Result<bool> {
        let mut systems = self.systems.write();
        if let Some(existing) = systems.get(system) {
            if max_connections.is_some() {
                existing.lock().max_connections = max_connections;
            }
            return Ok(false);
        }
        if systems.len() >= self.limits.max_systems {
            return Err(RegistryError::TooManySystems {
                max: self.limits.max_systems,
            });
        }
        let state = SystemState {
            max_connections,
            ..SystemState::default()
        };
        systems.insert(system.to_owned(), Arc::new(Mutex::new(state)));
        Ok(true)
    }

    async fn remove_system(&self, system: &str) -> Result<Vec<String>> {
        let state = {
            let mut systems = self.systems.write();
            let state = systems
                .remove(system)
                .ok_or_else(|| RegistryError::UnknownSystem(system.to_owned()))?;
            shrink(&mut systems);
            state
        };
        let mut ids: Vec<String> = state.lock().clients.keys().cloned().collect();
        ids.sort();
        Ok(ids)
    }

    async fn system_exists(&self, system: &str) -> Result<bool> {
        Ok(self.systems.read().contains_key(system))
    }

    async fn systems(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self.systems.read().keys().cloned().collect();
        names.sort();
        Ok(names)
    }

    async fn add_client(&self, system: &str, client: &str, uid: Option<&str>) -> Result<()> {
        self.with(system, |s| {
            if s.max_connections.is_some_and(|max| s.clients.len() >= max) {
                return Err(RegistryError::SystemFull(system.to_owned()));
            }
            s.clients.insert(client.to_owned(), ClientState::default());
            match uid {
                Some(uid) => s.bind(client, uid),
                None => Ok(()),
            }
        })
    }

    async fn remove_client(&self, system: &str, client: &str) -> Result<Vec<Left>> {
        self.with(system, |s| {
            let groups: Vec<String> = s.client(client)?.groups.iter().cloned().collect();
            s.unbind(client);
            let left = groups.iter().filter_map(|g| s.leave(client, g)).collect();
            s.clients.remove(client);
            shrink(&mut s.clients);
            Ok(left)
        })
    }

    async fn client_exists(&self, system: &str, client: &str) -> Result<bool> {
        // An unknown system has no clients: that is an answer, not a failure.
        Ok(self
            .with(system, |s| Ok(s.clients.contains_key(client)))
            .unwrap_or(false))
    }

    async fn clients(&self, system: &str) -> Result<Vec<String>> {
        self.with(system, |s| {
            let mut ids: Vec<String> = s.clients.keys().cloned().collect();
            ids.sort();
            Ok(ids)
        })
    }

    async fn client_count(&self, system: &str) -> Result<usize> {
        self.with(system, |s| Ok(s.clients.len()))
    }

    async fn join_group(
        &self,
        system: &str,
        client: &str,
        group: &str,
        member: Member,
    ) -> Result<Joined> {
        let limits = &self.limits;
        self.with(system, |s| {
            let in_groups = &s.client(client)?.groups;
            let new = !in_groups.contains(group);
            if new && in_groups.len() >= limits.max_groups_per_client {
                return Err(RegistryError::TooManyGroupsForClient {
                    client: client.to_owned(),
                    max: limits.max_groups_per_client,
                });
            }
            if !s.groups.contains_key(group) && s.groups.len() >= limits.max_groups_per_system {
                return Err(RegistryError::TooManyGroups {
                    system: system.to_owned(),
                    max: limits.max_groups_per_system,
                });
            }
            s.client(client)?.groups.insert(group.to_owned());
            let members = s.groups.entry(group.to_owned()).or_default();
            members.insert(client.to_owned(), member);
            let others = members
                .keys()
                .filter(|c| c.as_str() != client)
                .cloned()
                .collect();
            Ok(Joined { new, others })
        })
    }

    async fn leave_group(&self, system: &str, client: &str, group: &str) -> Result<Left> {
        self.with(system, |s| {
            s.client(client)?;
            s.leave(client, group)
                .ok_or_else(|| RegistryError::NotInGroup {
                    client: client.to_owned(),
                    group: group.to_owned(),
                })
        })
    }

    async fn group_clients(&self, system: &str, group: &str) -> Result<Vec<String>> {
        self.with(system, |s| {
            Ok(s.groups
                .get(group)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default())
        })
    }

    async fn groups(&self, system: &str) -> Result<Vec<String>> {
        self.with(system, |s| Ok(s.groups.keys().cloned().collect()))
    }

    async fn client_groups(&self, system: &str, client: &str) -> Result<Vec<String>> {
        self.with(system, |s| {
            Ok(s.client(client)?.groups.iter().cloned().collect())
        })
    }

    async fn bind_uid(&self, system: &str, client: &str, uid: &str) -> Result<()> {
        self.with(system, |s| s.bind(client, uid))
    }

    async fn unbind_uid(&self, system: &str, client: &str) -> Result<Option<String>> {
        self.with(system, |s| {
            s.client(client)?;
            Ok(s.unbind(client))
        })
    }

    async fn uid_of(&self, system: &str, client: &str) -> Result<Option<String>> {
        self.with(system, |s| Ok(s.client(client)?.uid.clone()))
    }

    async fn clients_by_uid(&self, system: &str, uid: &str) -> Result<Vec<String>> {
        self.with(system, |s| {
            Ok(s.uids
                .get(uid)
                .map(|c| c.iter().cloned().collect())
                .unwrap_or_default())
        })
    }

    async fn uids(&self, system: &str) -> Result<Vec<String>> {
        self.with(system, |s| Ok(s.uids.keys().cloned().collect()))
    }

    async fn group_uids(&self, system: &str, group: &str) -> Result<Vec<String>> {
        self.with(system, |s| {
            let Some(members) = s.groups.get(group) else {
                return Ok(Vec::new());
            };
            let uids: BTreeSet<String> = members
                .keys()
                .filter_map(|c| s.clients.get(c).and_then(|c| c.uid.clone()))
                .collect();
            Ok(uids.into_iter().collect())
        })
    }

    async fn info(&self, system: &str, client: &str) -> Result<Info> {
        self.with(system, |s| Ok(s.client(client)?.info.clone()))
    }

    async fn set_info(&self, system: &str, client: &str, info: Info) -> Result<()> {
        self.check_info(&info)?;
        self.with(system, |s| {
            s.client(client)?.info = info;
            Ok(())
        })
    }

    async fn update_info(&self, system: &str, client: &str, info: Info) -> Result<()> {
        // Checked on the incoming map first (cheap refusal of a huge body), then on the merge.
        self.check_info(&info)?;
        self.with(system, |s| {
            let current = &mut s.client(client)?.info;
            let mut merged = current.clone();
            merged.extend(info);
            self.check_info(&merged)?;
            *current = merged;
            Ok(())
        })
    }
}

#[cfg(test)]
#[path = "local_tests.rs"]
mod tests;
