//! Client and message ids.
//!
//! An id is 32 lowercase hex digits: `NNNNNNNN` (node id) `BBBBBBBB` (a random value drawn when the
//! process starts, so ids never repeat across restarts) `CCCCCCCCCCCCCCCC` (a counter). The node id
//! can be read back from any id with [`node_of`], which a cluster uses to route a message to the node
//! that holds the client.
//!
//! The first 16 digits, node and boot, name the *instance* that registered the client
//! ([`instance_of`]): a cluster leases and reaps instances, not node ids, so a process restarted
//! with the same `--node-id`, or one that was reaped while stopped and woke up, never has its new
//! clients removed with the old ones.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Length of every id in characters.
pub const ID_LEN: usize = 32;

/// Generates unique ids for one gateway process.
#[derive(Debug)]
pub struct IdGen {
    /// The node this process is, embedded so a cluster can route by id.
    node: u32,
    /// Drawn at startup: two processes with the same node id still never collide. Drawn again
    /// by [`IdGen::renew`].
    boot: AtomicU32,
    /// Monotonic counter; starts at a random point to make ids harder to guess.
    counter: AtomicU64,
}

impl IdGen {
    /// A generator for `node`.
    pub fn new(node: u32) -> Self {
        Self {
            node,
            boot: AtomicU32::new(rand::random()),
            counter: AtomicU64::new(rand::random::<u32>() as u64),
        }
    }

    /// The node id embedded in every id this generator makes.
    pub fn node(&self) -> u32 {
        self.node
    }

    /// A fresh id.
    pub fn next_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let boot = self.boot.load(Ordering::Relaxed);
        format!("{:08x}{boot:08x}{n:016x}", self.node)
    }

    /// The instance ids are made for now: the first [`INSTANCE_LEN`] digits of each.
    pub fn instance(&self) -> String {
        format!("{:08x}{:08x}", self.node, self.boot.load(Ordering::Relaxed))
    }

    /// Start a new instance: ids from now on carry a new boot value (a node that was reaped
    /// while it was stopped starts over under a name no reaper is working on).
    pub fn renew(&self) {
        let old = self.boot.load(Ordering::Relaxed);
        let mut new = rand::random();
        while new == old {
            new = rand::random();
        }
        self.boot.store(new, Ordering::Relaxed);
    }
}

/// Length of an instance name (node and boot).
pub const INSTANCE_LEN: usize = 16;

/// The instance (node and boot, [`INSTANCE_LEN`] digits) that made `id`, or `None` when `id`
/// is not one of ours.
pub fn instance_of(id: &str) -> Option<&str> {
    node_of(id)?;
    id.get(..INSTANCE_LEN)
}

/// The node id embedded in `id`, or `None` when `id` is not one of ours.
pub fn node_of(id: &str) -> Option<u32> {
    if id.len() != ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(&id[..8], 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_carry_the_node() {
        let g = IdGen::new(0xabc);
        let a = g.next_id();
        let b = g.next_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), ID_LEN);
        assert_eq!(node_of(&a), Some(0xabc));
        assert_eq!(node_of("not-an-id"), None);
    }

    #[test]
    fn a_renewed_generator_is_a_new_instance_of_the_same_node() {
        let g = IdGen::new(7);
        let before = g.next_id();
        assert_eq!(instance_of(&before), Some(g.instance().as_str()));
        g.renew();
        let after = g.next_id();
        assert_ne!(instance_of(&before), instance_of(&after));
        assert_eq!(instance_of(&after), Some(g.instance().as_str()));
        assert_eq!(node_of(&after), Some(7));
        assert_eq!(instance_of("short"), None);
    }

    #[test]
    fn two_generators_of_one_node_do_not_collide() {
        let a = IdGen::new(1);
        let b = IdGen::new(1);
        assert_ne!(a.next_id(), b.next_id());
    }
}
