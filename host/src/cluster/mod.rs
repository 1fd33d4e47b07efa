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

use tokio_tungstenite::tungstenite::Message;

use crate::domain::close::{CloseCode, CloseReason};
use crate::registry::RegistryError;

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
}

#[cfg(test)]
mod seam_tests;
