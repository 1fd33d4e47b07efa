//! Plugin metrics: Prometheus families registered into the gateway's registry, and a window of
//! recent call latencies per plugin for the p50/p99 of `GET /api/plugins`.

use std::collections::VecDeque;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::metrics::Metrics;

/// Labels naming a plugin.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabel {
    /// The plugin (file name without `.wasm`).
    pub plugin: String,
}

/// Labels of handled events.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// The plugin.
    pub plugin: String,
    /// `connect`, `message`, `close` or `timer`.
    pub kind: String,
}

/// Labels of (re)loads.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// The plugin.
    pub plugin: String,
    /// `ok` or `error`.
    pub result: String,
    /// Where the code came from: `compiler`, `disk-cache`, `memory`, or `none` on errors
    /// before code existed.
    pub code: String,
}

/// Labels of refused host calls.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QuotaLabels {
    /// The plugin.
    pub plugin: String,
    /// Which budget: `sends`, `logs`.
    pub budget: String,
}

fn call_histogram() -> Histogram {
    // 1 µs .. ~0.5 s.
    Histogram::new(exponential_buckets(0.000_001, 2.0, 20))
}

/// The plugin runtime's metric families (cheap to clone: they share their storage).
#[derive(Clone)]
pub(crate) struct PluginMetrics {
    /// Events handled, by plugin and kind.
    pub events: Family<EventLabels, Counter>,
    /// Traps (panics, deadline, memory), by plugin.
    pub traps: Family<PluginLabel, Counter>,
    /// Loads and reloads, by plugin, outcome and code source.
    pub reloads: Family<ReloadLabels, Counter>,
    /// Duration of calls into plugins.
    pub call_seconds: Family<PluginLabel, Histogram, fn() -> Histogram>,
    /// Host calls refused because a per-event budget ran out.
    pub budget_exceeded: Family<QuotaLabels, Counter>,
    /// Reads of plugin files by the loader: flat while the folder does not change (an idle
    /// gateway reads nothing), so tests and operators can check it without strace.
    pub file_reads: Family<PluginLabel, Counter>,
    /// Passes that write changed key-value stores: one per burst of changes, none while idle.
    pub store_flushes: Counter,
}

impl PluginMetrics {
    /// Fresh families, registered into `metrics`.
    pub(crate) fn register(metrics: &Metrics) -> Self {
        let this = Self {
            events: Family::default(),
            traps: Family::default(),
            reloads: Family::default(),
            call_seconds: Family::new_with_constructor(call_histogram),
            budget_exceeded: Family::default(),
            file_reads: Family::default(),
            store_flushes: Counter::default(),
        };
        let families = this.clone();
        metrics.register(move |r| {
            r.register(
                "plugin_events",
                "Events handled by plugins",
                families.events,
            );
            r.register("plugin_traps", "Plugin traps", families.traps);
            r.register(
                "plugin_reloads",
                "Plugin loads and reloads",
                families.reloads,
            );
            r.register(
                "plugin_call_seconds",
                "Duration of calls into plugins",
                families.call_seconds,
            );
            r.register(
                "plugin_budget_exceeded",
                "Host calls refused by a per-event budget",
                families.budget_exceeded,
            );
            r.register(
                "plugin_file_reads",
                "Plugin files read by the loader",
                families.file_reads,
            );
            r.register(
                "plugin_store_flushes",
                "Passes writing changed plugin key-value stores",
                families.store_flushes,
            );
        });
        this
    }
}

/// How many recent call durations the percentile window keeps.
const WINDOW: usize = 2048;

/// Recent call durations of one plugin, in microseconds.
#[derive(Default)]
pub(crate) struct LatencyWindow {
    samples: Mutex<VecDeque<u32>>,
}

impl LatencyWindow {
    /// Record one call.
    pub(crate) fn record(&self, d: Duration) {
        let us = u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        let mut s = self.samples.lock();
        if s.len() == WINDOW {
            s.pop_front();
        }
        s.push_back(us);
    }

    /// The p50 and p99 of the window, in microseconds (`None` before any call).
    pub(crate) fn percentiles(&self) -> Option<(u32, u32)> {
        let mut sorted: Vec<u32> = self.samples.lock().iter().copied().collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_unstable();
        let at = |q: f64| {
            // Nearest rank.
            let rank = (q * sorted.len() as f64).ceil() as usize;
            sorted[rank.clamp(1, sorted.len()) - 1]
        };
        Some((at(0.50), at(0.99)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let w = LatencyWindow::default();
        assert_eq!(w.percentiles(), None);
        for us in 1..=100 {
            w.record(Duration::from_micros(us));
        }
        assert_eq!(w.percentiles(), Some((50, 99)));
    }
}
