//! Node leases and the reaper: no client of a dead node stays in the registry.
//!
//! Every [`LEASE_EVERY`] a node sets `{prefix}node:<id>:lease` with a TTL of [`LEASE_TTL`] and
//! lists itself in `{prefix}nodes`. Every node also looks at the others: a node listed without
//! a lease is dead (killed, or stopped past its TTL). The first node to take its reap lock
//! (`SET NX PX`) removes the dead node's clients from every list, count and group, sends the
//! groups' other members the offline notices (1002) and gives its own plugin `on-close` for
//! each: exactly once in the cluster. So a dead node's clients are gone within
//! `LEASE_TTL + LEASE_EVERY` (8 s) of its last refresh.
//!
//! A node that finds its own lease gone and a reaped mark on itself (it was stopped long
//! enough to be reaped, then woke up) closes every client it holds with 1012 (service restart):
//! they were already announced offline, and they reconnect to be registered again. A lease gone
//! *without* the mark means Redis lost its data (a restart): nothing is closed.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tracing::{info, warn};

use super::LocalDelivery;
use super::broker::{REDIS_TIMEOUT, Stats};
use super::redis_registry::RedisRegistry;
use crate::registry::Registry;

/// How often a node refreshes its lease and looks for dead peers.
pub const LEASE_EVERY: Duration = Duration::from_secs(2);
/// How long a lease lives without a refresh.
pub const LEASE_TTL: Duration = Duration::from_secs(6);
/// How long a reap lock (and the reaped mark) is held.
const REAP_LOCK: Duration = Duration::from_secs(60);

/// Names of the lease keys under the prefix.
struct Keys {
    prefix: String,
}

impl Keys {
    fn nodes(&self) -> String {
        format!("{}nodes", self.prefix)
    }
    fn lease(&self, node: u32) -> String {
        format!("{}node:{node}:lease", self.prefix)
    }
    fn reap(&self, node: u32) -> String {
        format!("{}node:{node}:reap", self.prefix)
    }
    fn reaped(&self, node: u32) -> String {
        format!("{}node:{node}:reaped", self.prefix)
    }
}

/// The lease task of one node.
pub(super) struct Lease {
    pub conn: ConnectionManager,
    pub prefix: String,
    pub stats: Arc<Stats>,
    pub registry: Arc<RedisRegistry>,
    pub local: Arc<dyn LocalDelivery>,
}

async fn bounded<T>(fut: impl Future<Output = redis::RedisResult<T>>) -> Option<T> {
    match tokio::time::timeout(REDIS_TIMEOUT, fut).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            warn!(cause = %e, "lease: redis command failed");
            None
        }
        Err(_) => {
            warn!("lease: redis command timed out");
            None
        }
    }
}

impl Lease {
    /// Remove the clients a previous process with this node id left behind (it was killed and
    /// this one took its id before anyone reaped it): ghosts, since this process has no client
    /// yet. Awaited before the node serves.
    pub async fn reap_previous(&mut self) {
        let keys = Keys {
            prefix: self.prefix.clone(),
        };
        self.reap(&keys, self.stats.node).await;
    }

    /// Refresh the lease and reap dead peers, forever.
    pub async fn run(mut self) {
        let keys = Keys {
            prefix: self.prefix.clone(),
        };
        let node = self.stats.node;
        let mut first = true;
        let mut tick = tokio::time::interval(LEASE_EVERY);
        loop {
            tick.tick().await;
            let Some(had_lease) = self.refresh(&keys, node).await else {
                continue;
            };
            if !had_lease && !first {
                self.lost(&keys, node).await;
            }
            first = false;
            self.reap_dead(&keys, node).await;
        }
    }

    /// Set the lease; whether it still existed (`None` when Redis did not answer).
    async fn refresh(&mut self, keys: &Keys, node: u32) -> Option<bool> {
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(keys.lease(node))
            .arg(1)
            .arg("PX")
            .arg(LEASE_TTL.as_millis() as u64)
            .arg("GET")
            .cmd("SADD")
            .arg(keys.nodes())
            .arg(node)
            .ignore()
            .cmd("SCARD")
            .arg(keys.nodes());
        let (old, peers): (Option<String>, u64) = bounded(pipe.query_async(&mut self.conn)).await?;
        self.stats.peers.set(peers as i64);
        Some(old.is_some())
    }

    /// This node's lease expired: closes its clients if another node reaped them.
    async fn lost(&mut self, keys: &Keys, node: u32) {
        let mut get = redis::cmd("EXISTS");
        get.arg(keys.reaped(node));
        let reaped: Option<bool> = bounded(get.query_async(&mut self.conn)).await;
        if reaped == Some(true) {
            warn!(
                node,
                "this node was reaped while away: closing its clients so they reconnect"
            );
            self.local
                .close_all_local(1012, "node lost its cluster lease");
            let mut del = redis::cmd("DEL");
            del.arg(keys.reaped(node));
            let _: Option<()> = bounded(del.query_async(&mut self.conn)).await;
        } else {
            warn!(node, "lease was gone without a reap (redis restarted?)");
        }
    }

    /// Reap every listed node without a lease, when this node wins its reap lock.
    async fn reap_dead(&mut self, keys: &Keys, node: u32) {
        let mut members = redis::cmd("SMEMBERS");
        members.arg(keys.nodes());
        let Some(nodes) = bounded::<Vec<u32>>(members.query_async(&mut self.conn)).await else {
            return;
        };
        for peer in nodes.into_iter().filter(|n| *n != node) {
            let mut exists = redis::cmd("EXISTS");
            exists.arg(keys.lease(peer));
            if bounded::<bool>(exists.query_async(&mut self.conn)).await != Some(false) {
                continue;
            }
            let mut lock = redis::cmd("SET");
            lock.arg(keys.reap(peer))
                .arg(node)
                .arg("NX")
                .arg("PX")
                .arg(REAP_LOCK.as_millis() as u64);
            let won: Option<Option<String>> = bounded(lock.query_async(&mut self.conn)).await;
            if !matches!(won, Some(Some(_))) {
                continue;
            }
            self.reap(keys, peer).await;
        }
    }

    /// Remove every client of dead node `peer`, then the node itself.
    async fn reap(&mut self, keys: &Keys, peer: u32) {
        let Ok(systems) = self.registry.systems().await else {
            return;
        };
        let mut reaped = 0u64;
        for system in systems {
            let Ok(clients) = self.registry.node_clients(&system, peer).await else {
                return; // Redis failed: the lock expires and someone retries.
            };
            for client in clients {
                match self.registry.remove_client(&system, &client).await {
                    Ok(left) => {
                        self.local.reaped(&system, &client, left);
                        reaped += 1;
                    }
                    Err(crate::registry::RegistryError::UnknownClient(_)) => {}
                    Err(e) => {
                        warn!(cause = %e, peer, "reaping stopped");
                        return;
                    }
                }
            }
        }
        self.stats.reaped.inc_by(reaped);
        if peer == self.stats.node {
            if reaped > 0 {
                info!(
                    clients = reaped,
                    "removed clients of this node id's previous process"
                );
            }
            return;
        }
        let mut pipe = redis::pipe();
        pipe.cmd("SREM")
            .arg(keys.nodes())
            .arg(peer)
            .ignore()
            .cmd("SET")
            .arg(keys.reaped(peer))
            .arg(1)
            .arg("PX")
            .arg(REAP_LOCK.as_millis() as u64)
            .ignore();
        let _: Option<()> = bounded(pipe.query_async(&mut self.conn)).await;
        info!(peer, clients = reaped, "reaped a dead node");
    }
}
