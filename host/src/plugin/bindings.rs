//! The host's `bindgen!`s, one module per released contract (like Spin's): [`v0_2`] from
//! `wit/0.2.0`, [`v0_1`] from `wit/0.1.0` (a released WIT is never edited), and the
//! conversions between the 0.2 types and the gateway's own. The 0.1 host calls delegate to the
//! 0.2 ones (`compat.rs`); `world.rs` tells which contract a component targets.
//!
//! Imports and exports are async: guest calls run on the tokio runtime's own threads (wasmtime
//! fibers) and a host call that waits (a registry in Redis, the KV turn of a pooled plugin)
//! suspends the guest instead of holding a thread. See `actor.rs`.

use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::gateway::GatewayError;
use crate::registry::{ErrorKind, Info, RegistryError};

/// Contract 0.2.0, the current one.
pub(crate) mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../wit/0.2.0",
        world: "plugin",
        imports: { default: async },
        exports: { default: async },
    });
}

/// Contract 0.1.0, still served: its host calls delegate to 0.2's.
pub(crate) mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0",
        world: "plugin",
        imports: { default: async },
        exports: { default: async },
    });
}

pub(crate) use self::v0_2::wasmgate::plugin::host::Host;
pub(crate) use self::v0_2::wasmgate::plugin::types::{
    CloseReason, ConnectContext as WitConnectContext, Error as WitError, Level,
    Member as WitMember, Message as WitMessage, Reject, Timer as WitTimer,
};

/// A frame a guest sends, as the gateway queues it (sent as-is, no envelope).
pub(crate) fn to_ws(msg: WitMessage) -> WsMessage {
    match msg {
        WitMessage::Text(text) => WsMessage::text(text),
        WitMessage::Binary(bytes) => WsMessage::binary(bytes),
    }
}

/// Largest buffer [`Inbound`] keeps from one message to the next; a larger frame's is freed
/// after its call, so a lane holds at most this much per kind between messages. Chat and game
/// messages are well under it, and a rare large frame costs one allocation, as every frame
/// did before.
const INBOUND_KEEP: usize = 4096;

/// The buffers a lane copies client frames into for its guest, reused from one message to the
/// next: once they have grown, handing a frame to the guest allocates nothing (it was a
/// `String` allocated and freed per message).
#[derive(Debug, Default)]
pub(crate) struct Inbound {
    text: String,
    binary: Vec<u8>,
}

impl Inbound {
    /// A frame a client sent, as the guest receives it, in this lane's buffer; `None` for
    /// control frames (never routed). Hand it back with [`Inbound::reuse`] after the call.
    pub(crate) fn fill(&mut self, msg: &WsMessage) -> Option<WitMessage> {
        match msg {
            WsMessage::Text(text) => {
                let mut buf = std::mem::take(&mut self.text);
                buf.clear();
                buf.push_str(text.as_str());
                Some(WitMessage::Text(buf))
            }
            WsMessage::Binary(bytes) => {
                let mut buf = std::mem::take(&mut self.binary);
                buf.clear();
                buf.extend_from_slice(bytes);
                Some(WitMessage::Binary(buf))
            }
            _ => None,
        }
    }

    /// Keep `msg`'s buffer for the next frame, unless it is over [`INBOUND_KEEP`].
    pub(crate) fn reuse(&mut self, msg: WitMessage) {
        match msg {
            WitMessage::Text(buf) if buf.capacity() <= INBOUND_KEEP => self.text = buf,
            WitMessage::Binary(buf) if buf.capacity() <= INBOUND_KEEP => self.binary = buf,
            _ => {}
        }
    }
}

/// Size in bytes of a guest's message, for the send budget.
pub(crate) fn wit_len(msg: &WitMessage) -> usize {
    match msg {
        WitMessage::Text(text) => text.len(),
        WitMessage::Binary(bytes) => bytes.len(),
    }
}

