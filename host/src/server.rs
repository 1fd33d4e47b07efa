//! Assembling and running the gateway: routes, plugin runtime, graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use tokio::net::{TcpListener, TcpSocket};
use tracing::{info, warn};

use crate::config::Config;
use crate::gateway::Gateway;
use crate::plugin::{self, PluginHost};
use crate::{api, auth, connection};

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
    Router::new()
        .route("/api/websocket/ws", get(connection::upgrade))
        .route("/healthz", get(api::healthz))
        .merge(guarded)
        .fallback(api::not_found)
        .with_state(gateway)
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
    pub async fn build(config: Config) -> Result<Self, ServerError> {
        if config.api_token.is_none() {
            warn!("no api_token configured: the HTTP API answers loopback peers only");
        }
        let gateway = Gateway::new(Arc::new(config)).await;
        let (plugins, extra) = match gateway.config().plugins_dir {
            Some(_) => {
                let host = PluginHost::start(gateway.clone()).await?;
                let routes = plugin::router(host.clone()).with_state(());
                (Some(host), Router::new().merge(routes))
            }
            None => (None, Router::new()),
        };
        let router = app(gateway.clone(), extra.with_state(()));
        Ok(Self {
            gateway,
            plugins,
            router,
        })
    }

    /// Serve until `shutdown` resolves, then stop accepting, close every client with 1001 after
    /// flushing its queue, and wait for them at most `drain_timeout`.
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
        axum::serve(
            listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { root.cancelled().await })
        .await?;
        let tasks = gateway.tasks();
        tasks.close();
        let drain = gateway.config().drain_timeout;
        if tokio::time::timeout(drain, tasks.wait()).await.is_err() {
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

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    info!("shutdown signal received");
}
