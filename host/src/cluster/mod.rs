//! Cluster seams: how a message or a close reaches clients held by *other* nodes.
//!
//! Delivery has two halves. The local half is the gateway's own connection tables
//! (`gateway/send.rs`: `connections`, `by_system`, `push_prepared`), and it stays exactly as it
//! is. The remote half is a [`Broker`] (sockudo's adapter, Centrifugo's engine): it carries a
//! frame, serialized once, to the nodes that hold the other recipients. A gateway without a
//! broker is a single node and runs today's code path unchanged: no allocation and no await per
//! recipient, and no broker call at all.
//!
//! The gateway calls a broker once per *operation* (a send to a client, a group, a uid, a
//! system; a close), never per recipient, so the local fan-out loop knows nothing about it.
//! Broker methods do not wait: a send is published and the caller goes on (a plugin must not
//! hold its thread for a Redis round trip); a broker that cannot publish says
//! [`RegistryError::Unavailable`].

mod broker;
mod interest;
pub mod kv;
mod lease;
mod mirror;
mod node;
mod redis_registry;
mod scripts;
pub mod timers;
pub mod wire;

use tokio_tungstenite::tungstenite::Message;

use crate::domain::close::{CloseCode, CloseReason};
use crate::registry::RegistryError;

pub use broker::RedisBroker;
pub use kv::RedisKv;
pub use node::{Cluster, ClusterError};
pub use redis_registry::RedisRegistry;
pub use timers::RedisTimers;

/// A change in what this node holds, which decides the channels it listens to (a group's
/// channel only while it has local members of the group, a system's while it has clients of
/// it). The gateway reports each one; a broker for a single node ignores them.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    /// A client of `system` connected to this node.
    ClientUp {
        /// Its system.
        system: &'a str,
        /// The client.
        client: &'a str,
        /// The uid it connected with.
        uid: Option<&'a str>,
    },
    /// A client of `system` on this node went away (reported before it leaves the registry).
    ClientDown {
        /// Its system.
        system: &'a str,
        /// The client.
        client: &'a str,
    },
    /// `client`'s uid or info changed in the registry (its node keeps a copy, for re-registering
    /// it if Redis loses its data).
    Touched {
        /// Its system.
        system: &'a str,
        /// The client.
        client: &'a str,
    },
    /// `client` (of this node or another) joined `group`.
    Joined {
        /// Its system.
        system: &'a str,
        /// The group.
        group: &'a str,
        /// The client.
        client: &'a str,
    },
    /// `client` (of this node or another) left `group`.
    Left {
        /// Its system.
        system: &'a str,
        /// The group.
        group: &'a str,
        /// The client.
        client: &'a str,
    },
}

/// What `/healthz` shows of the cluster.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterHealth {
    /// This node's id.
    pub node: u32,
    /// `up` or `down`: whether the last Redis command or ping succeeded.
    pub redis: &'static str,
    /// Packets received from other nodes.
    pub messages_in: u64,
    /// Packets published to other nodes.
    pub messages_out: u64,
    /// Publishes that failed (Redis down or too slow).
    pub publish_failures: u64,
    /// Nodes listed in the cluster, this one included (live or not yet reaped).
    pub peers: i64,
    /// Clients of dead nodes this node removed from the registry.
    pub reaped_clients: u64,
}

/// How packets from other nodes reach this node's connections: implemented by the gateway,
/// called by the cluster's receiving task (one at a time, in the order they were published).
#[async_trait::async_trait]
pub trait LocalDelivery: Send + Sync + 'static {
    /// Queue `msg` to those of `clients` of `system` held here, except `exclude`; how many.
    fn to_local_clients(
        &self,
        system: &str,
        clients: &[String],
        exclude: &[String],
        msg: &Message,
    ) -> usize;
    /// Queue `msg` to every client of `system` held here, except `exclude`; how many.
    async fn to_local_system(&self, system: &str, exclude: &[String], msg: Message) -> usize;
    /// Close `client` of `system` if it is held here, after what is queued to it.
    fn close_local_client(&self, system: &str, client: &str, code: u16, reason: &str);
    /// `client` of a dead node was removed from the registry by this node (see
    /// [`lease`](self)): tell its groups' members (1002) and this node's plugin (`on-close`).
    fn reaped(&self, system: &str, client: &str, left: Vec<crate::registry::Left>);
    /// This node was reaped while it was away: start a new instance (new ids), then close every
    /// client it holds with `code`. Their `on-close` and notices were given by the reaper.
    fn reaped_while_away(&self, code: u16, reason: &str);
    /// `client` left while Redis was unreachable and is now out of the registry: tell its
    /// groups' members (1002, from `left`; `None` when it was not in the registry any more)
    /// and give its `on-close`, which waited for this, unless a reaper gave it.
    fn removed_late(&self, system: &str, client: &str, left: Option<Vec<crate::registry::Left>>);
    /// The instance this node registers new clients under ([`crate::ids::instance_of`]).
    fn instance(&self) -> String;
    /// Run a timer of a dead instance here (see [`timers`]); `false` when no plugin of that
    /// name runs on this node.
    fn adopt_timer(&self, timer: timers::Adopted) -> bool;
    /// The plugin timers pending on this node: plugin, id, record (written back to Redis
    /// after it lost its data).
    fn pending_timers(&self) -> Vec<(String, u64, timers::TimerRecord)>;
    /// The systems this node registered (configuration, plugins, API), with their
    /// `max_connections`: registered again if Redis loses its data.
    fn systems_to_restore(&self) -> Vec<(String, Option<usize>)>;
}

/// Delivery to clients connected to other nodes. Implementations route, never broadcast
/// everything: a client by the node in its id ([`crate::ids::node_of`]), a group or a system
/// by a channel only the nodes with local members listen to.
///
/// Ordering: messages one caller publishes to one client arrive in the order published.
pub trait Broker: Send + Sync + 'static {
    /// Deliver `msg` to `clients` of `system`, none of which is connected to this node.
    fn to_clients(
        &self,
        system: &str,
        clients: &[&str],
        msg: &Message,
    ) -> Result<(), RegistryError>;
    /// Deliver `msg` to the members of `group` on other nodes, except `exclude`.
    fn to_group(
        &self,
        system: &str,
        group: &str,
        exclude: &[String],
        msg: &Message,
    ) -> Result<(), RegistryError>;
    /// Deliver `msg` to every client of `system` on other nodes, except `exclude`.
    fn to_system(
        &self,
        system: &str,
        exclude: &[String],
        msg: &Message,
    ) -> Result<(), RegistryError>;
    /// Close `client` of `system`, connected to another node, after what is queued to it.
    fn close_client(
        &self,
        system: &str,
        client: &str,
        code: CloseCode,
        reason: &CloseReason,
    ) -> Result<(), RegistryError>;
    /// Something this node holds changed (see [`Change`]). Never fails: a broker that cannot
    /// act on it logs why.
    fn track(&self, change: Change<'_>) {
        let _ = change;
    }
    /// The members of `group` held by this node, as far as the broker knows (a cluster's
    /// `send_to_group` delivers locally to these instead of reading the member list).
    fn local_members(&self, system: &str, group: &str) -> Vec<String> {
        let _ = (system, group);
        Vec::new()
    }
    /// The cluster's state for `/healthz`; `None` for a broker without one.
    fn health(&self) -> Option<ClusterHealth> {
        None
    }
}

#[cfg(test)]
mod seam_tests;
