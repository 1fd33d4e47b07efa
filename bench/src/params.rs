//! Sizes and durations of every scenario, for the full run and for `--smoke`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::scenario::fanout::Via;

fn default_scaling_cpu() -> String {
    "1".into()
}

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
    /// Clients connected to the system of the group fan-out (issue 13): the group is a part of
    /// them.
    pub group_system_clients: usize,
    /// Members of the group the group fan-out broadcasts to (the first of those clients).
    pub group_members: usize,
    /// Clients of the single-send latency scenario (spread over the nodes of a cluster).
    pub latency_clients: usize,
    /// `send_to_client` calls it times, one at a time.
    pub latency_sends: usize,
    /// Their rate per second.
    pub latency_rate: u32,
    /// Plugin instances the gateway runs for its echo plugin (`[plugins.echo] instances`);
    /// `None` leaves the key out of the configuration (the gateway's default, 1).
    #[serde(default)]
    pub plugin_instances: Option<usize>,
    /// CPU list the server is pinned to in the one-core half of the echo scaling scenario.
    #[serde(default = "default_scaling_cpu")]
    pub scaling_cpu: String,
    /// Rounds of handler work per message in the echo scaling scenario (`work:<n>:…`, the same
    /// hash loop in the plugin and in the peers' JS handler). Why: on a 2-core machine the load
    /// generator was 77 % busy with a bare echo, so a server "on every core" could never get two;
    /// with the handler doing most of the work per message the generator's share becomes small
    /// and what is measured is whether the server's application code uses both cores.
    #[serde(default)]
    pub scaling_work: u32,
    /// Handshakes in flight while setting up a scenario.
    pub setup_inflight: usize,
    /// Above this many connections a scenario spreads them over source addresses.
    pub spread_above: usize,
    /// Number of loopback source addresses (127.0.0.1..=127.0.0.N).
    pub source_addrs: u8,
    /// Bound on one scenario against one server, setup included (the soak adds its duration).
    pub scenario_timeout_secs: u64,
    /// Length of the soak's steady load, seconds.
    pub soak_secs: u64,
    /// Long-lived clients of the soak, connected for the whole run.
    pub soak_pool: usize,
    /// Short-lived clients the soak connects per second (each joins, talks, leaves).
    pub soak_churn_per_sec: u32,
    /// How long one short-lived client stays, milliseconds.
    pub soak_churn_life_ms: u64,
    /// Time between two chat messages (`say`) of one client, milliseconds.
    pub soak_say_interval_ms: u64,
    /// API pushes (`send_to_group` to a room or an API group, `send_to_system`) per second.
    pub soak_pushes_per_sec: u32,
    /// Chat rooms (plugin groups), and as many groups joined through `bind_to_group`.
    pub soak_rooms: usize,
    /// Time between two RSS samples, milliseconds.
    pub soak_sample_ms: u64,
    /// Share of the run that is warm-up: the RSS sample at its end is the reference.
    pub soak_warmup_fraction: f64,
    /// Largest allowed end RSS ÷ warm-up RSS.
    pub soak_rss_limit: f64,
    /// Whether the RSS criterion decides the outcome. Off in smoke runs: 15 s are too short for
    /// the allocator to reach a steady state, so there the soak checks errors only.
    pub soak_check_rss: bool,
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
            group_system_clients: 10_000,
            group_members: 1_000,
            latency_clients: 30,
            latency_sends: 2_000,
            latency_rate: 200,
            plugin_instances: None,
            scaling_cpu: default_scaling_cpu(),
            scaling_work: 200_000,
            setup_inflight: 256,
            spread_above: 15_000,
            source_addrs: 50,
            scenario_timeout_secs: 240,
            soak_secs: 600,
            soak_pool: 200,
            soak_churn_per_sec: 40,
            soak_churn_life_ms: 2_000,
            soak_say_interval_ms: 1_000,
            soak_pushes_per_sec: 20,
            soak_rooms: 10,
            soak_sample_ms: 5_000,
            soak_warmup_fraction: 0.1,
            soak_rss_limit: 1.10,
            soak_check_rss: true,
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
            group_system_clients: 60,
            group_members: 20,
            latency_clients: 6,
            latency_sends: 40,
            // A debug guest is ~10x slower per round than a release one.
            scaling_work: 1_000,
            // A bound, not a target: a debug gateway compiles a plugin in seconds.
            scenario_timeout_secs: 120,
            soak_secs: 15,
            soak_pool: 20,
            soak_churn_per_sec: 10,
            soak_churn_life_ms: 1_000,
            soak_say_interval_ms: 500,
            soak_pushes_per_sec: 10,
            soak_rooms: 4,
            soak_sample_ms: 1_000,
            soak_check_rss: false,
            ..Params::full()
        }
    }

    /// The echo plugin's instances as the report names them (the gateway's default is 1).
    pub fn instances_label(&self) -> String {
        match self.plugin_instances {
            Some(n) => format!("instances = {n}"),
            None => "instances = default (1)".into(),
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
