//! `wasmgate-testkit`: test a wasmgate plugin without a gateway, sockets or waiting.
//!
//! A [`Sim`] loads a plugin component (`wasmgate:plugin@0.2.0`, any language) and plays the
//! gateway for one system: clients connect (with a connect context), send frames and leave;
//! what the plugin sends, closes and logs is recorded per client; the registry (groups with
//! member data and their 1001/1002 notices, uids, info maps) and the key-value store behave as
//! the gateway's do; and time is a virtual clock: [`Sim::advance`] fires the timers that fall
//! due, in order, at once. A quiz round of 20 s runs in microseconds.
//!
//! ```no_run
//! use wasmgate_testkit::{Frame, Sim};
//!
//! # fn main() -> Result<(), wasmgate_testkit::KitError> {
//! let mut sim = Sim::builder("target/wasm32-wasip2/release/hello.wasm")
//!     .system("hello")
//!     .config(r#"{"greeting":"hi"}"#)
//!     .build()?;
//! let ann = sim.connect()?;
//! sim.send_text(&ann, r#"{"event":"hello","data":{"name":"ann"}}"#)?;
//! let frames = sim.take_received(&ann);
//! assert!(matches!(&frames[..], [Frame::Text(t)] if t.contains("hello ann")));
//! sim.advance_ms(5_000)?; // fire the timers due in the next 5 s
//! # Ok(())
//! # }
//! ```
//!
//! Limits are the gateway's, from its own rules (`wasmgate::plugin::rules`): names, member
//! data, close codes and reasons, info maps, groups per client and per system, key-value keys,
//! values and quotas, timer delays, payloads and counts, the send and log budgets of an event,
//! reject codes, the memory cap. They are the default gateway's unless
//! [`SimBuilder::gateway_config`] gives a configuration. What it does not simulate: call
//! deadlines (a fuel budget here), queue bounds, several instances, other systems, and the
//! cluster. Events are handled one at a time, like one instance; a close requested by the
//! plugin (`close-client`) is delivered as `on-close` after the event that asked for it.
//!
//! The command line runner (`wasmgate-testkit run plugin.wasm scenario.json`) drives the same
//! simulation from a scenario file, so JavaScript, Python and C authors can test too: see
//! [`scenario`].

mod bindings;
mod host;
pub mod scenario;
mod sim;
mod state;

pub use bindings::wasmgate::plugin::types::{ConnectContext, Member};
pub use sim::{Sim, SimBuilder, empty_context};
pub use state::{Frame, LogLine};

/// What can go wrong driving a simulation.
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    /// The component could not be read, compiled or linked, or is not a 0.2.0 plugin.
    #[error("load: {0}")]
    Load(String),
    /// `init` returned an error or trapped.
    #[error("init: {0}")]
    Init(String),
    /// A handler trapped (the simulation instantiates the plugin again for the next event, as
    /// the gateway does; the trap is also listed by [`Sim::traps`]).
    #[error("trap in {event}: {cause}")]
    Trap {
        /// `on-connect`, `on-message`, ...
        event: &'static str,
        /// The trap.
        cause: String,
    },
    /// The client is not connected.
    #[error("unknown client: {0}")]
    UnknownClient(String),
    /// The plugin rejected the client in `on-connect`.
    #[error("rejected with {code}: {reason}")]
    Rejected {
        /// The close code (already made one a server may send, like the gateway does).
        code: u16,
        /// The close reason.
        reason: String,
    },
}
