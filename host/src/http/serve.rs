//! The accept loop: caps concurrent HTTP connections, survives running out of file descriptors,
//! and on shutdown drains the open connections for a bounded time.
//!
//! Replaces `axum::serve`, which has no timeout of any kind: 8000 connections that sent
//! nothing stayed open for good (RSS 11 → 132 MB), 16k took every file descriptor, and one peer
//! stalled mid-request kept a stopping gateway alive for as long as it liked.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::conn::{self, Shared};
use super::metrics::HttpMetrics;
use super::request::HARD_HEAD_BYTES;
use crate::config::HttpConfig;

/// Pause after a failed accept. When file descriptors run out, `accept` fails at once and
/// would spin; the pause lets connections close, and the loop answers again as soon as one
/// descriptor is free.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// At most one warning per this period for failed accepts and refused connections (a flood
/// would otherwise write one line per attempt); the others are counted in the next warning.
const WARN_PERIOD: Duration = Duration::from_secs(1);

/// How long, after the drain has cut the connections, their tasks get to finish.
const CUT_GRACE: Duration = Duration::from_millis(100);

/// The HTTP server: routes, settings, counters.
#[derive(Debug)]
pub struct HttpServer {
    router: Router,
    config: HttpConfig,
    metrics: Arc<HttpMetrics>,
}

/// The connections still open when the accept loop stopped.
#[derive(Debug)]
pub struct Connections {
    tracker: TaskTracker,
    cut: CancellationToken,
}

impl HttpServer {
    /// A server of `router` with `config`, counting into `metrics`.
    pub fn new(router: Router, config: HttpConfig, metrics: Arc<HttpMetrics>) -> Self {
        Self {
            router,
            config,
            metrics,
        }
    }

    /// Accept until `stop` is cancelled; each connection is then asked to close once its request
    /// in flight is answered. Returns the connections still open, to [`Connections::drain`].
    pub async fn accept(self, listener: TcpListener, stop: CancellationToken) -> Connections {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            // Deadlines between requests are the connection's own (`http::watch`): hyper's
            // header timer would also bound the keep-alive idle time.
            .header_read_timeout(None)
            .keep_alive(true)
            .max_buf_size(HARD_HEAD_BYTES)
            .max_header_size(HARD_HEAD_BYTES);
        let cut = CancellationToken::new();
        let shared = Arc::new(Shared {
            router: self.router,
            builder,
            config: self.config.clone(),
            metrics: self.metrics.clone(),
            stop: stop.clone(),
            cut: cut.clone(),
        });
        let slots = Arc::new(Semaphore::new(self.config.max_connections));
        let tracker = TaskTracker::new();
        let mut refused_log = RateLimitedWarn::default();
        let mut error_log = RateLimitedWarn::default();
        loop {
            let accepted = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        // Closing costs us nothing; keeping it would cost a descriptor.
                        drop(stream);
                        self.metrics.refused.inc();
                        if let Some(suppressed) = refused_log.ready(Instant::now()) {
                            warn!(
                                max_connections = self.config.max_connections,
                                suppressed, "HTTP connection cap reached: closing new connections"
                            );
                        }
                        continue;
                    };
                    if let Err(err) = stream.set_nodelay(true) {
                        debug!(%peer, cause = %err, "TCP_NODELAY");
                    }
                    tracker.spawn(conn::serve(stream, peer, shared.clone(), permit));
                }
                Err(err) => {
                    self.metrics.accept_errors.inc();
                    if let Some(suppressed) = error_log.ready(Instant::now()) {
                        warn!(cause = %err, suppressed, "accept failed; retrying shortly");
                    }
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
            }
        }
        drop(listener);
        tracker.close();
        Connections { tracker, cut }
    }
}

impl Connections {
    /// Wait until every connection has closed or `deadline` passes; then close the rest at
    /// once. Returns how many were cut.
    pub async fn drain(self, deadline: Instant) -> usize {
        if tokio::time::timeout_at(deadline, self.tracker.wait())
            .await
            .is_ok()
        {
            return 0;
        }
        let remaining = self.tracker.len();
        self.cut.cancel();
        let _ = tokio::time::timeout(CUT_GRACE, self.tracker.wait()).await;
        remaining
    }
}

/// Lets one warning through per [`WARN_PERIOD`], reporting how many were held back.
#[derive(Debug, Default)]
struct RateLimitedWarn {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedWarn {
    /// `Some(suppressed since the last warning)` when a warning may be written `now`.
    fn ready(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|last| now < last + WARN_PERIOD) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_rate_limited() {
        let mut log = RateLimitedWarn::default();
        let t0 = Instant::now();
        assert_eq!(log.ready(t0), Some(0));
        assert_eq!(log.ready(t0), None);
        assert_eq!(log.ready(t0 + WARN_PERIOD / 2), None);
        assert_eq!(log.ready(t0 + WARN_PERIOD), Some(2));
        assert_eq!(log.ready(t0 + WARN_PERIOD), None);
    }
}
