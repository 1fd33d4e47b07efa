//! wasmgate: a WebSocket gateway whose business logic lives in hot-swappable WebAssembly components.
//!
//! The host owns the sockets ([`connection`]), the registry of systems, groups, clients, uids and
//! per-client info ([`registry`]), and the HTTP API ([`api`]). Everything that acts on clients goes
//! through one seam, the [`gateway::Gateway`] handle, which both the HTTP API and the plugin runtime
//! ([`plugin`]) call.

pub mod api;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod dev;
pub mod direct_io;
pub mod domain;
pub mod events;
pub mod gateway;
pub mod http;
pub mod ids;
pub mod metrics;
pub mod outbound;
pub mod plugin;
pub mod ratelimit;
pub mod registry;
pub mod server;
pub mod telemetry;
pub mod web;
pub mod wire;

pub use config::Config;
pub use gateway::Gateway;
