//! The [`Gateway`] handle: the one seam through which the HTTP API and plugins act on clients.
//!
//! It joins the [`Registry`] (who is where) with the live connections of this node (where bytes
//! go). Queries that only read the registry go straight to [`Gateway::registry`]; everything that
//! sends, notifies or closes goes through a method here so that notices, metrics and plugin events
//! stay consistent whoever triggers them.

use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::config::Config;
use crate::ids::IdGen;
use crate::metrics::{DropLabels, Metrics};
use crate::outbound::{self, Outbound, OutboundRx};
use crate::registry::{Info, Left, LocalRegistry, Member, Registry, RegistryError};

/// Code of the notice a group's members get when a client joins it.
pub const NOTICE_ONLINE: i64 = 1001;
/// Code of the notice a group's members get when a client leaves it or disconnects.
pub const NOTICE_OFFLINE: i64 = 1002;

/// Errors of gateway operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The registry refused: unknown system, client or group, or a full system.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A close code a server may not send.
    #[error("invalid close code {0}: use 1000 or 3000-4999")]
    InvalidCloseCode(u16),
}

/// A plugin's verdict on a new client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectVerdict {
    /// Let it in.
    Accept,
    /// Close it with this code and reason.
    Reject {
        /// WebSocket close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
}

/// Where client events go: the plugin runtime implements this.
pub trait EventSink: Send + Sync + 'static {
    /// A client connected. `None` when no plugin serves the system (the client is accepted);
    /// otherwise the verdict arrives on the receiver.
    fn connect(&self, system: &str, client: &str) -> Option<oneshot::Receiver<ConnectVerdict>>;
    /// A client sent a message; `false` when no plugin took it (it is dropped and counted).
    fn message(&self, system: &str, client: &str, msg: Message) -> bool;
    /// A client disconnected (it is already out of the registry).
    fn close(&self, system: &str, client: &str, code: u16, reason: &str);
}

/// A message as the seeds push it to a client: `{"messageId","sendUserId","code","msg","data"}`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<'a> {
    /// Unique id of this message, also answered to the API caller.
    pub message_id: &'a str,
    /// Who sent it, as the API caller said.
    pub send_user_id: &'a str,
    /// Application status code.
    pub code: i64,
    /// Application status message.
    pub msg: &'a str,
    /// Application payload, passed through unchanged.
    pub data: &'a Value,
}

impl Envelope<'_> {
    /// The text frame carrying this envelope, serialized once whatever the number of recipients.
    pub fn to_message(&self) -> Message {
        Message::text(serde_json::to_string(self).unwrap_or_default())
    }
}

/// A live connection of this node.
#[derive(Debug)]
struct Connection {
    /// The system it belongs to, checked on every operation so tenants never cross.
    system: Arc<str>,
    /// Its outbound queue.
    out: Outbound,
}

/// Cheap-to-clone handle on the whole gateway.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    registry: Arc<dyn Registry>,
    connections: DashMap<String, Connection>,
    ids: IdGen,
    metrics: Metrics,
    events: OnceLock<Arc<dyn EventSink>>,
    /// Parent of every connection's token: cancelling it closes every client (shutdown).
    root: CancellationToken,
    /// Tracks connection tasks so shutdown can wait for them to drain.
    tasks: TaskTracker,
}

impl Gateway {
    /// A gateway with a local registry, the systems of `config` registered.
    pub async fn new(config: Arc<Config>) -> Self {
        Self::with_registry(config, Arc::new(LocalRegistry::new())).await
    }

