//! Client and message ids.
//!
//! An id is 32 lowercase hex digits: `NNNNNNNN` (node id) `BBBBBBBB` (a random value drawn when the
//! process starts, so ids never repeat across restarts) `CCCCCCCCCCCCCCCC` (a counter). The node id
//! can be read back from any id with [`node_of`], which a cluster uses to route a message to the node
//! that holds the client.

use std::sync::atomic::{AtomicU64, Ordering};

/// Length of every id in characters.
pub const ID_LEN: usize = 32;

/// Generates unique ids for one gateway process.
#[derive(Debug)]
pub struct IdGen {
    /// The node this process is, embedded so a cluster can route by id.
    node: u32,
    /// Drawn at startup: two processes with the same node id still never collide.
    boot: u32,
    /// Monotonic counter; starts at a random point to make ids harder to guess.
    counter: AtomicU64,
}

impl IdGen {
    /// A generator for `node`.
    pub fn new(node: u32) -> Self {
        Self {
            node,
            boot: rand::random(),
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
        format!("{:08x}{:08x}{:016x}", self.node, self.boot, n)
    }
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
    fn two_generators_of_one_node_do_not_collide() {
        let a = IdGen::new(1);
        let b = IdGen::new(1);
        assert_ne!(a.next_id(), b.next_id());
    }
}
