//! What the gateway tells the component that handles client events (the plugin runtime), and
//! what it answers. The gateway depends on this trait only, never on the plugin runtime.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

use crate::outbound::OutboundRx;

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

/// How a client connected, as the plugin's `on-connect` sees it (WIT 0.2.0 `connect-context`).
/// Built once per connection from the upgrade request, handed to the plugin with the connect
/// event and dropped then: an idle connection does not keep it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectContext {
    /// Query parameters of the upgrade request, decoded, in order, without `token`.
    pub query: Vec<(String, String)>,
    /// The request headers listed in `plugin.connect_headers` (lower-case names).
    pub headers: Vec<(String, String)>,
    /// The TCP peer, `ip:port` (empty when unknown).
    pub peer: String,
    /// The uid bound at connect (the token's `sub`).
    pub uid: Option<String>,
    /// The verified token's claims as a JSON object text, when the system requires a token.
    pub claims: Option<String>,
}

/// Resolves when a held client may send again.
pub type Room = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What became of a client's message.
#[non_exhaustive]
pub enum Taken {
    /// No plugin serves the system: the message is dropped (the gateway counts it).
    NoPlugin,
    /// Queued for the plugin.
    Queued,
    /// Queued, but the client reached its share of the plugin's queue (or the queue is full):
    /// read nothing more from it until the future resolves. Nothing is dropped, the sender is
    /// slowed (`plugin.client_queue_share`).
    Hold(Room),
    /// Not queued: the plugin was idle, and this future makes the call from the caller's task
    /// (`plugin/actor.rs`, direct calls). The connection runs it to its end before it reads
    /// the client again; dropping it half-way would cost the instance.
    Call(Call),
}

/// A plugin call made by the task that read the message.
pub type Call = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A pending plugin timer: plugin, id, system, payload, bound client, due time (ms since the
/// epoch).
pub type PendingTimer = (
    String,
    u64,
    std::sync::Arc<str>,
    String,
    Option<String>,
    u64,
);

/// Where client events go: the plugin runtime implements this.
pub trait EventSink: Send + Sync + 'static {
    /// A client connected. `None` when no plugin serves the system (the client is accepted);
    /// otherwise the verdict arrives on the receiver.
    fn connect(
        &self,
        system: &str,
        client: &str,
        context: Box<ConnectContext>,
    ) -> Option<oneshot::Receiver<ConnectVerdict>>;
    /// A client sent a message. `from` is the client's own queue: a reply to the sender from a
    /// call made now is pushed to it without a lookup (see `Gateway::send_to_own`).
    fn message(&self, system: &str, client: &str, msg: Message, from: &OutboundRx) -> Taken;
    /// A client disconnected (it is already out of the registry).
    fn close(&self, system: &str, client: &str, code: u16, reason: &str);
    /// Whether a plugin is configured to serve `system` (such a system cannot be unregistered:
    /// the plugin would keep routing to it). The default serves nothing.
    fn serves(&self, _system: &str) -> bool {
        false
    }
    /// Run timer `id` of `plugin`, set on a node that died, after `delay` (cluster mode):
    /// `false` when no such plugin runs here. The default runs nothing.
    fn adopt_timer(
        &self,
        plugin: &str,
        id: u64,
        system: &str,
        payload: String,
        client: Option<String>,
        delay: std::time::Duration,
    ) -> bool {
        let _ = (plugin, id, system, payload, client, delay);
        false
    }
    /// Every pending timer: plugin, id, system, payload, bound client, due time (ms since the
    /// epoch). The default has none.
    fn pending_timers(&self) -> Vec<PendingTimer> {
        Vec::new()
    }
}
