//! Prometheus metrics, one registry per gateway (so tests can run several gateways in a process).

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of per-system metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SystemLabel {
    /// The system (tenant).
    pub system: String,
}

/// Every `reason` of `wasmgate_messages_dropped_total`: the series of an unregistered system
/// are removed by label, so a new reason must be listed here.
pub const DROP_REASONS: &[&str] = &["no_plugin", "plugin_queue_full"];

/// Labels of dropped-message counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    /// The system (tenant).
    pub system: String,
    /// Why: `no_plugin`, `plugin_queue_full`, ...
    pub reason: String,
}

/// Labels of disconnect counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DisconnectLabels {
    /// Why the connection ended, one of a fixed set (`connection::EndKind::label`): `abnormal`
    /// (1006, no close frame), `client_closed`, `slow_consumer`, `too_big`, ...
    pub reason: &'static str,
}

/// Labels of API metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// The operation, e.g. `send_to_group`; `unknown` for routes that do not exist.
    pub op: String,
    /// The HTTP status answered.
    pub status: u16,
}

/// Labels of API latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    /// The operation.
    pub op: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.00005, 2.0, 16))
}

/// Every metric of the gateway core. Plugin metrics are added through [`Metrics::register`].
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Connected clients per system.
    pub connections: Family<SystemLabel, Gauge>,
    /// Frames received from clients.
    pub messages_in: Family<SystemLabel, Counter>,
    /// Messages queued to clients.
    pub messages_out: Family<SystemLabel, Counter>,
    /// Client messages that no plugin handled.
    pub messages_dropped: Family<DropLabels, Counter>,
    /// Clients closed because their outbound queue overflowed.
    pub queue_overflows: Family<SystemLabel, Counter>,
    /// Connections ended, by why (not by system: the set of reasons is fixed and small).
    pub disconnects: Family<DisconnectLabels, Counter>,
    /// Connections refused (unknown system, bad token, system full).
    pub connects_refused: Family<SystemLabel, Counter>,
    /// API calls by operation and status.
    pub api_calls: Family<ApiLabels, Counter>,
    /// API latency by operation.
    pub api_latency: Family<OpLabel, Histogram, fn() -> Histogram>,
    /// `messages_out` of each system, looked up once: a send (every plugin reply) must not
    /// build a label (`String`) to find its counter. foldhash rather than SipHash, as for the
    /// connections map: system names are the operator's (the config or the HTTP API), never a
    /// client's.
    out_by_system: dashmap::DashMap<Box<str>, Counter, foldhash::fast::RandomState>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics in a fresh registry.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("wasmgate");
        let connections = Family::<SystemLabel, Gauge>::default();
        let messages_in = Family::<SystemLabel, Counter>::default();
        let messages_out = Family::<SystemLabel, Counter>::default();
        let messages_dropped = Family::<DropLabels, Counter>::default();
        let queue_overflows = Family::<SystemLabel, Counter>::default();
        let disconnects = Family::<DisconnectLabels, Counter>::default();
        let connects_refused = Family::<SystemLabel, Counter>::default();
        let api_calls = Family::<ApiLabels, Counter>::default();
        let api_latency = Family::<OpLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register("connections", "Connected clients", connections.clone());
        registry.register(
            "messages_in",
            "Frames received from clients",
            messages_in.clone(),
        );
        registry.register(
            "messages_out",
            "Messages queued to clients",
            messages_out.clone(),
        );
        registry.register(
            "messages_dropped",
            "Client messages no plugin handled",
            messages_dropped.clone(),
        );
        registry.register(
            "queue_overflows",
            "Clients closed as slow consumers",
            queue_overflows.clone(),
        );
        registry.register(
            "disconnects",
            "WebSocket connections ended, by reason",
            disconnects.clone(),
        );
        registry.register(
            "connects_refused",
            "WebSocket connections refused",
            connects_refused.clone(),
        );
        registry.register("api_calls", "HTTP API calls", api_calls.clone());
        registry.register(
            "api_latency_seconds",
            "HTTP API latency",
            api_latency.clone(),
        );
        Self {
            out_by_system: dashmap::DashMap::default(),
            registry: Mutex::new(registry),
            connections,
            messages_in,
            messages_out,
            messages_dropped,
            queue_overflows,
            disconnects,
            connects_refused,
            api_calls,
            api_latency,
        }
    }

    /// Add metrics of another component (the plugin runtime) to this registry.
    pub fn register(&self, f: impl FnOnce(&mut Registry)) {
        f(&mut self.registry.lock());
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry.lock());
        out
    }

    /// Remove every series labelled with `system` (it was unregistered): without this, each
    /// system ever registered kept five series, and /metrics grew to megabytes.
    pub fn remove_system(&self, system: &str) {
        self.out_by_system.remove(system);
        let label = Self::system(system);
        self.connections.remove(&label);
        self.messages_in.remove(&label);
        self.messages_out.remove(&label);
        self.queue_overflows.remove(&label);
        self.connects_refused.remove(&label);
        for reason in DROP_REASONS {
            self.messages_dropped.remove(&DropLabels {
                system: system.to_owned(),
                reason: (*reason).to_owned(),
            });
        }
    }

    /// Count `n` messages queued to clients of `system`.
    pub fn count_out(&self, system: &str, n: u64) {
        if let Some(counter) = self.out_by_system.get(system) {
            counter.inc_by(n);
            return;
        }
        let counter = self
            .messages_out
            .get_or_create(&Self::system(system))
            .clone();
        counter.inc_by(n);
        self.out_by_system.insert(system.into(), counter);
    }

    /// Label helper.
    pub fn system(system: &str) -> SystemLabel {
        SystemLabel {
            system: system.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_out_counters_follow_a_system_that_is_removed_and_comes_back() {
        let m = Metrics::new();
        m.count_out("a", 2);
        m.count_out("a", 3);
        assert!(
            m.render()
                .contains("wasmgate_messages_out_total{system=\"a\"} 5")
        );
        m.remove_system("a");
        assert!(!m.render().contains("system=\"a\""), "series removed");
        m.count_out("a", 1);
        assert!(
            m.render()
                .contains("wasmgate_messages_out_total{system=\"a\"} 1"),
            "a fresh series, not the removed one: {}",
            m.render()
        );
    }
}
