//! Which channels this node listens to: a system's while it holds clients of the system, a
//! group's while it holds members of the group (Centrifugo's model). A publisher never needs a
//! member list: only the nodes with members get a group's packets, and each knows its own.
//!
//! The counts are kept here, under one lock; the SUBSCRIBE and UNSUBSCRIBE they decide go, in
//! the order decided, to the one task that owns the subscribing connection ([`node`]).
//!
//! [`node`]: super::node

use std::collections::{BTreeSet, HashMap};

use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::wire::Channels;

/// A change of subscription, for the subscribing task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sub {
    /// Start listening to a channel.
    Subscribe(String),
    /// Stop listening to a channel.
    Unsubscribe(String),
}

#[derive(Default)]
struct State {
    /// Local clients per system.
    systems: HashMap<String, usize>,
    /// Local members per system and group.
    groups: HashMap<String, HashMap<String, BTreeSet<String>>>,
    /// The groups of each local member, so that a client that goes leaves them all here,
    /// whether or not the registry reported its groups (reaped, or Redis away).
    of_client: HashMap<String, BTreeSet<(String, String)>>,
}

/// This node's clients and group members, as far as channels are concerned.
pub struct Interest {
    channels: Channels,
    state: Mutex<State>,
    subs: mpsc::UnboundedSender<Sub>,
}

impl Interest {
    /// Interest whose subscription changes go to `subs`.
    pub fn new(channels: Channels, subs: mpsc::UnboundedSender<Sub>) -> Self {
        Self {
            channels,
            state: Mutex::default(),
            subs,
        }
    }

    fn send(&self, sub: Sub) {
        // The subscribing task only ends with the process.
        let _ = self.subs.send(sub);
    }

    /// A client of `system` connected here.
    pub fn client_up(&self, system: &str) {
        let mut state = self.state.lock();
        let n = state.systems.entry(system.to_owned()).or_default();
        *n += 1;
        if *n == 1 {
            self.send(Sub::Subscribe(self.channels.system(system)));
        }
    }

    /// Client `client` of `system` here went away: it leaves its groups here. With the
    /// system's last client, the system's channel goes too.
    pub fn client_down(&self, system: &str, client: &str) {
        let memberships = self.state.lock().of_client.remove(client);
        for (system, group) in memberships.into_iter().flatten() {
            self.left(&system, &group, client);
        }
        let mut state = self.state.lock();
        let Some(n) = state.systems.get_mut(system) else {
            return;
        };
        *n = n.saturating_sub(1);
        if *n > 0 {
            return;
        }
        state.systems.remove(system);
        self.send(Sub::Unsubscribe(self.channels.system(system)));
        for group in state.groups.remove(system).unwrap_or_default().into_keys() {
            self.send(Sub::Unsubscribe(self.channels.group(system, &group)));
        }
    }

    /// Local `client` joined `group`.
    pub fn joined(&self, system: &str, group: &str, client: &str) {
        let mut state = self.state.lock();
        let members = state
            .groups
            .entry(system.to_owned())
            .or_default()
            .entry(group.to_owned())
            .or_default();
        if members.insert(client.to_owned()) && members.len() == 1 {
            self.send(Sub::Subscribe(self.channels.group(system, group)));
        }
        state
            .of_client
            .entry(client.to_owned())
            .or_default()
            .insert((system.to_owned(), group.to_owned()));
    }

    /// Local `client` left `group`.
    pub fn left(&self, system: &str, group: &str, client: &str) {
        let mut state = self.state.lock();
        if let Some(of) = state.of_client.get_mut(client) {
            of.remove(&(system.to_owned(), group.to_owned()));
            if of.is_empty() {
                state.of_client.remove(client);
            }
        }
        let Some(groups) = state.groups.get_mut(system) else {
            return;
        };
        let Some(members) = groups.get_mut(group) else {
            return;
        };
        if members.remove(client) && members.is_empty() {
            groups.remove(group);
            if groups.is_empty() {
                state.groups.remove(system);
            }
            self.send(Sub::Unsubscribe(self.channels.group(system, group)));
        }
    }

    /// Ask again for every channel wanted now. After an outage, a SUBSCRIBE that failed while
    /// Redis was away would otherwise be lost; one that succeeded is repeated harmlessly.
    pub fn resubscribe_all(&self) {
        let state = self.state.lock();
        for system in state.systems.keys() {
            self.send(Sub::Subscribe(self.channels.system(system)));
        }
        for (system, groups) in &state.groups {
            for group in groups.keys() {
                self.send(Sub::Subscribe(self.channels.group(system, group)));
            }
        }
    }

    /// The local members of `group`.
    pub fn members(&self, system: &str, group: &str) -> Vec<String> {
        self.state
            .lock()
            .groups
            .get(system)
            .and_then(|g| g.get(group))
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribes_on_first_and_unsubscribes_on_last() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let i = Interest::new(Channels::new("p:"), tx);
        i.client_up("s");
        i.client_up("s");
        i.joined("s", "g", "a");
        i.joined("s", "g", "b");
        i.joined("s", "g", "b");
        assert_eq!(i.members("s", "g"), ["a", "b"]);
        i.left("s", "g", "a");
        i.left("s", "g", "b");
        i.client_down("s", "a");
        i.joined("s", "h", "c");
        i.client_down("s", "b");
        let mut got = Vec::new();
        while let Ok(s) = rx.try_recv() {
            got.push(s);
        }
        use Sub::*;
        assert_eq!(
            got,
            [
                Subscribe("p:1:s:sys".into()),
                Subscribe("p:1:s:g:g".into()),
                Unsubscribe("p:1:s:g:g".into()),
                Subscribe("p:1:s:g:h".into()),
                Unsubscribe("p:1:s:sys".into()),
                Unsubscribe("p:1:s:g:h".into()),
            ]
        );
        assert!(i.members("s", "h").is_empty());
    }

    #[test]
    fn a_client_that_goes_leaves_its_groups_even_unreported() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let i = Interest::new(Channels::new("p:"), tx);
        i.client_up("s");
        i.client_up("s");
        i.joined("s", "g", "a");
        i.joined("s", "g", "b");
        // `a` goes without any Left (reaped elsewhere, or Redis away): it leaves "g" here.
        i.client_down("s", "a");
        assert_eq!(i.members("s", "g"), ["b"]);
        i.client_down("s", "b");
        assert!(i.members("s", "g").is_empty());
        let mut got = Vec::new();
        while let Ok(s) = rx.try_recv() {
            got.push(s);
        }
        assert!(
            got.contains(&Sub::Unsubscribe("p:1:s:g:g".into())),
            "{got:?}"
        );
        assert!(i.state.lock().of_client.is_empty());
    }
}