    /// A gateway over any registry (a cluster passes a shared one).
    pub async fn with_registry(config: Arc<Config>, registry: Arc<dyn Registry>) -> Self {
        for (name, system) in &config.systems {
            // A fresh local registry cannot refuse a system.
            let _ = registry.register_system(name, system.max_connections).await;
        }
        let node = config.node_id.unwrap_or_else(rand::random);
        Self {
            inner: Arc::new(Inner {
                ids: IdGen::new(node),
                config,
                registry,
                connections: DashMap::new(),
                metrics: Metrics::new(),
                events: OnceLock::new(),
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

    /// The root cancellation token; cancelled when the gateway shuts down.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.root
    }

    /// The tracker of connection tasks.
    pub fn tasks(&self) -> &TaskTracker {
        &self.inner.tasks
    }

    /// Create a system (tenant); `false` when it existed already.
    pub async fn register_system(&self, system: &str) -> Result<bool, GatewayError> {
        let max = self
            .config()
            .systems
            .get(system)
            .and_then(|s| s.max_connections);
        Ok(self.inner.registry.register_system(system, max).await?)
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
        let cfg = self.config();
        let (out, rx) = outbound::channel(
            cfg.max_queue_messages,
            cfg.max_queue_bytes,
            self.inner.root.child_token(),
        );
        self.inner.connections.insert(
            id.clone(),
            Connection {
                system: system.into(),
                out,
            },
        );
        self.inner
            .metrics
            .connections
            .get_or_create(&Metrics::system(system))
            .inc();
        Ok((id, rx))
    }

    /// Ask the plugin serving `system` whether to keep `client`.
    pub fn plugin_connect(
        &self,
        system: &str,
        client: &str,
    ) -> Option<oneshot::Receiver<ConnectVerdict>> {
        self.inner.events.get()?.connect(system, client)
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
    pub fn client_message(&self, system: &str, client: &str, msg: Message) {
        let taken = self
            .inner
            .events
            .get()
            .is_some_and(|sink| sink.message(system, client, msg));
        if !taken {
            self.inner
                .metrics
                .messages_dropped
                .get_or_create(&DropLabels {
                    system: system.to_owned(),
                    reason: "no_plugin".into(),
                })
                .inc();
        }
    }

    /// A client's connection ended: drop it from the registry, notify its groups and its plugin.
    pub async fn disconnect(&self, system: &str, client: &str, code: u16, reason: &str) {
        self.inner.connections.remove(client);
        self.inner
            .metrics
            .connections
            .get_or_create(&Metrics::system(system))
            .dec();
        match self.inner.registry.remove_client(system, client).await {
            Ok(left) => {
                for l in left {
                    self.notify_left(system, client, &l);
                }
            }
            Err(err) => debug!(cause = %err, client, "client already gone from the registry"),
        }
        if let Some(sink) = self.inner.events.get() {
            sink.close(system, client, code, reason);
        }
    }

    /// Count one outbound queue overflow (the client is closed as a slow consumer).
    pub fn count_overflow(&self, system: &str) {
        self.inner
            .metrics
            .queue_overflows
            .get_or_create(&Metrics::system(system))
            .inc();
    }

    // ---- sending -------------------------------------------------------------------------

    /// Queue `msg` to a client of `system` on this node; false when it is not here (or is
    /// closing). Metrics are counted by the callers, once per send rather than per recipient.
    fn push(&self, system: &str, client: &str, msg: &Message) -> bool {
        let Some(conn) = self.inner.connections.get(client) else {
            return false;
        };
        if &*conn.system != system {
            return false;
        }
        match conn.out.push(msg.clone()) {
            Ok(()) => true,
            Err(outbound::QueueError::Overflow) => {
                self.count_overflow(system);
                false
            }
            Err(outbound::QueueError::Closed) => false,
        }
    }

    fn count_out(&self, system: &str, n: usize) {
        if n > 0 {
            self.inner
                .metrics
                .messages_out
                .get_or_create(&Metrics::system(system))
                .inc_by(n as u64);
        }
    }

    fn deliver(&self, system: &str, client: &str, msg: &Message) -> bool {
        let delivered = self.push(system, client, msg);
        self.count_out(system, usize::from(delivered));
        delivered
    }

    fn deliver_all<'a>(
        &self,
        system: &str,
        clients: impl IntoIterator<Item = &'a String>,
        exclude: &[String],
        msg: &Message,
    ) -> usize {
        let n = clients
            .into_iter()
            .filter(|c| !exclude.contains(c))
            .filter(|c| self.push(system, c, msg))
            .count();
        self.count_out(system, n);
        n
    }

    /// Send to one client of `system`; `Ok(false)` when it is closing and the message was not
    /// queued.
    pub async fn send_to_client(
        &self,
        system: &str,
        client: &str,
        msg: Message,
    ) -> Result<bool, GatewayError> {
        if !self.inner.registry.client_exists(system, client).await {
            self.ensure_system(system).await?;
            return Err(RegistryError::UnknownClient(client.to_owned()).into());
        }
        Ok(self.deliver(system, client, &msg))
    }

    /// Send to several clients of `system`; unknown ids are skipped and repeated ids get the
    /// message once. Returns how many got it.
    pub async fn send_to_clients(
        &self,
        system: &str,
        clients: &[String],
        msg: Message,
    ) -> Result<usize, GatewayError> {
        self.ensure_system(system).await?;
        let unique: std::collections::BTreeSet<&String> = clients.iter().collect();
        Ok(self.deliver_all(system, unique, &[], &msg))
    }

    /// Send to every member of a group except `exclude`.
    pub async fn send_to_group(
        &self,
        system: &str,
        group: &str,
        msg: Message,
        exclude: &[String],
    ) -> Result<usize, GatewayError> {
        let members = self.inner.registry.group_clients(system, group).await?;
        Ok(self.deliver_all(system, &members, exclude, &msg))
    }

    /// Send to every client of the system except `exclude`.
    pub async fn send_to_system(
        &self,
        system: &str,
        msg: Message,
        exclude: &[String],
    ) -> Result<usize, GatewayError> {
        let clients = self.inner.registry.clients(system).await?;
        Ok(self.deliver_all(system, &clients, exclude, &msg))
    }

    /// Send to every client bound to `uid`.
    pub async fn send_to_uid(
        &self,
        system: &str,
        uid: &str,
        msg: Message,
    ) -> Result<usize, GatewayError> {
        let clients = self.inner.registry.clients_by_uid(system, uid).await?;
        Ok(self.deliver_all(system, &clients, &[], &msg))
    }

    async fn ensure_system(&self, system: &str) -> Result<(), GatewayError> {
        if self.inner.registry.system_exists(system).await {
            Ok(())
        } else {
            Err(RegistryError::UnknownSystem(system.to_owned()).into())
        }
    }

    // ---- groups, uids, info ----------------------------------------------------------------

    /// Add a client to a group; the group's other members get the online notice (1001).
    pub async fn join_group(
        &self,
        system: &str,
        client: &str,
        group: &str,
        member: Member,
    ) -> Result<(), GatewayError> {
        let joined = self
            .inner
            .registry
            .join_group(system, client, group, member.clone())
            .await?;
        if joined.new {
            self.notify(
                system,
                &joined.others,
                NOTICE_ONLINE,
                "online",
                client,
                &member,
            );
        }
        Ok(())
    }

    /// Remove a client from a group; the remaining members get the offline notice (1002).
    pub async fn leave_group(
        &self,
        system: &str,
        client: &str,
        group: &str,
    ) -> Result<(), GatewayError> {
        let left = self
            .inner
            .registry
            .leave_group(system, client, group)
            .await?;
        self.notify_left(system, client, &left);
        Ok(())
    }

    fn notify_left(&self, system: &str, client: &str, left: &Left) {
        self.notify(
            system,
            &left.others,
            NOTICE_OFFLINE,
            "offline",
            client,
            &left.member,
        );
    }

    fn notify(
        &self,
        system: &str,
        to: &[String],
        code: i64,
        msg: &str,
        client: &str,
        member: &Member,
    ) {
        let enabled = self
            .config()
            .systems
            .get(system)
            .is_none_or(|s| s.group_notices);
        if to.is_empty() || !enabled {
            return;
        }
        let data = serde_json::json!({
            "clientId": client,
            "userId": member.user_id,
            "extend": member.extend,
        });
        let id = self.next_message_id();
        let frame = Envelope {
            message_id: &id,
            send_user_id: "",
            code,
            msg,
            data: &data,
        }
        .to_message();
        self.deliver_all(system, to, &[], &frame);
    }

    /// Bind a uid to a client.
    pub async fn bind_uid(
        &self,
        system: &str,
        client: &str,
        uid: &str,
    ) -> Result<(), GatewayError> {
        Ok(self.inner.registry.bind_uid(system, client, uid).await?)
    }

    /// Remove a client's uid.
    pub async fn unbind_uid(&self, system: &str, client: &str) -> Result<(), GatewayError> {
        self.inner.registry.unbind_uid(system, client).await?;
        Ok(())
    }

    /// Replace a client's info.
    pub async fn set_info(
        &self,
        system: &str,
        client: &str,
        info: Info,
    ) -> Result<(), GatewayError> {
        Ok(self.inner.registry.set_info(system, client, info).await?)
    }

    /// Merge into a client's info.
    pub async fn update_info(
        &self,
        system: &str,
        client: &str,
        info: Info,
    ) -> Result<(), GatewayError> {
        Ok(self
            .inner
            .registry
            .update_info(system, client, info)
            .await?)
    }

    /// Close a client of `system` with `code` (1000 or 3000–4999) and `reason`, after what is
    /// already queued to it has been sent.
    pub async fn close_client(
        &self,
        system: &str,
        client: &str,
        code: u16,
        reason: &str,
    ) -> Result<(), GatewayError> {
        if code != 1000 && !(3000..=4999).contains(&code) {
            return Err(GatewayError::InvalidCloseCode(code));
        }
        if !self.inner.registry.client_exists(system, client).await {
            self.ensure_system(system).await?;
            return Err(RegistryError::UnknownClient(client.to_owned()).into());
        }
        if let Some(conn) = self.inner.connections.get(client) {
            conn.out.close(CloseCode::from(code), reason);
        }
        Ok(())
    }

    /// Close a local connection for a reason of the gateway's own (policy, slow consumer, ...).
    pub fn close_local(&self, client: &str, code: CloseCode, reason: &str) {
        if let Some(conn) = self.inner.connections.get(client) {
            conn.out.close(code, reason);
        }
    }

    /// How many connections this node holds.
    pub fn local_connection_count(&self) -> usize {
        self.inner.connections.len()
    }
}
