//! Sizes and durations of every scenario, for the full run and for `--smoke`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::scenario::fanout::Via;

/// Everything a run is parameterized by; written into the report so numbers carry their setup.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    /// Idle-memory levels: RSS is read once the server holds this many connections.
    pub idle_levels: Vec<usize>,
    /// Pause before each RSS reading, letting the server finish allocating.
    pub idle_settle_ms: u64,
    /// Clients in the fan-out group.
    pub fanout_clients: usize,
    /// Whether the fan-out clients form a group or a system of their own.
    pub fanout_via: Via,
    /// Size of the `data` string of each broadcast.
    pub payload_bytes: usize,
    /// Broadcasts per second in the sustained phase.
    pub fanout_rate: u32,
    /// Length of the sustained phase.
    pub fanout_secs: f64,
    /// Clients in the echo scenarios.
    pub echo_clients: usize,
    /// Echo traffic before measuring (JIT warm-up, buffers).
    pub echo_warmup_ms: u64,
    /// Measured echo window.
    pub echo_ms: u64,
    /// Connections the connect storm opens.
    pub storm_conns: usize,
    /// Handshakes in flight during the storm.
    pub storm_inflight: usize,
    /// Clients echoing through the plugin during the hot-reload scenario.
    pub reload_clients: usize,
    /// How many times the plugin file is replaced.
    pub reload_swaps: usize,
    /// Time between two replacements.
    pub reload_interval_ms: u64,
    /// Echo traffic before the first replacement, as the no-swap baseline.
    pub reload_baseline_ms: u64,
    /// A reply later than this counts as "late" (and the client moves on).
    pub reload_timeout_ms: u64,
    /// Handshakes in flight while setting up a scenario.
    pub setup_inflight: usize,
    /// Above this many connections a scenario spreads them over source addresses.
    pub spread_above: usize,
    /// Number of loopback source addresses (127.0.0.1..=127.0.0.N).
    pub source_addrs: u8,
    /// Bound on one scenario against one server, setup included.
    pub scenario_timeout_secs: u64,
}

impl Params {
    /// The sizes the brief asks for: 1k/10k/~19k idle, 10k fan-out, 1k echo, 10k storm.
    pub fn full() -> Params {
        Params {
            idle_levels: vec![1_000, 10_000, 19_000],
            idle_settle_ms: 1_500,
            fanout_clients: 10_000,
            fanout_via: Via::System,
            payload_bytes: 100,
            fanout_rate: 20,
            fanout_secs: 5.0,
            echo_clients: 1_000,
            echo_warmup_ms: 1_000,
            echo_ms: 5_000,
            storm_conns: 10_000,
            storm_inflight: 256,
            reload_clients: 200,
            reload_swaps: 20,
            reload_interval_ms: 500,
            reload_baseline_ms: 3_000,
            reload_timeout_ms: 1_000,
            setup_inflight: 256,
            spread_above: 15_000,
            source_addrs: 50,
            scenario_timeout_secs: 240,
        }
    }

    /// Tiny sizes: every code path, a few seconds per server.
    pub fn smoke() -> Params {
        Params {
            idle_levels: vec![10, 50],
            idle_settle_ms: 200,
            fanout_clients: 50,
            fanout_rate: 20,
            fanout_secs: 0.5,
            echo_clients: 50,
            echo_warmup_ms: 200,
            echo_ms: 700,
            storm_conns: 200,
            storm_inflight: 64,
            reload_clients: 10,
            reload_swaps: 3,
            reload_interval_ms: 300,
            reload_baseline_ms: 400,
            // A bound, not a target: a debug gateway compiles a plugin in seconds.
            scenario_timeout_secs: 120,
            ..Params::full()
        }
    }

    /// Milliseconds as a [`Duration`] (helper for the `_ms` fields).
    pub fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// Whether a scenario holding `n` connections must spread them over source addresses.
    pub fn spread(&self, n: usize) -> bool {
        n > self.spread_above
    }
}
