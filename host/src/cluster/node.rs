//! One node of a cluster: its Redis connections and the tasks that run them.
//!
//! Three connections, each with its own job, all `ConnectionManager`s (they reconnect by
//! themselves): commands (the registry, pings), publishing (one, so that publishes leave in the
//! order they were made), subscribing (RESP3 pushes; resubscribed after a reconnect). The node
//! listens to its own channel from the start, and to group and system channels as
//! [`Interest`] decides.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prometheus_client::metrics::gauge::Gauge;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::LocalDelivery;
use super::broker::{self, Outgoing, PUBLISH_QUEUE, REDIS_TIMEOUT, RedisBroker, Stats};
use super::interest::{Interest, Sub};
use super::lease::Lease;
use super::mirror::Mirror;
use super::redis_registry::RedisRegistry;
use super::wire::{Channels, Kind, Packet};
use crate::config::LimitsConfig;
use crate::ids;
use crate::metrics::Metrics;

/// How often Redis is pinged to tell `/healthz` whether it is up when nothing is published.
const PING_EVERY: Duration = Duration::from_secs(1);

/// Errors starting cluster mode.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The `redis` setting is not a usable URL.
    #[error("redis = {url:?}: {cause}")]
    Url {
        /// The setting.
        url: String,
        /// Why.
        cause: String,
    },
    /// Redis could not be reached at startup.
    #[error("cannot reach redis at {url}: {cause}")]
    Connect {
        /// The setting.
        url: String,
        /// Why.
        cause: String,
    },
}

/// A node connected to Redis, before it serves.
pub struct Cluster {
    node: u32,
    url: String,
    prefix: String,
    client: redis::Client,
    commands: ConnectionManager,
    stats: Arc<Stats>,
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(REDIS_TIMEOUT))
        .set_response_timeout(Some(REDIS_TIMEOUT))
        .set_max_delay(Duration::from_secs(1))
}

