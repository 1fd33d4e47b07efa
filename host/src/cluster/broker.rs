//! [`RedisBroker`]: sends and closes for other nodes' clients, published over Redis pub/sub.
//!
//! A broker call never waits for Redis (the caller may be a plugin's thread or a fan-out): it
//! encodes the packet once and puts it on a bounded queue, which one task drains in order into
//! pipelined PUBLISHes on one connection. So one sender's messages to one client leave this
//! node in the order they were sent, Redis relays them in that order, and the receiving node
//! handles them one at a time. When Redis is down (the last publish or ping failed) or the
//! queue is full, a call answers [`RegistryError::Unavailable`] at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tracing::warn;

use super::interest::Interest;
use super::mirror::Mirror;
use super::wire::{Channels, Kind, Packet};
use super::{Broker, Change, ClusterHealth};
use crate::domain::close::{CloseCode, CloseReason};
use crate::ids;
use crate::registry::RegistryError;

/// Packets waiting to be published; past it a send answers `Unavailable` rather than holding
/// memory without bound while Redis is slow.
pub(super) const PUBLISH_QUEUE: usize = 65_536;

/// PUBLISHes sent in one pipeline (one round trip to Redis).
const PUBLISH_BATCH: usize = 256;

/// How long one Redis round trip may take before the cluster counts Redis as down.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// An error saying Redis could not answer (HTTP 503, WIT `unavailable`).
pub(super) fn unavailable(e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Unavailable(e.to_string())
}

/// Await one Redis round trip for at most [`REDIS_TIMEOUT`]; a failure or the timeout is
/// [`RegistryError::Unavailable`]. Every registry, key-value and timer call goes through it.
pub(super) async fn within<T>(
    fut: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, RegistryError> {
    match tokio::time::timeout(REDIS_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(unavailable(format!("redis: {e}"))),
        Err(_) => Err(unavailable(format!(
            "redis did not answer within {REDIS_TIMEOUT:?}"
        ))),
    }
}

/// A packet on its way to a channel.
pub(super) type Outgoing = (String, Bytes);

/// Counters and state shared by the broker, the receiving task and `/metrics`.
#[derive(Debug)]
pub struct Stats {
    /// This node's id.
    pub node: u32,
    /// Whether the last Redis command or ping succeeded.
    pub redis_up: AtomicBool,
    /// Packets received from other nodes.
    pub messages_in: Counter,
    /// Packets published.
    pub messages_out: Counter,
    /// Packets that could not be published.
    pub publish_failures: Counter,
    /// Nodes listed in the cluster (this one included), as last seen.
    pub peers: Gauge,
    /// Clients of dead nodes this node removed.
    pub reaped: Counter,
}

impl Stats {
    /// Fresh counters of `node`, Redis taken as up (it was just reached).
    pub fn new(node: u32) -> Self {
        Self {
            node,
            redis_up: AtomicBool::new(true),
            messages_in: Counter::default(),
            messages_out: Counter::default(),
            publish_failures: Counter::default(),
            peers: Gauge::default(),
            reaped: Counter::default(),
        }
    }

    /// Record whether Redis answered; logs the transitions only.
    pub fn set_up(&self, up: bool) {
        let was = self.redis_up.swap(up, Ordering::Relaxed);
        if was && !up {
            warn!(
                node = self.node,
                "redis unreachable: cluster operations answer 503"
            );
        } else if !was && up {
            tracing::info!(node = self.node, "redis reachable again");
        }
    }

    pub(super) fn up(&self) -> bool {
        self.redis_up.load(Ordering::Relaxed)
    }
}

/// Run `op`, again (up to twice more, 50 ms apart) when it failed without reaching Redis: the
/// first command on a connection whose reconnect failed during an outage gets that old error
/// back while the manager reconnects. A command refused at connect was never run, so trying
/// again cannot deliver anything twice; any other error is final.
pub(super) async fn retry_unsent<T, F, Fut>(mut op: F) -> redis::RedisResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = redis::RedisResult<T>>,
{
    let mut tries = 0;
    loop {
        match op().await {
            Err(e) if e.is_connection_refusal() && tries < 2 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// Drain `rx` into pipelined PUBLISHes on `conn`, in order, until every sender is gone.
pub(super) async fn publish_loop(
    conn: ConnectionManager,
    mut rx: mpsc::Receiver<Outgoing>,
    stats: Arc<Stats>,
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while rx.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let mut pipe = redis::pipe();
        for (channel, bytes) in &batch {
            pipe.cmd("PUBLISH")
                .arg(channel)
                .arg(bytes.as_ref())
                .ignore();
        }
        let n = batch.len() as u64;
        let publish = retry_unsent(|| {
            let mut conn = conn.clone();
            let pipe = &pipe;
            async move { pipe.query_async::<()>(&mut conn).await }
        });
        match tokio::time::timeout(REDIS_TIMEOUT, publish).await {
            Ok(Ok(())) => {
                stats.set_up(true);
                stats.messages_out.inc_by(n);
            }
            Ok(Err(e)) => {
                stats.set_up(false);
                stats.publish_failures.inc_by(n);
                warn!(cause = %e, packets = n, "cluster publish failed");
            }
            Err(_) => {
                stats.set_up(false);
                stats.publish_failures.inc_by(n);
                warn!(packets = n, timeout = ?REDIS_TIMEOUT, "cluster publish timed out");
            }
        }
        batch.clear();
    }
}

/// The broker of one node of a Redis cluster.
pub struct RedisBroker {
    node: u32,
    channels: Channels,
    queue: mpsc::Sender<Outgoing>,
    interest: Arc<Interest>,
    mirror: Arc<Mirror>,
    stats: Arc<Stats>,
}

impl RedisBroker {
    pub(super) fn new(
        channels: Channels,
        queue: mpsc::Sender<Outgoing>,
        interest: Arc<Interest>,
        mirror: Arc<Mirror>,
        stats: Arc<Stats>,
    ) -> Self {
        Self {
            node: stats.node,
            channels,
            queue,
            interest,
            mirror,
            stats,
        }
    }

    fn packet(&self, kind: Kind, system: &str) -> Packet {
        Packet::new(kind, self.node, system)
    }

    fn publish(&self, channel: String, packet: &Packet) -> Result<(), RegistryError> {
        if !self.stats.up() {
            return Err(RegistryError::Unavailable("redis is unreachable".into()));
        }
        self.queue
            .try_send((channel, packet.encode()))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    self.stats.publish_failures.inc();
                    RegistryError::Unavailable("cluster publish queue is full".into())
                }
                mpsc::error::TrySendError::Closed(_) => {
                    RegistryError::Unavailable("cluster publisher stopped".into())
                }
            })
    }

    /// Tell the node holding `client` that it joined or left `group`, or that its uid or info
    /// changed ([`Kind::Touch`]), through this node.
    fn forward_membership(&self, kind: Kind, system: &str, group: &str, client: &str) {
        let Some(node) = ids::node_of(client) else {
            return;
        };
        let mut p = self.packet(kind, system);
        p.target = group.to_owned();
        p.list = vec![client.to_owned()];
        if let Err(e) = self.publish(self.channels.node(node), &p) {
            warn!(cause = %e, system, group, client, "membership change not forwarded");
        }
    }
}

