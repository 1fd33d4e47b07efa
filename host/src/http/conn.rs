//! The task of one accepted HTTP connection: hyper's HTTP/1 state machine raced against the
//! connection's deadlines, the shutdown signal and the end of the drain.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::metrics::HttpMetrics;
use super::request::{self, RequestContext};
use super::watch::{Watch, WatchedIo};
use crate::config::HttpConfig;

/// What every connection shares.
#[derive(Debug)]
pub struct Shared {
    /// The routes.
    pub router: Router,
    /// hyper's connection settings.
    pub builder: http1::Builder,
    /// Timeouts and caps.
    pub config: HttpConfig,
    /// Counters.
    pub metrics: Arc<HttpMetrics>,
    /// Cancelled on shutdown: finish the request in flight, then close.
    pub stop: CancellationToken,
    /// Cancelled when the drain ends: close now.
    pub cut: CancellationToken,
}

/// Serve `stream` until it closes, is upgraded to a WebSocket (hyper then hands the socket to
/// the upgrade handler and this task ends, releasing `permit`), or a deadline passes.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    permit: OwnedSemaphorePermit,
) {
    shared.metrics.open.inc();
    let watch = Arc::new(Watch::new(
        shared.config.header_read_timeout,
        shared.config.keepalive_timeout,
    ));
    // A peer that connects and sends nothing gets neither hyper's connection state (boxed
    // below, so this task stays small) nor the 8 KiB read buffer hyper allocates on its first
    // read, until its first byte.
    let first_byte = tokio::select! {
        ready = stream.readable() => ready.is_ok().then_some(()),
        kind = watch.expired() => {
            shared.metrics.timeout(kind.label());
            None
        }
        // Nothing was received: on shutdown there is nothing to finish.
        () = shared.stop.cancelled() => None,
    };
    if first_byte.is_some() {
        Box::pin(serve_http(stream, peer, &shared, watch)).await;
    }
    shared.metrics.open.dec();
    drop(permit);
}

/// hyper's side of [`serve`], once the peer has sent something.
async fn serve_http(stream: TcpStream, peer: SocketAddr, shared: &Shared, watch: Arc<Watch>) {
    let ctx = Arc::new(RequestContext {
        router: shared.router.clone(),
        peer,
        watch: watch.clone(),
        body_timeout: shared.config.body_read_timeout,
        metrics: shared.metrics.clone(),
    });
    let service = hyper::service::service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(request::handle(req, ctx).await) }
    });
    let io = TokioIo::new(WatchedIo::new(stream, watch.clone()));
    let conn = shared.builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let expired = watch.expired();
    tokio::pin!(expired);
    let mut draining = false;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(err) = res {
                    debug!(%peer, cause = %err, "HTTP connection ended with an error");
                }
                break;
            }
            () = shared.stop.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            () = shared.cut.cancelled() => {
                shared.metrics.timeout("drain");
                debug!(%peer, "HTTP connection cut at the end of the drain");
                break;
            }
            kind = expired.as_mut() => {
                shared.metrics.timeout(kind.label());
                debug!(%peer, timeout = kind.label(), "HTTP connection timed out");
                break;
            }
        }
    }
}