/// The gateway's connect context as a 0.2 guest receives it.
pub(crate) fn to_wit_context(ctx: crate::gateway::ConnectContext) -> WitConnectContext {
    WitConnectContext {
        query: ctx.query,
        headers: ctx.headers,
        peer: ctx.peer,
        uid: ctx.uid,
        claims: ctx.claims,
    }
}

/// A WIT info list as the registry's map (later duplicates win).
pub(crate) fn to_info(info: Vec<(String, String)>) -> Info {
    info.into_iter().collect()
}

/// The registry's info map as a WIT list (sorted by key).
pub(crate) fn from_info(info: Info) -> Vec<(String, String)> {
    info.into_iter().collect()
}

/// A refused host call as the guest sees it (the same answer the test kit gives).
impl From<super::rules::Refusal> for WitError {
    fn from(r: super::rules::Refusal) -> Self {
        match r {
            super::rules::Refusal::InvalidArgument(m) => WitError::InvalidArgument(m),
            super::rules::Refusal::QuotaExceeded(m) => WitError::QuotaExceeded(m),
        }
    }
}

/// The WIT error a guest sees for a failed gateway operation: the same classes and messages
/// as the HTTP API (400 → `invalid-argument`, 413/429 → `quota-exceeded`).
pub(crate) fn to_wit_error(err: GatewayError) -> WitError {
    match err {
        GatewayError::Registry(RegistryError::UnknownClient(c)) => WitError::UnknownClient(c),
        GatewayError::Registry(e @ RegistryError::NotInGroup { .. }) => {
            WitError::InvalidArgument(e.to_string())
        }
        GatewayError::Registry(e @ RegistryError::Unavailable(_)) => {
            WitError::Unavailable(e.to_string())
        }
        GatewayError::Registry(e) if e.kind() != ErrorKind::NotFound => {
            WitError::QuotaExceeded(e.to_string())
        }
        e @ (GatewayError::Name(_) | GatewayError::Close(_)) => {
            WitError::InvalidArgument(e.to_string())
        }
        e @ GatewayError::Queue(_) => WitError::QuotaExceeded(e.to_string()),
        other => WitError::Unavailable(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lane hands every frame to its guest in the same buffer, whatever it held before, and
    /// does not keep one grown past `INBOUND_KEEP`.
    #[test]
    fn frames_reach_the_guest_in_a_reused_buffer() {
        let mut inbound = Inbound::default();
        let first = inbound.fill(&WsMessage::text("hello")).expect("text");
        let WitMessage::Text(buf) = &first else {
            panic!("{first:?}")
        };
        let at = buf.as_ptr();
        inbound.reuse(first);
        let second = inbound.fill(&WsMessage::text("hi")).expect("text");
        let WitMessage::Text(buf) = &second else {
            panic!("{second:?}")
        };
        assert_eq!(
            (buf.as_str(), buf.as_ptr()),
            ("hi", at),
            "same buffer, new contents"
        );
        inbound.reuse(second);
        let bin = inbound
            .fill(&WsMessage::binary(vec![1, 2]))
            .expect("binary");
        assert!(matches!(&bin, WitMessage::Binary(b) if b == &[1, 2]));
        inbound.reuse(bin);
        assert!(inbound.fill(&WsMessage::Ping(Default::default())).is_none());
        let big = inbound
            .fill(&WsMessage::text("x".repeat(INBOUND_KEEP + 1)))
            .expect("text");
        inbound.reuse(big);
        assert_eq!(
            inbound.text.capacity(),
            0,
            "a big frame's buffer is not kept"
        );
    }

    /// `Unavailable` is a registry error of no "not found" kind: without its own arm it fell
    /// into `quota-exceeded`, telling a plugin it over-used something when Redis was down.
    #[test]
    fn an_unavailable_registry_is_the_wit_unavailable() {
        let err = GatewayError::Registry(RegistryError::Unavailable("redis down".into()));
        assert!(matches!(to_wit_error(err), WitError::Unavailable(m) if m.contains("redis down")));
    }
}
