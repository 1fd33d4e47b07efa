//! Metrics of the HTTP layer, registered in the gateway's registry next to the core metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::Metrics;

/// Labels of `wasmgate_http_timeouts_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TimeoutLabel {
    /// `header`, `body`, `keepalive` or `drain` (cut at the end of `drain_timeout`).
    pub kind: &'static str,
}

/// Counters and gauges of the accept loop and its connections.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    /// HTTP connections open now (WebSockets leave this count once upgraded).
    pub open: Gauge,
    /// Connections closed at once because `http.max_connections` were open.
    pub refused: Counter,
    /// Failed `accept` calls (most often: out of file descriptors).
    pub accept_errors: Counter,
    /// Connections (or, for `body`, requests) ended by a timeout.
    pub timeouts: Family<TimeoutLabel, Counter>,
}

impl HttpMetrics {
    /// Fresh metrics, registered in `metrics`.
    pub fn registered(metrics: &Metrics) -> Self {
        let this = Self::default();
        metrics.register(|r| {
            r.register(
                "http_connections",
                "Open HTTP connections that are not WebSockets",
                this.open.clone(),
            );
            r.register(
                "http_connections_refused",
                "HTTP connections closed at accept because http.max_connections were open",
                this.refused.clone(),
            );
            r.register(
                "http_accept_errors",
                "Failed accepts (file descriptors exhausted, ...)",
                this.accept_errors.clone(),
            );
            r.register(
                "http_timeouts",
                "HTTP connections or requests ended by a timeout, by kind",
                this.timeouts.clone(),
            );
        });
        this
    }

    /// Count one timeout of `kind`.
    pub fn timeout(&self, kind: &'static str) {
        self.timeouts.get_or_create(&TimeoutLabel { kind }).inc();
    }
}
