//! Assembling and running the gateway: configuration checks, routes, plugin runtime, graceful
//! shutdown. The HTTP connections themselves are served by [`crate::http`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use tokio::net::{TcpListener, TcpSocket};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::cluster::Cluster;
use crate::config::Config;
use crate::gateway::Gateway;
use crate::plugin::{self, PluginHost};
use crate::{api, auth, connection, http};

/// Backlog of the listening socket: a connect storm must not overflow it (tokio's default of
/// 128 costs a one-second SYN retransmit to every client past it).
const LISTEN_BACKLOG: u32 = 4096;

/// Errors starting the gateway.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The plugin runtime could not start.
    #[error("plugin runtime: {0}")]
    Plugins(#[from] plugin::PluginError),
    /// Serving failed.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Cluster mode could not start (Redis unreachable, bad URL).
    #[error("cluster: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
}

/// Refuse configurations that would start a gateway that cannot work as configured.
fn validate(config: &Config) -> Result<(), ServerError> {
    if config
        .api_token
        .as_deref()
        .is_some_and(|t| t.trim().is_empty())
    {
        // No bearer token can match an empty one: the API would be locked for everyone.
        return Err(ServerError::Config(
            "api_token is empty: set a secret, or remove the key to answer loopback callers only"
                .into(),
        ));
    }
    let http = &config.http;
    if http.max_connections == 0 {
        return Err(ServerError::Config(
            "http.max_connections is 0: no HTTP connection could be served".into(),
        ));
    }
    for (key, value) in [
        ("http.header_read_timeout", http.header_read_timeout),
        ("http.body_read_timeout", http.body_read_timeout),
        ("http.keepalive_timeout", http.keepalive_timeout),
    ] {
        if value.is_zero() {
            return Err(ServerError::Config(format!(
                "{key} is 0: every HTTP request would time out"
            )));
        }
    }
    validate_cluster(config)
}

/// Refuse a cluster configuration that cannot work, saying what to write instead.
fn validate_cluster(config: &Config) -> Result<(), ServerError> {
    let Some(url) = config.redis.as_deref() else {
        return Ok(());
    };
    if !url.starts_with("redis://") {
        return Err(ServerError::Config(format!(
            "redis = {url:?}: expected redis://HOST:PORT[/db] (TLS and unix sockets are not supported)"
        )));
    }
    let prefix = &config.redis_prefix;
    if prefix.is_empty() || prefix.len() > 64 || prefix.chars().any(char::is_whitespace) {
        return Err(ServerError::Config(format!(
            "redis_prefix = {prefix:?}: expected 1 to 64 characters without spaces, e.g. \"wasmgate:\""
        )));
    }
    Ok(())
}

/// Scheduler ticks (task polls) between two looks of a runtime worker at the I/O driver and
/// timers; tokio's default is 61.
///
/// Why 1024: with tokio's default, a worker under load asks the I/O driver every 61 polls, and
/// the hundreds of sockets that became readable since are woken into its local queue of 256;
/// the overflow goes to the global queue, which the worker visits rarely, while the clients
/// still in the local queue are answered, send again and are woken again ahead of them.
/// Measured (1000 clients in a closed loop, server on one core, one run each): the least-served
/// client got 0.63 of the median client's replies (Node `ws`: 1.00), native echo p99 132 ms
/// against Node's 19 ms, and the same with every plugin language. With 1024 a worker drains
/// what is ready before it asks again, as Node's event loop does: least ÷ median 0.99, native
/// p99 13 ms (256: 0.92, 24 ms).
///
/// The cost: I/O readiness, timers and tasks that yielded (a guest at its 5 ms epoch tick) are
/// looked at every 1024 polls of a busy worker instead of 61, i.e. after ~5–10 ms of 5–10 µs
/// connection polls, longer when guests run long slices (each lane's poll is at most one 5 ms
/// tick), and at once when the worker runs out of work. And ~6–7 % more CPU per reply in the
/// native echo (five runs each with Node `ws` in every run: 0.62× Node's against 0.58×): the
/// starved clients of 61 let the others run in fewer, larger batches. BENCHMARKS.md (*Plugin
/// path*) has the table.
pub const EVENT_INTERVAL: u32 = 1024;

/// The multi-threaded runtime the gateway runs on: a worker per core, [`EVENT_INTERVAL`].
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .event_interval(EVENT_INTERVAL)
        .build()
}

/// Bind `addr` with a large backlog.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Every route of the gateway. `extra` holds routes of other components (the plugin API) that
/// get the same API authentication.
pub fn app(gateway: Gateway, extra: Router<Gateway>) -> Router {
    let guarded = api::router(gateway.config().max_body_size)
        .merge(api::metrics_router())
        .merge(extra)
        .route_layer(axum::middleware::from_fn_with_state(
            gateway.clone(),
            auth::require_api_auth,
        ));
    let routes = Router::new()
        .route("/api/websocket/ws", get(connection::upgrade))
        .route("/healthz", get(api::healthz))
        .merge(crate::web::router(&gateway))
        .merge(guarded);
    // Routes without API authentication are merged here, before `json_answers`.
    json_answers(routes).with_state(gateway)
}

/// The answers of every route that the framework writes (no route, wrong method, rejections)
/// in JSON `{code,msg}`. Applies to the routes already added, so it comes last.
fn json_answers(routes: Router<Gateway>) -> Router<Gateway> {
    routes
        .fallback(api::not_found)
        .method_not_allowed_fallback(http::answers::method_not_allowed)
        .layer(axum::middleware::map_response(http::answers::json_errors))
}