impl Broker for RedisBroker {
    fn to_clients(
        &self,
        system: &str,
        clients: &[&str],
        msg: &Message,
    ) -> Result<(), RegistryError> {
        // One packet per node holding some of them: O(nodes) publishes, not O(clients).
        let mut by_node: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for c in clients {
            if let Some(node) = ids::node_of(c) {
                by_node.entry(node).or_default().push((*c).to_owned());
            }
        }
        for (node, list) in by_node {
            let mut p = self.packet(Kind::Clients, system);
            p.list = list;
            p.payload = Some(msg.clone());
            self.publish(self.channels.node(node), &p)?;
        }
        Ok(())
    }

    fn to_group(
        &self,
        system: &str,
        group: &str,
        exclude: &[String],
        msg: &Message,
    ) -> Result<(), RegistryError> {
        let mut p = self.packet(Kind::Group, system);
        p.target = group.to_owned();
        p.list = exclude.to_vec();
        p.payload = Some(msg.clone());
        self.publish(self.channels.group(system, group), &p)
    }

    fn to_system(
        &self,
        system: &str,
        exclude: &[String],
        msg: &Message,
    ) -> Result<(), RegistryError> {
        let mut p = self.packet(Kind::System, system);
        p.list = exclude.to_vec();
        p.payload = Some(msg.clone());
        self.publish(self.channels.system(system), &p)
    }

    fn close_client(
        &self,
        system: &str,
        client: &str,
        code: CloseCode,
        reason: &CloseReason,
    ) -> Result<(), RegistryError> {
        let node =
            ids::node_of(client).ok_or_else(|| RegistryError::UnknownClient(client.to_owned()))?;
        let mut p = self.packet(Kind::Close, system);
        p.target = client.to_owned();
        p.code = u16::from(code);
        p.reason = reason.as_str().to_owned();
        self.publish(self.channels.node(node), &p)
    }

    fn track(&self, change: Change<'_>) {
        let local = |client: &str| ids::node_of(client) == Some(self.node);
        match change {
            Change::ClientUp {
                system,
                client,
                uid,
            } => {
                self.mirror.up(system, client, uid);
                self.interest.client_up(system);
            }
            Change::ClientDown { system, client } => {
                self.mirror.down(client);
                self.interest.client_down(system, client);
            }
            Change::Joined {
                system,
                group,
                client,
            } if local(client) => {
                self.interest.joined(system, group, client);
                self.mirror.touch(client);
            }
            Change::Left {
                system,
                group,
                client,
            } if local(client) => {
                self.interest.left(system, group, client);
                self.mirror.touch(client);
            }
            Change::Touched { client, .. } if local(client) => self.mirror.touch(client),
            Change::Joined {
                system,
                group,
                client,
            } => self.forward_membership(Kind::Joined, system, group, client),
            Change::Left {
                system,
                group,
                client,
            } => self.forward_membership(Kind::Left, system, group, client),
            Change::Touched { system, client } => {
                self.forward_membership(Kind::Touch, system, "", client);
            }
        }
    }

    fn local_members(&self, system: &str, group: &str) -> Vec<String> {
        self.interest.members(system, group)
    }

    fn health(&self) -> Option<ClusterHealth> {
        Some(ClusterHealth {
            node: self.node,
            redis: if self.stats.up() { "up" } else { "down" },
            messages_in: self.stats.messages_in.get(),
            messages_out: self.stats.messages_out.get(),
            publish_failures: self.stats.publish_failures.get(),
            peers: self.stats.peers.get(),
            reaped_clients: self.stats.reaped.get(),
        })
    }
}
