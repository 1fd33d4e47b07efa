//! The HTTP layer under the router: our own accept loop on hyper's HTTP/1 connection, with the
//! timeouts and caps an outsider must not be able to get around.
//!
//! | limit | default (key) | when hit |
//! |---|---|---|
//! | header section of a request | 10 s (`http.header_read_timeout`), from the accept or the first byte of a request | connection closed |
//! | idle keep-alive connection | 60 s (`http.keepalive_timeout`) | connection closed |
//! | whole request body | 30 s (`http.body_read_timeout`), from the end of the header section | 408 JSON, then closed |
//! | open HTTP connections that are not WebSockets | 4096 (`http.max_connections`) | new ones closed at accept, `wasmgate_http_connections_refused_total` |
//! | request target | 8 KiB | 414 JSON |
//! | header section | 32 KiB; 64 KiB hard | 431 JSON; past the hard cap hyper's own 431, empty body |
//! | shutdown | `drain_timeout` | connections still open are cut |
//!
//! A WebSocket leaves the HTTP connection count when it is upgraded (its own limits are the
//! systems' `max_connections`). Every error answer written here or by the framework is JSON
//! `{"code","msg"}` ([`answers`]).

pub mod answers;
mod conn;
mod metrics;
pub mod request;
mod serve;
mod watch;

pub use metrics::HttpMetrics;
pub use serve::{Connections, HttpServer};
pub(crate) use watch::WatchedIo;
