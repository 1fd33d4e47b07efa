//! `wasmgate-guest`: write wasmgate plugins in Rust.
//!
//! A plugin is a WebAssembly component implementing the `wasmgate:plugin@0.2.0` world. The
//! contract ships inside this crate (`wit/plugin.wit`, a copy of the repository's
//! `wit/0.2.0/plugin.wit`; its WIT package file is `wit/wasmgate-plugin-0.2.0.wasm` in the
//! repository). This crate generates the bindings once and puts an ergonomic layer on top:
//!
//! - [`Plugin`]: a trait with one handler per event, all defaulted, and
//!   [`export_plugin!`] to export a type implementing it;
//! - [`host`]: typed wrappers for every host call, returning [`Result<_, Error>`](Error);
//! - [`Router`]: routes JSON event frames `{"event":"name","data":…}` to handlers, with
//!   [`reply`] helpers for `{"event","code","msg","data"}` answers;
//! - `log_trace!` … `log_error!`: `format!`-style logging into the gateway's log;
//! - [`types`]: every WIT type, from one place. Import them from here (or the [`prelude`]), not
//!   from both [`bindings`] and `bindings::wasmgate::plugin::types`: the world re-exports some
//!   of them as aliases, and two glob imports of the same names are ambiguous in Rust.
//!
//! Build a plugin crate as a `cdylib` for `wasm32-wasip2`; the `.wasm` file cargo writes is
//! the component the gateway loads. See `plugins/README-rust.md` for the step by step.
//!
//! ```no_run
//! use serde_json::{Value, json};
//! use wasmgate_guest::prelude::*;
//!
//! #[derive(Default)]
//! struct Hello;
//!
//! impl Hello {
//!     fn hello(&mut self, client: &str, data: Value) -> HandlerResult {
//!         let name = data["name"].as_str().unwrap_or("stranger");
//!         let visits = host::kv_incr(&format!("visits:{name}"), 1)?;
//!         reply_ok(client, "hello", &json!({ "greeting": format!("hello {name}"), "visits": visits }))?;
//!         Ok(())
//!     }
//! }
//!
//! impl Plugin for Hello {
//!     fn on_connect(&mut self, client: &str, ctx: &ConnectContext) -> Result<(), Reject> {
//!         let room = ctx.query_param("room").unwrap_or("lobby");
//!         log_info!("{client} connected to {} for {room}", host::system_id());
//!         host::join_group(client, room).map_err(|e| Reject::new(4000, e.to_string()))
//!     }
//!
//!     fn on_message(&mut self, client: &str, msg: Message) {
//!         Router::new().on("hello", Hello::hello).dispatch(self, client, &msg);
//!     }
//! }
//!
//! export_plugin!(Hello);
//! # fn main() {}
//! ```
//!
//! On a native target the crate compiles (so `cargo test` and doc tests build), but host calls
//! panic: only the pure parts (routing, envelopes, conversions) run natively.

pub mod bindings;
mod error;
pub mod host;
mod log;
mod message;
mod plugin;
pub mod reply;
mod router;

pub use error::Error;
pub use message::{CloseReason, ConnectContext, Level, Member, Message, Reject, Timer};

/// Every type of the WIT `types` interface, under one name each. The SDK's own paths
/// ([`Message`], [`ConnectContext`], …) are these same types.
pub mod types {
    pub use crate::bindings::wasmgate::plugin::types::*;
}

/// The contract this SDK implements.
pub const WIT_PACKAGE: &str = "wasmgate:plugin@0.2.0";
pub use plugin::Plugin;
pub use router::{
    ErrorHook, EventError, Fallback, Handler, HandlerResult, Outcome, Router, Unrouted,
    default_error_hook, default_fallback, parse_event,
};

/// A client id: opaque, unique across the cluster and across restarts.
pub type ClientId = String;

/// Everything a typical plugin needs: `use wasmgate_guest::prelude::*;`.
pub mod prelude {
    pub use crate::reply::{
        push, push_to_group, push_to_uid, reply_error, reply_error_code, reply_ok,
    };
    pub use crate::{
        CloseReason, ConnectContext, Error, EventError, HandlerResult, Level, Member, Message,
        Plugin, Reject, Router, Timer, Unrouted, export_plugin, host, log_debug, log_error,
        log_info, log_trace, log_warn,
    };
}

/// Glue used by [`export_plugin!`]; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::plugin::{Slot, init, with_plugin};
}

#[cfg(test)]
mod tests {
    /// The WIT shipped in the crate is the repository's released 0.2.0 contract, byte for byte.
    #[test]
    fn the_shipped_wit_is_the_released_contract() {
        let shipped = include_str!("../wit/plugin.wit");
        let released = include_str!("../../wit/0.2.0/plugin.wit");
        assert_eq!(
            shipped, released,
            "copy wit/0.2.0/plugin.wit to guest-sdk/wit/"
        );
        assert!(shipped.contains(&format!("package {};", super::WIT_PACKAGE)));
    }
}