impl Cluster {
    /// Connect node `node` to the Redis at `url` (RESP3, for pushes on the subscribing
    /// connection), its keys and channels under `prefix`.
    pub async fn connect(url: &str, prefix: &str, node: u32) -> Result<Self, ClusterError> {
        let bad = |cause: String| ClusterError::Url {
            url: url.to_owned(),
            cause,
        };
        let info = url.into_connection_info().map_err(|e| bad(e.to_string()))?;
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings))
            .map_err(|e| bad(e.to_string()))?;
        let commands = Self::manager(&client, url, manager_config()).await?;
        info!(node, prefix, "cluster mode: connected to redis");
        Ok(Self {
            node,
            url: url.to_owned(),
            prefix: prefix.to_owned(),
            client,
            commands,
            stats: Arc::new(Stats::new(node)),
        })
    }

    async fn manager(
        client: &redis::Client,
        url: &str,
        config: ConnectionManagerConfig,
    ) -> Result<ConnectionManager, ClusterError> {
        let fail = |cause: String| ClusterError::Connect {
            url: url.to_owned(),
            cause,
        };
        let connecting = ConnectionManager::new_with_config(client.clone(), config);
        match tokio::time::timeout(REDIS_TIMEOUT * 2, connecting).await {
            Ok(Ok(m)) => Ok(m),
            Ok(Err(e)) => Err(fail(e.to_string())),
            Err(_) => Err(fail("timed out".into())),
        }
    }

    /// This node's id.
    pub fn node(&self) -> u32 {
        self.node
    }

    /// The shared registry, bounded by `limits`.
    pub fn registry(&self, limits: LimitsConfig) -> Arc<RedisRegistry> {
        Arc::new(RedisRegistry::new(
            self.commands.clone(),
            &self.prefix,
            self.node,
            limits,
        ))
    }

    /// The plugins' shared key-value stores.
    pub fn kv(&self) -> Arc<super::RedisKv> {
        Arc::new(super::RedisKv::new(
            self.commands.clone(),
            &self.prefix,
            self.node,
        ))
    }

    /// The plugins' shared timers.
    pub fn timers(&self) -> Arc<super::RedisTimers> {
        Arc::new(super::RedisTimers::new(self.commands.clone(), &self.prefix))
    }

    /// Start publishing, subscribing and receiving: packets for this node's clients go to
    /// `local`; the cluster's counters go into `metrics`. Returns the broker for the gateway.
    ///
    /// When `shutdown` is cancelled (a graceful stop), the node deletes its lease at once, so
    /// that another node reaps what is left of it and takes its timers over.
    pub async fn start(
        self,
        registry: Arc<RedisRegistry>,
        timers: Arc<super::RedisTimers>,
        local: Arc<dyn LocalDelivery>,
        metrics: &Metrics,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Result<Arc<RedisBroker>, ClusterError> {
        let channels = Channels::new(&self.prefix);
        let (push_tx, push_rx) = mpsc::unbounded_channel::<PushInfo>();
        let mut subscriber = Self::manager(
            &self.client,
            &self.url,
            manager_config()
                .set_push_sender(push_tx)
                .set_automatic_resubscription(),
        )
        .await?;
        let publisher = Self::manager(&self.client, &self.url, manager_config()).await?;
        let own = channels.node(self.node);
        match tokio::time::timeout(REDIS_TIMEOUT, subscriber.subscribe(&own)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(self.connect_error(e.to_string())),
            Err(_) => return Err(self.connect_error("subscribe timed out".into())),
        }

        let up = Gauge::<i64>::default();
        let node_gauge = Gauge::<i64>::default();
        node_gauge.set(i64::from(self.node));
        let stats = self.stats.clone();
        metrics.register(|r| {
            r.register("cluster_node", "This node's id", node_gauge);
            r.register(
                "cluster_messages_in",
                "Packets received from other nodes",
                stats.messages_in.clone(),
            );
            r.register(
                "cluster_messages_out",
                "Packets published to other nodes",
                stats.messages_out.clone(),
            );
            r.register(
                "cluster_publish_failures",
                "Packets that could not be published (Redis down, slow or queue full)",
                stats.publish_failures.clone(),
            );
            r.register(
                "cluster_redis_up",
                "1 when Redis answered the last command or ping",
                up.clone(),
            );
            r.register(
                "cluster_peers",
                "Nodes listed in the cluster, this one included",
                stats.peers.clone(),
            );
            r.register(
                "cluster_reaped_clients",
                "Clients of dead nodes this node removed",
                stats.reaped.clone(),
            );
        });

        let (sub_tx, sub_rx) = mpsc::unbounded_channel();
        let interest = Arc::new(Interest::new(channels.clone(), sub_tx.clone()));
        let mirror = Arc::new(Mirror::default());
        tokio::spawn(mirror.clone().refresh_loop(registry.clone()));
        let (pub_tx, pub_rx) = mpsc::channel::<Outgoing>(PUBLISH_QUEUE);
        tokio::spawn(broker::publish_loop(publisher, pub_rx, stats.clone()));
        tokio::spawn(subscribe_loop(subscriber, sub_rx));
        tokio::spawn(receive_loop(
            push_rx,
            Receivers {
                interest: interest.clone(),
                mirror: mirror.clone(),
                local: local.clone(),
            },
            stats.clone(),
        ));
        let wake = Arc::new(tokio::sync::Notify::new());
        Lease {
            conn: self.commands.clone(),
            prefix: self.prefix.clone(),
            stats: stats.clone(),
            registry,
            local,
            mirror: mirror.clone(),
            timers: timers.clone(),
            wake: wake.clone(),
            shutdown: shutdown.clone(),
        }
        .spawn();
        let back = Back {
            lease: wake,
            interest: interest.clone(),
            mirror: mirror.clone(),
            timers: timers.clone(),
            subs: sub_tx,
            own: own.clone(),
        };
        tokio::spawn(shutdown.clone().run_until_cancelled_owned(ping_loop(
            self.commands.clone(),
            stats.clone(),
            up,
            back,
        )));
        info!(node = self.node, channel = %own, "cluster node listening");
        Ok(Arc::new(RedisBroker::new(
            channels, pub_tx, interest, mirror, stats,
        )))
    }

    fn connect_error(&self, cause: String) -> ClusterError {
        ClusterError::Connect {
            url: self.url.clone(),
            cause,
        }
    }
}

/// Carry out subscription changes in the order they were decided.
async fn subscribe_loop(conn: ConnectionManager, mut rx: mpsc::UnboundedReceiver<Sub>) {
    while let Some(sub) = rx.recv().await {
        let (what, channel) = match &sub {
            Sub::Subscribe(c) => ("subscribe", c),
            Sub::Unsubscribe(c) => ("unsubscribe", c),
        };
        let change = broker::retry_unsent(|| {
            let mut conn = conn.clone();
            let sub = sub.clone();
            async move {
                match &sub {
                    Sub::Subscribe(c) => conn.subscribe(c).await,
                    Sub::Unsubscribe(c) => conn.unsubscribe(c).await,
                }
            }
        });
        let done = tokio::time::timeout(REDIS_TIMEOUT, change).await;
        match done {
            Ok(Ok(())) => debug!(what, channel, "cluster subscription changed"),
            Ok(Err(e)) => warn!(what, channel, cause = %e, "cluster subscription change failed"),
            Err(_) => warn!(what, channel, "cluster subscription change timed out"),
        }
    }
}

