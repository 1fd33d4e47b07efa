//! `wasmgate-guest`: write wasmgate plugins in Rust.
//!
//! A plugin is a WebAssembly component implementing the `wasmgate:plugin@0.1.0` world
//! (`wit/plugin.wit`). This crate generates the bindings once and puts an ergonomic layer on top:
//!
//! - [`Plugin`]: a trait with one handler per event, all defaulted, and
//!   [`export_plugin!`] to export a type implementing it;
//! - [`host`]: typed wrappers for every host call, returning [`Result<_, Error>`](Error);
//! - [`Router`]: routes JSON event frames `{"event":"name","data":…}` to handlers, with
//!   [`reply`] helpers for `{"event","code","msg","data"}` answers;
//! - `log_trace!` … `log_error!`: `format!`-style logging into the gateway's log.
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
//!     fn on_connect(&mut self, client: &str) -> Result<(), Reject> {
//!         log_info!("{client} connected to {}", host::system_id());
//!         Ok(())
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
pub use message::{CloseReason, Level, Message, Reject};
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
        CloseReason, Error, EventError, HandlerResult, Level, Message, Plugin, Reject, Router,
        Unrouted, export_plugin, host, log_debug, log_error, log_info, log_trace, log_warn,
    };
}

/// Glue used by [`export_plugin!`]; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::plugin::{Slot, init, with_plugin};
}
