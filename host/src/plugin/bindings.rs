//! The one `bindgen!` of the host: Rust types and traits generated from `wit/plugin.wit`, and
//! the conversions between them and the gateway's own types.
//!
//! Imports and exports are async: guest calls run on the tokio runtime's own threads (wasmtime
//! fibers) and a host call that waits (a registry in Redis, the KV turn of a pooled plugin)
//! suspends the guest instead of holding a thread. See `actor.rs`.

use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::gateway::GatewayError;
use crate::registry::{ErrorKind, Info, RegistryError};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: { default: async },
    exports: { default: async },
});

pub(crate) use self::wasmgate::plugin::host::Host;
pub(crate) use self::wasmgate::plugin::types::{Error as WitError, Level, Message as WitMessage};

/// A frame a guest sends, as the gateway queues it (sent as-is, no envelope).
pub(crate) fn to_ws(msg: WitMessage) -> WsMessage {
    match msg {
        WitMessage::Text(text) => WsMessage::text(text),
        WitMessage::Binary(bytes) => WsMessage::binary(bytes),
    }
}

/// A frame a client sent, as the guest receives it; `None` for control frames (never routed).
pub(crate) fn from_ws(msg: &WsMessage) -> Option<WitMessage> {
    match msg {
        WsMessage::Text(text) => Some(WitMessage::Text(text.as_str().to_owned())),
        WsMessage::Binary(bytes) => Some(WitMessage::Binary(bytes.to_vec())),
        _ => None,
    }
}

/// Size in bytes of a guest's message, for the send budget.
pub(crate) fn wit_len(msg: &WitMessage) -> usize {
    match msg {
        WitMessage::Text(text) => text.len(),
        WitMessage::Binary(bytes) => bytes.len(),
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

    /// `Unavailable` is a registry error of no "not found" kind: without its own arm it fell
    /// into `quota-exceeded`, telling a plugin it over-used something when Redis was down.
    #[test]
    fn an_unavailable_registry_is_the_wit_unavailable() {
        let err = GatewayError::Registry(RegistryError::Unavailable("redis down".into()));
        assert!(matches!(to_wit_error(err), WitError::Unavailable(m) if m.contains("redis down")));
    }
}
