//! The [`Gateway`] handle: the one seam through which the HTTP API and plugins act on clients.
//!
//! It joins the [`Registry`] (who is where) with the live connections of this node (where bytes
//! go). Queries that only read the registry go straight to [`Gateway::registry`]; everything that
//! sends, notifies or closes goes through a method here so that notices, metrics and plugin events
//! stay consistent whoever triggers them.
//!
//! Layout: this file holds the handle and the connection lifecycle; `send.rs` delivery,
//! `members.rs` groups, uids and info, `systems.rs` registering and unregistering systems.

mod members;
mod remote;
mod send;
mod systems;

use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::cluster::{Broker, Change, ClusterHealth};
use crate::config::Config;
use crate::domain::close::{CloseCode, CloseError, CloseReason};
use crate::domain::names::NameError;
use crate::ids::IdGen;
use crate::metrics::{DropLabels, Metrics};
use crate::outbound::{self, Outbound, OutboundRx};
use crate::registry::{LocalRegistry, Registry, RegistryError};

pub use crate::events::{ConnectContext, ConnectVerdict, EventSink, Room, Taken};
pub use crate::wire::{Envelope, NOTICE_OFFLINE, NOTICE_ONLINE};

/// Errors of gateway operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The registry refused: unknown system, client or group, or a limit was hit.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A name (system, group, uid) broke the name rule.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A close code or reason asked for from outside that may not be sent.
    #[error(transparent)]
    Close(#[from] CloseError),
    /// A message larger than `max_queue_bytes` (it could never be queued to anyone).
    #[error(transparent)]
    Queue(#[from] outbound::QueueError),
    /// The system is declared in the configuration or served by a plugin: it cannot be
    /// unregistered through the API.
    #[error("system {0} is {1}: it cannot be unregistered")]
    Protected(String, &'static str),
}

/// A live connection of this node.
#[derive(Debug)]
struct Connection {
    /// The system it belongs to, checked on every operation so tenants never cross.
    system: Arc<str>,
    /// Its outbound queue.
    out: Outbound,
}

/// The live connections of one system on this node.
#[derive(Default)]
struct SystemTable {
    /// Client id → queue.
    conns: parking_lot::RwLock<std::collections::HashMap<String, Outbound>>,
    /// Taken by a broadcast that is split over the runtime's workers (`send.rs`), so that two
    /// such broadcasts reach every client in the same order: without it, on two cores, 80k-120k
    /// deliveries per benchmark run arrived in a different order than the broadcasts (issue 13).
    turn: Arc<tokio::sync::Mutex<()>>,
}

/// A system's table, shared with broadcasts in flight.
type SystemConnections = Arc<SystemTable>;

/// Cheap-to-clone handle on the whole gateway.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    registry: Arc<dyn Registry>,
    /// Looked up on every send to a client. foldhash rather than SipHash: the ids are the
    /// gateway's own, not chosen by a client (SipHash was ~0.13 us per plugin echo, perf).
    connections: DashMap<String, Connection, foldhash::fast::RandomState>,
    /// The same connections by system, holding their queues: a broadcast to a system walks
    /// its table instead of copying and sorting the registry's client ids and looking each
    /// one up in `connections` (together 10 % of the server's CPU in a perf profile of the
    /// 10k-client fan-out benchmark).
    by_system: DashMap<Arc<str>, SystemConnections>,
    ids: IdGen,
    /// The systems this node registered, with their `max_connections`: a cluster registers them
    /// again if Redis loses its data.
    registered: parking_lot::Mutex<std::collections::BTreeMap<String, Option<usize>>>,
    /// Cluster mode: this node's instances that were reaped while it was away. Their clients
    /// were announced by the reaper; a removal of one that finds it gone announces nothing.
    retired: parking_lot::Mutex<std::collections::HashSet<String>>,
    /// Cluster mode: clients that left while Redis was unreachable, with their close code and
    /// reason. Their `on-close` waits until they are out of the registry (see
    /// [`crate::cluster::LocalDelivery::removed_late`]): announced by whoever removes them,
    /// once, even if another node reaps this one meanwhile.
    deferred: parking_lot::Mutex<std::collections::HashMap<String, (u16, String)>>,
    metrics: Metrics,
    events: OnceLock<Arc<dyn EventSink>>,
    /// Delivery to other nodes; unset on a single node, whose sends then never leave the
    /// local tables (see [`crate::cluster`]).
    broker: OnceLock<Arc<dyn Broker>>,
    /// The plugins' key-value stores when they are shared by a cluster; unset on a single
    /// node, whose plugins keep theirs in files.
    shared_kv: OnceLock<Arc<crate::cluster::RedisKv>>,
    /// The plugins' timers when a cluster keeps them (so that one fires once cluster-wide,
    /// also when this node dies); unset on a single node.
    shared_timers: OnceLock<Arc<crate::cluster::RedisTimers>>,
    /// Parent of every connection's token: cancelling it closes every client (shutdown).
    root: CancellationToken,
    /// Tracks connection tasks so shutdown can wait for them to drain.
    tasks: TaskTracker,
}

impl Gateway {
    /// A gateway with a local registry bounded by `config.limits`, the systems of `config`
    /// registered.
    pub async fn new(config: Arc<Config>) -> Self {
        let registry = Arc::new(LocalRegistry::with_limits(config.limits.clone()));
        Self::with_registry(config, registry).await
    }

    /// A gateway over any registry (a cluster passes a shared one).
    pub async fn with_registry(config: Arc<Config>, registry: Arc<dyn Registry>) -> Self {
        let mut registered = std::collections::BTreeMap::new();
        for (name, system) in &config.systems {
            registered.insert(name.clone(), system.max_connections);
            if let Err(err) = registry.register_system(name, system.max_connections).await {
                tracing::error!(system = %name, cause = %err, "configured system not registered");
            }
        }
        let node = config.node_id.unwrap_or_else(rand::random);
        Self {
            inner: Arc::new(Inner {
                ids: IdGen::new(node),
                registered: parking_lot::Mutex::new(registered),
                retired: parking_lot::Mutex::default(),
                deferred: parking_lot::Mutex::default(),
                config,
                registry,
                connections: DashMap::default(),
                by_system: DashMap::new(),
                metrics: Metrics::new(),
                events: OnceLock::new(),
                broker: OnceLock::new(),
                shared_kv: OnceLock::new(),
                shared_timers: OnceLock::new(),
                root: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        }
    }

    /// The configuration the gateway runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The registry, for read-only queries.
    pub fn registry(&self) -> &dyn Registry {
        &*self.inner.registry
    }

    /// The gateway's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// A fresh message id.
    pub fn next_message_id(&self) -> String {
        self.inner.ids.next_id()
    }

    /// Route client events to `sink` (the plugin runtime). Set once; later calls are ignored.
    pub fn set_event_sink(&self, sink: Arc<dyn EventSink>) {
        let _ = self.inner.events.set(sink);
    }

    /// Route sends and closes for clients of other nodes through `broker` (cluster mode). Set
    /// once, before serving; a second call is ignored.
    pub fn set_broker(&self, broker: Arc<dyn Broker>) {
        let _ = self.inner.broker.set(broker);
    }

    /// Keep the plugins' key-value stores in `kv`, shared by the cluster. Set once, before the
    /// plugins load.
    pub fn set_shared_kv(&self, kv: Arc<crate::cluster::RedisKv>) {
        let _ = self.inner.shared_kv.set(kv);
    }

    /// The plugins' shared key-value stores (cluster mode only).
    pub fn shared_kv(&self) -> Option<&Arc<crate::cluster::RedisKv>> {
        self.inner.shared_kv.get()
    }

    /// Keep the plugins' timers in `timers` too, shared by the cluster. Set once, before the
    /// plugins load.
    pub fn set_shared_timers(&self, timers: Arc<crate::cluster::RedisTimers>) {
        let _ = self.inner.shared_timers.set(timers);
    }

    /// The plugins' shared timers (cluster mode only).
    pub fn shared_timers(&self) -> Option<&Arc<crate::cluster::RedisTimers>> {
        self.inner.shared_timers.get()
    }

    /// The instance this node registers clients under (node id and boot, the first 16
    /// digits of the ids it hands out now).
    pub fn instance(&self) -> String {
        self.inner.ids.instance()
    }

    /// This node's id (in every client id it hands out).
    pub fn node_id(&self) -> u32 {
        self.inner.ids.node()
    }

    /// The cluster's state for `/healthz`; `None` on a single node.
    pub fn cluster_health(&self) -> Option<ClusterHealth> {
        self.inner.broker.get()?.health()
    }

    /// Tell the broker (cluster mode only) what changed on this node.
    fn track(&self, change: Change<'_>) {
        if let Some(broker) = self.inner.broker.get() {
            broker.track(change);
        }
    }

    /// The broker when `client` is held by another node (its id names another node); `None` on
    /// a single node, so that path never looks at the id.
    fn remote_broker(&self, client: &str) -> Option<&Arc<dyn Broker>> {
        let broker = self.inner.broker.get()?;
        (crate::ids::node_of(client) != Some(self.inner.ids.node())).then_some(broker)
    }

    /// The root cancellation token; cancelled when the gateway shuts down.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.root
    }

    /// The tracker of connection tasks.
    pub fn tasks(&self) -> &TaskTracker {
        &self.inner.tasks
    }

    // ---- connection lifecycle ------------------------------------------------------------

    /// Admit a new client: it gets an id, a queue and a place in the registry.
    pub async fn connect(
        &self,
        system: &str,
        uid: Option<&str>,
    ) -> Result<(String, OutboundRx), GatewayError> {
        let id = self.inner.ids.next_id();
        self.inner.registry.add_client(system, &id, uid).await?;
        if self.was_reaped(&id) {
            // Its id was drawn just before this node found itself reaped and took a new
            // instance: a client of the old one would be closed now anyway, and never reaped
            // if this node died later. Refused; it reconnects under the new instance.
            let _ = self.inner.registry.remove_client(system, &id).await;
            return Err(RegistryError::Unavailable(
                "this node is rejoining the cluster: connect again".into(),
            )
            .into());
        }
        let cfg = self.config();
        let (out, rx) = outbound::channel(
            cfg.max_queue_messages,
            cfg.max_queue_bytes,
            self.inner.root.child_token(),
        );
        let system_name: Arc<str> = system.into();
        self.inner
            .by_system
            .entry(system_name.clone())
            .or_default()
            .conns
            .write()
            .insert(id.clone(), out.clone());
        self.inner.connections.insert(
            id.clone(),
            Connection {
                system: system_name,
                out,
            },
        );
        self.inner
            .metrics
            .connections
            .get_or_create(&Metrics::system(system))
            .inc();
        self.track(Change::ClientUp {
            system,
            client: &id,
            uid,
        });
        Ok((id, rx))
    }

    /// Ask the plugin serving `system` whether to keep `client`, telling it how it connected.
    pub fn plugin_connect(
        &self,
        system: &str,
        client: &str,
        context: Box<ConnectContext>,
    ) -> Option<oneshot::Receiver<ConnectVerdict>> {
        self.inner.events.get()?.connect(system, client, context)
    }

    /// Whether a plugin serves `system` (its clients' connect context is worth building).
    pub fn plugin_serves(&self, system: &str) -> bool {
        self.inner.events.get().is_some_and(|e| e.serves(system))
    }

    /// The counter of frames received from clients of `system`. A connection looks it up once
    /// and counts into it, so receiving a frame allocates no metric label.
    pub fn inbound_counter(&self, system: &str) -> Counter {
        self.inner
            .metrics
            .messages_in
            .get_or_create(&Metrics::system(system))
            .clone()
    }

    /// A client sent a message: hand it to the system's plugin, or drop and count it. The
    /// caller counts it in [`Gateway::inbound_counter`].
    ///
    /// [`Taken::Hold`]: the client must not be read until the [`Room`] resolves (it reached its
    /// share of its plugin's queue). [`Taken::Call`]: the caller makes the plugin call itself,
    /// to its end, before it reads the client again.
    ///
    /// `from` must be `client`'s own queue (the one [`Gateway::connect`] returned with its
    /// id): the plugin's replies to `client` during a direct call are pushed to it unlooked-up.
    #[must_use = "a held client must not be read until its room resolves, a call must be run"]
    pub fn client_message(
        &self,
        system: &str,
        client: &str,
        msg: Message,
        from: &OutboundRx,
    ) -> Taken {
        debug_assert!(
            self.inner
                .connections
                .get(client)
                .is_none_or(|c| c.out.is_queue_of(from)),
            "client_message: `from` is not {client}'s queue"
        );
        let taken = match self.inner.events.get() {
            Some(sink) => sink.message(system, client, msg, from),
            None => Taken::NoPlugin,
        };
        if let Taken::NoPlugin = taken {
            self.inner
                .metrics
                .messages_dropped
                .get_or_create(&DropLabels {
                    system: system.to_owned(),
                    reason: "no_plugin".into(),
                })
                .inc();
        }
        taken
    }

    /// A client's connection ended: drop it from the registry, notify its groups and its plugin.
    pub async fn disconnect(&self, system: &str, client: &str, code: u16, reason: &str) {
        self.inner.connections.remove(client);
        self.inner.shrink_connections();
        if let Some(table) = self.inner.by_system.get(system) {
            let mut table = table.conns.write();
            table.remove(client);
            if table.capacity() > 64 && table.len() < table.capacity() / 4 {
                table.shrink_to_fit();
            }
        }
        self.inner
            .by_system
            .remove_if(system, |_, table| table.conns.read().is_empty());
        // `get`, not `get_or_create`: the system may have been unregistered (its series
        // removed) while this client was closing; the series must not come back.
        if let Some(gauge) = self.inner.metrics.connections.get(&Metrics::system(system)) {
            gauge.dec();
        }
        self.track(Change::ClientDown { system, client });
        if self.inner.broker.get().is_some() && self.inner.root.is_cancelled() {
            // This node is stopping: its plugins are stopping too. Another node reaps its
            // clients (the lease is given up at once), tells their groups and runs their
            // `on-close` in a plugin that keeps running.
            return;
        }
        let mut announce = true;
        match self.inner.registry.remove_client(system, client).await {
            Ok(left) => {
                for l in left {
                    self.track(Change::Left {
                        system,
                        group: &l.group,
                        client,
                    });
                    self.notify_left(system, client, &l);
                }
            }
            Err(RegistryError::UnknownSystem(_)) => {
                // Its system was unregistered while it closed: a frame or overflow counted in
                // the meantime may have re-created the system's series; the last client of the
                // system to leave removes them for good.
                self.inner.metrics.remove_system(system);
            }
            Err(RegistryError::UnknownClient(_)) if self.was_reaped(client) => {
                // Another node reaped it (this node was stopped past its lease) and gave the
                // notices and `on-close` then: whoever removes a client announces it, once.
                announce = false;
                debug!(client, "client was reaped by another node");
            }
            Err(RegistryError::Unavailable(_)) if self.inner.broker.get().is_some() => {
                // Retried when Redis answers (`removed_late`); the `on-close` waits for it,
                // since a node that reaps this one meanwhile would give it too.
                announce = false;
                self.inner
                    .deferred
                    .lock()
                    .insert(client.to_owned(), (code, reason.to_owned()));
            }
            Err(err) => debug!(cause = %err, client, "client not removed from the registry"),
        }
        if announce && let Some(sink) = self.inner.events.get() {
            sink.close(system, client, code, reason);
        }
    }

    /// Whether `client` belongs to an instance of this node that another node reaped.
    pub(crate) fn was_reaped(&self, client: &str) -> bool {
        crate::ids::instance_of(client).is_some_and(|i| self.inner.retired.lock().contains(i))
    }

    /// Count one outbound queue overflow (the client is closed as a slow consumer).
    pub fn count_overflow(&self, system: &str) {
        self.inner
            .metrics
            .queue_overflows
            .get_or_create(&Metrics::system(system))
            .inc();
    }

    /// Close a client of `system` with `code` and `reason` (checked by the caller with
    /// [`CloseCode::application`] and [`CloseReason::parse`]), after what is already queued to
    /// it has been sent.
    pub async fn close_client(
        &self,
        system: &str,
        client: &str,
        code: CloseCode,
        reason: &CloseReason,
    ) -> Result<(), GatewayError> {
        if !self.inner.registry.client_exists(system, client).await? {
            self.ensure_system(system).await?;
            return Err(RegistryError::UnknownClient(client.to_owned()).into());
        }
        if let Some(broker) = self.remote_broker(client) {
            return Ok(broker.close_client(system, client, code, reason)?);
        }
        if let Some(conn) = self.inner.connections.get(client) {
            conn.out.close(code, reason.as_str());
        }
        Ok(())
    }

    /// Close a local connection for a reason of the gateway's own (policy, slow consumer, ...).
    pub fn close_local(&self, client: &str, code: impl Into<CloseCode>, reason: &str) {
        if let Some(conn) = self.inner.connections.get(client) {
            conn.out.close(code, reason);
        }
    }

    /// How many connections this node holds.
    pub fn local_connection_count(&self) -> usize {
        self.inner.connections.len()
    }
}

impl Inner {
    /// Give memory back after a wave of disconnects: a `DashMap` keeps its capacity, so 100k
    /// clients that came and went would otherwise pin their table for the process's life.
    /// Shrinking only when the table is under a quarter full keeps this off the common path.
    fn shrink_connections(&self) {
        let len = self.connections.len();
        if len < 1024 && self.connections.capacity() > 4096 && self.connections.capacity() > 4 * len
        {
            self.connections.shrink_to_fit();
        }
    }
}