/// What to do when Redis answers again after an outage.
struct Back {
    /// Wake the lease task: it checks for lost data at once, not at its next tick.
    lease: Arc<tokio::sync::Notify>,
    /// Subscribe again to what this node listens to (a SUBSCRIBE may have failed meanwhile).
    interest: Arc<Interest>,
    /// The node's copy of its clients.
    mirror: Arc<Mirror>,
    subs: mpsc::UnboundedSender<Sub>,
    /// The plugins' timers: their claims wait while Redis may have lost its data.
    timers: Arc<super::RedisTimers>,
    /// This node's own channel. Subscribing to it also makes the subscribing connection
    /// reconnect if its own attempts ran out during a long outage.
    own: String,
}

impl Back {
    fn redis_is_back(&self) {
        self.lease.notify_one();
        // Reads of the node's copy that failed meanwhile are due again.
        self.mirror.kick();
        let _ = self.subs.send(Sub::Subscribe(self.own.clone()));
        self.interest.resubscribe_all();
    }
}

/// Ping Redis so that `/healthz` and `/metrics` tell when it is down even while idle, and act
/// when it answers again after an outage ([`Back`]).
async fn ping_loop(mut conn: ConnectionManager, stats: Arc<Stats>, up: Gauge<i64>, back: Back) {
    let mut tick = tokio::time::interval(PING_EVERY);
    let mut was_ok = true;
    loop {
        tick.tick().await;
        let ping = redis::cmd("PING");
        let ok = matches!(
            tokio::time::timeout(REDIS_TIMEOUT, ping.query_async::<()>(&mut conn)).await,
            Ok(Ok(()))
        );
        stats.set_up(ok);
        up.set(i64::from(ok));
        if !ok {
            back.timers.unsure();
        }
        if ok && !was_ok {
            back.redis_is_back();
        }
        was_ok = ok;
    }
}

/// Where the receiving task hands packets.
struct Receivers {
    interest: Arc<Interest>,
    mirror: Arc<Mirror>,
    local: Arc<dyn LocalDelivery>,
}

/// Hand each packet from another node to this node's clients, one at a time, in order.
async fn receive_loop(mut rx: mpsc::UnboundedReceiver<PushInfo>, to: Receivers, stats: Arc<Stats>) {
    while let Some(push) = rx.recv().await {
        if push.kind == PushKind::Disconnection {
            warn!("redis subscription connection lost; it reconnects and resubscribes");
            continue;
        }
        if push.kind != PushKind::Message {
            continue;
        }
        let Some(Value::BulkString(bytes)) = push.data.into_iter().nth(1) else {
            continue;
        };
        let packet = match Packet::decode(Bytes::from(bytes)) {
            Ok(p) => p,
            Err(e) => {
                warn!(cause = %e, "cluster packet dropped");
                continue;
            }
        };
        if packet.origin == stats.node {
            // This node delivered to its own clients when it published.
            continue;
        }
        stats.messages_in.inc();
        dispatch(packet, &to, stats.node).await;
    }
}

async fn dispatch(p: Packet, to: &Receivers, node: u32) {
    let (interest, local) = (&to.interest, &*to.local);
    let system = p.system.as_str();
    match (p.kind, p.payload) {
        (Kind::Clients, Some(msg)) => {
            local.to_local_clients(system, &p.list, &[], &msg);
        }
        (Kind::Group, Some(msg)) => {
            let members = interest.members(system, &p.target);
            local.to_local_clients(system, &members, &p.list, &msg);
        }
        (Kind::System, Some(msg)) => {
            local.to_local_system(system, &p.list, msg).await;
        }
        (Kind::Close, _) => local.close_local_client(system, &p.target, p.code, &p.reason),
        (Kind::Joined, _) => {
            for c in p.list.iter().filter(|c| ids::node_of(c) == Some(node)) {
                interest.joined(system, &p.target, c);
                to.mirror.touch(c);
            }
        }
        (Kind::Left, _) => {
            for c in p.list.iter().filter(|c| ids::node_of(c) == Some(node)) {
                interest.left(system, &p.target, c);
                to.mirror.touch(c);
            }
        }
        (Kind::Touch, _) => {
            for c in p.list.iter().filter(|c| ids::node_of(c) == Some(node)) {
                to.mirror.touch(c);
            }
        }
        (kind, None) => warn!(?kind, "cluster packet without payload dropped"),
    }
}