/// A gateway ready to serve: its handle and its routes.
pub struct Server {
    /// The handle tests and embedders use to act on clients directly.
    pub gateway: Gateway,
    /// The plugin runtime, when a plugins folder is configured.
    pub plugins: Option<Arc<PluginHost>>,
    router: Router,
}

impl Server {
    /// Build the gateway and start its plugin runtime.
    pub async fn build(mut config: Config) -> Result<Self, ServerError> {
        validate(&config)?;
        if config.api_token.is_none() {
            warn!("no api_token configured: the HTTP API answers loopback peers only");
        }
        let gateway = match config.redis.clone() {
            None => Gateway::new(Arc::new(config)).await,
            Some(url) => {
                // The node id is fixed before the gateway exists: the registry writes it next
                // to every client, and every client id carries it.
                let node = *config.node_id.get_or_insert_with(rand::random);
                let cluster = Cluster::connect(&url, &config.redis_prefix, node).await?;
                let registry = cluster.registry(config.limits.clone());
                let (kv, timers) = (cluster.kv(), cluster.timers());
                let gateway = Gateway::with_registry(Arc::new(config), registry.clone()).await;
                gateway.set_shared_kv(kv);
                gateway.set_shared_timers(timers.clone());
                let broker = cluster
                    .start(
                        registry,
                        timers,
                        Arc::new(gateway.clone()),
                        gateway.metrics(),
                        gateway.shutdown_token().clone(),
                    )
                    .await?;
                gateway.set_broker(broker);
                gateway
            }
        };
        let (plugins, extra) = match gateway.config().plugins_dir {
            Some(_) => {
                let host = PluginHost::start(gateway.clone()).await?;
                let routes = plugin::router(host.clone()).with_state(());
                (Some(host), Router::new().merge(routes))
            }
            None => (None, Router::new()),
        };
        // The dashboard's live feed reads the plugins too; it gets the API's authentication.
        let extra = extra.merge(crate::web::events::router(gateway.clone(), plugins.clone()));
        let router = app(gateway.clone(), extra.with_state(()));
        Ok(Self {
            gateway,
            plugins,
            router,
        })
    }

    /// Serve until `shutdown` resolves, then stop accepting and drain for at most
    /// `drain_timeout` in all: clients are closed with 1001 after their queue is flushed, HTTP
    /// requests in flight are answered, and whatever is still open when the time is up is cut,
    /// so a peer stalled mid-request cannot keep a stopping gateway alive.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let gateway = self.gateway;
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, "wasmgate listening");
        }
        let root = gateway.shutdown_token().clone();
        let stop = root.clone();
        tokio::spawn(async move {
            shutdown.await;
            stop.cancel();
        });
        let metrics = Arc::new(http::HttpMetrics::registered(gateway.metrics()));
        let server = http::HttpServer::new(self.router, gateway.config().http.clone(), metrics);
        let connections = server.accept(listener, root).await;
        let deadline = Instant::now() + gateway.config().drain_timeout;
        let tasks = gateway.tasks();
        tasks.close();
        let (cut, clients) = tokio::join!(
            connections.drain(deadline),
            tokio::time::timeout_at(deadline, tasks.wait())
        );
        if cut > 0 {
            warn!(cut, "drain timeout: cut HTTP connections still open");
        }
        if clients.is_err() {
            warn!(
                remaining = tasks.len(),
                "drain timeout: dropping remaining clients"
            );
        }
        info!("wasmgate stopped");
        Ok(())
    }
}

/// Build and serve on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    Server::build(config).await?.serve(listener, shutdown).await
}

/// Resolves when standard input reaches end of file (or fails): the process that started
/// this gateway with a pipe on its stdin has gone (`wasmgate --exit-on-stdin-eof`).
pub async fn stdin_closed() {
    use tokio::io::AsyncReadExt;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
    tracing::info!("standard input closed: shutting down");
}

/// Resolves on ctrl-c (SIGINT) or SIGTERM. The handlers are installed when this is *called*,
/// not when the future is first polled: `serve` logs "wasmgate listening" before its shutdown
/// task runs, and a SIGINT in between used to kill the process with the default action instead
/// of stopping it cleanly (`binary::sigint_stops_cleanly…` failed once on a loaded machine).
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (mut int, mut term) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let int = async {
                match int.as_mut() {
                    Some(s) => drop(s.recv().await),
                    None => drop(tokio::signal::ctrl_c().await),
                }
            };
            let term = async {
                match term.as_mut() {
                    Some(s) => drop(s.recv().await),
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = int => {},
                () = term => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        info!("shutdown signal received");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_settings_are_checked() {
        let mut config = Config::default();
        assert!(validate(&config).is_ok(), "no redis: single node");
        config.redis = Some("localhost:6379".into());
        let err = validate(&config).expect_err("not a redis URL").to_string();
        assert!(err.contains("redis://HOST:PORT"), "{err}");
        config.redis = Some("redis://127.0.0.1:7000/2".into());
        assert!(validate(&config).is_ok());
        config.redis_prefix = "has space".into();
        let err = validate(&config).expect_err("bad prefix").to_string();
        assert!(err.contains("redis_prefix"), "{err}");
    }
}
