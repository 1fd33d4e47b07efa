//! The run's report: JSON for machines, a Markdown table (absolute numbers and the ratio
//! to Node `ws`) for people.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::cpu::CpuUse;
use crate::machine::MachineInfo;
use crate::params::Params;
use crate::scenario::echo::EchoResult;
use crate::scenario::fanout::FanoutResult;
use crate::scenario::fanout::Via;
use crate::scenario::latency::LatencyResult;
use crate::scenario::reload::ReloadResult;
use crate::scenario::soak::SoakResult;
use crate::scenario::{Outcome, ScalingResult, ServerReport};
use crate::server::{PluginLang, ServerKind};
use crate::stats::{Dist, median, min_max, per_run_ratios};

/// Everything one invocation measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// Whether this was the `--smoke` run (tiny numbers, not for quoting).
    pub smoke: bool,
    /// Where it ran.
    pub machine: MachineInfo,
    /// Sizes used.
    pub params: Params,
    /// CPU layout: `pinned` (load generator and servers on their own cores) or `free`.
    pub layout: String,
    /// Worker threads of the load generator.
    pub client_threads: usize,
    /// Every run's raw numbers: per run, per server, per scenario.
    pub runs: Vec<RunReport>,
    /// Per (scenario, metric): each server's median over the runs and the per-run ratios to
    /// Node `ws` (what the Markdown table shows).
    pub summary: Vec<SummaryRow>,
}

/// One run: every selected scenario against every server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunReport {
    /// 1-based.
    pub run: usize,
    /// /proc/loadavg before the run.
    pub load_before: String,
    /// Wall-clock seconds the run took.
    pub secs: f64,
    /// Per server, per scenario.
    pub servers: Vec<ServerReport>,
}

/// Whether lower or higher is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// ↓
    Lower,
    /// ↑
    Higher,
}

#[derive(Clone, Debug, PartialEq)]
enum Cell {
    Num(f64),
    Text(&'static str),
}

/// One server's numbers for one metric over the runs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SummaryCell {
    /// Which server.
    pub server: ServerKind,
    /// The number of each run (`None`: skipped, failed or not measurable in that run).
    pub per_run: Vec<Option<f64>>,
    /// Median of the numbers present.
    pub median: Option<f64>,
    /// Why there is no number, when no run has one (`skipped`, `failed`, `n/a`).
    pub text: String,
}

/// `server ÷ Node ws` for one metric, computed inside each run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RatioCell {
    /// The server divided by Node `ws`.
    pub server: ServerKind,
    /// The ratio of each run.
    pub per_run: Vec<Option<f64>>,
    /// Median of the per-run ratios.
    pub median: Option<f64>,
    /// Smallest per-run ratio.
    pub min: Option<f64>,
    /// Largest per-run ratio.
    pub max: Option<f64>,
}

/// One line of the table, over every run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SummaryRow {
    /// Scenario and its size.
    pub group: String,
    /// What is measured.
    pub metric: String,
    /// Which direction is better.
    pub better: Better,
    /// A count (no ratio).
    pub count: bool,
    /// Per server, in the order of `--servers`.
    pub cells: Vec<SummaryCell>,
    /// Per server other than Node `ws` (when `ws` was measured and this is not a count).
    pub ratios: Vec<RatioCell>,
}

struct Row {
    group: String,
    metric: String,
    better: Better,
    /// Print as an integer.
    count: bool,
    cells: Vec<Cell>,
}

fn cell<T>(o: Option<&Outcome<T>>, get: &dyn Fn(&T) -> Option<f64>) -> Cell {
    match o {
        None => Cell::Text(""),
        Some(Outcome::Ok(v)) => get(v).map_or(Cell::Text("n/a"), Cell::Num),
        Some(Outcome::Skipped(_)) => Cell::Text("skipped"),
        Some(Outcome::Failed(_)) => Cell::Text("failed"),
    }
}

struct Rows<'a> {
    servers: &'a [ServerReport],
    rows: Vec<Row>,
}

impl Rows<'_> {
    fn add<T>(
        &mut self,
        group: &str,
        metric: &str,
        better: Better,
        count: bool,
        pick: fn(&ServerReport) -> Option<&Outcome<T>>,
        get: impl Fn(&T) -> Option<f64>,
    ) {
        // A row nobody ran says nothing; the notes list why.
        if !self
            .servers
            .iter()
            .any(|s| matches!(pick(s), Some(Outcome::Ok(_) | Outcome::Failed(_))))
        {
            return;
        }
        let cells = self.servers.iter().map(|s| cell(pick(s), &get)).collect();
        self.rows.push(Row {
            group: group.to_owned(),
            metric: metric.to_owned(),
            better,
            count,
            cells,
        });
    }

    /// The rows `p50 <what> (ms)`, `p99 <what> (ms)` and `max <what> (ms)` of a distribution.
    fn add_dist<T>(
        &mut self,
        group: &str,
        what: &str,
        pick: fn(&ServerReport) -> Option<&Outcome<T>>,
        dist: impl Fn(&T) -> Option<&Dist> + Copy,
    ) {
        use Better::Lower;
        type Pick = fn(&Dist) -> f64;
        let rows: [(&str, Pick); 3] = [
            ("p50", |d| d.p50_ms),
            ("p99", |d| d.p99_ms),
            ("max", |d| d.max_ms),
        ];
        for (name, get) in rows {
            self.add(
                group,
                &format!("{name} {what} (ms)"),
                Lower,
                false,
                pick,
                |v| dist(v).map(get),
            );
        }
    }
}

/// CPU times come in 10 ms ticks: below 50 ms of server CPU a per-operation figure is noise.
fn measurable(cpu: &CpuUse) -> bool {
    cpu.server_secs >= 0.05
}

fn fmt_num(v: f64, count: bool) -> String {
    if count || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn rows(p: &Params, servers: &[ServerReport]) -> Vec<Row> {
    use Better::{Higher, Lower};
    let mut t = Rows {
        servers,
        rows: Vec::new(),
    };
    let g = "idle memory";
    t.add(
        g,
        "baseline RSS (MB)",
        Lower,
        false,
        |s| s.idle.as_ref(),
        |v| Some(v.baseline_rss_kib as f64 * 1.024 / 1000.0),
    );
    for &level in &p.idle_levels {
        t.add(
            g,
            &format!("KB per connection @ {level}"),
            Lower,
            false,
            |s| s.idle.as_ref(),
            move |v| {
                v.levels
                    .iter()
                    .find(|l| l.conns == level)
                    .map(|l| l.kb_per_conn)
            },
        );
    }
    let via = match p.fanout_via {
        Via::System => "send_to_system",
        Via::Group => "send_to_group",
    };
    let g = format!(
        "fan-out ({via}), {} clients, {} B",
        p.fanout_clients, p.payload_bytes
    );
    t.add(
        &g,
        "first delivery (ms)",
        Lower,
        false,
        |s| s.fanout.as_ref(),
        |v| Some(v.single.first_ms),
    );
    t.add(
        &g,
        "median delivery (ms)",
        Lower,
        false,
        |s| s.fanout.as_ref(),
        |v| Some(v.single.p50_ms),
    );
    t.add(
        &g,
        "p99 delivery (ms)",
        Lower,
        false,
        |s| s.fanout.as_ref(),
        |v| Some(v.single.p99_ms),
    );
    t.add(
        &g,
        "last delivery (ms)",
        Lower,
        false,
        |s| s.fanout.as_ref(),
        |v| Some(v.single.last_ms),
    );
    t.add(
        &g,
        "clients reached",
        Higher,
        true,
        |s| s.fanout.as_ref(),
        |v| Some(v.single.received as f64),
    );
    let sus = format!("sustained {}/s", p.fanout_rate);
    t.add(
        &g,
        &format!("{sus}: delivered msgs/s"),
        Higher,
        false,
        |s| s.fanout.as_ref(),
        |v| Some(v.sustained.msgs_per_sec),
    );
    t.add(
        &g,
        &format!("{sus}: lost deliveries"),
        Lower,
        true,
        |s| s.fanout.as_ref(),
        |v| Some(v.sustained.expected.saturating_sub(v.sustained.delivered) as f64),
    );
    t.add(
        &g,
        &format!("{sus}: p50 last delivery (ms)"),
        Lower,
        false,
        |s| s.fanout.as_ref(),
        |v| v.sustained.last_delivery.as_ref().map(|d| d.p50_ms),
    );
    t.add(
        &g,
        &format!("{sus}: server CPU per delivery (µs)"),
        Lower,
        false,
        |s| s.fanout.as_ref(),
        |v| measurable(&v.sustained.cpu).then_some(v.sustained.server_us_per_delivery),
    );
    t.add(
        &g,
        &format!("{sus}: load generator CPU busy (% of a core)"),
        Lower,
        false,
        |s| s.fanout.as_ref(),
        |v| Some(100.0 * v.sustained.cpu.client_secs / v.sustained.cpu.wall_secs.max(1e-9)),
    );
    t.add(
        &g,
        &format!("{sus}: Redis commands per broadcast (cluster)"),
        Lower,
        false,
        |s| s.fanout.as_ref(),
        |v| v.sustained.redis_commands_per_broadcast,
    );
    type PickEcho = fn(&ServerReport) -> Option<&Outcome<EchoResult>>;
    fn native(s: &ServerReport) -> Option<&Outcome<EchoResult>> {
        s.echo_native.as_ref()
    }
    // The peers answer with one JS handler: their cells repeat in the three plugin groups, so
    // that each plugin language reads against the same Node numbers.
    fn rust(s: &ServerReport) -> Option<&Outcome<EchoResult>> {
        s.echo_app_of(PluginLang::Rust)
    }
    fn js(s: &ServerReport) -> Option<&Outcome<EchoResult>> {
        s.echo_app_of(PluginLang::Js)
    }
    fn python(s: &ServerReport) -> Option<&Outcome<EchoResult>> {
        s.echo_app_of(PluginLang::Python)
    }
    for (name, pick) in [
        ("echo, native ping/pong", native as PickEcho),
        (
            "echo, application: wasmgate Rust plugin, peers JS handler",
            rust as PickEcho,
        ),
        (
            "echo, application: wasmgate JavaScript plugin, peers JS handler",
            js as PickEcho,
        ),
        (
            "echo, application: wasmgate Python plugin, peers JS handler",
            python as PickEcho,
        ),
    ] {
        let g = format!("{name}, {} clients", p.echo_clients);
        t.add(&g, "replies/s", Higher, false, pick, |v| Some(v.per_sec));
        t.add_dist(&g, "latency", pick, |v| v.latency.as_ref());
        t.add(
            &g,
            "least-served client ÷ median client (replies)",
            Higher,
            false,
            pick,
            |v| v.fairness,
        );
        t.add(&g, "server CPU per reply (µs)", Lower, false, pick, |v| {
            measurable(&v.cpu).then_some(v.server_us_per_reply)
        });
        t.add(
            &g,
            "load generator CPU busy (% of a core)",
            Lower,
            false,
            pick,
            |v| Some(100.0 * v.cpu.client_secs / v.cpu.wall_secs.max(1e-9)),
        );
        t.add(&g, "errors", Lower, true, pick, |v| Some(v.errors as f64));
    }
    let g = format!("connect storm, {} connections", p.storm_conns);
    t.add(
        &g,
        "connections/s",
        Higher,
        false,
        |s| s.storm.as_ref(),
        |v| Some(v.per_sec),
    );
    t.add(
        &g,
        "p99 connect (ms)",
        Lower,
        false,
        |s| s.storm.as_ref(),
        |v| v.connect.as_ref().map(|d| d.p99_ms),
    );
    t.add(
        &g,
        "server CPU per connection (µs)",
        Lower,
        false,
        |s| s.storm.as_ref(),
        |v| measurable(&v.cpu).then_some(v.server_us_per_conn),
    );
    t.add(
        &g,
        "failed",
        Lower,
        true,
        |s| s.storm.as_ref(),
        |v| Some(v.failed as f64),
    );
    group_fanout_rows(&mut t, p);
    latency_rows(&mut t, p);
    scaling_rows(&mut t, p);
    let g = format!(
        "hot reload, {} swaps, {} clients, {}",
        p.reload_swaps,
        p.reload_clients,
        p.instances_label()
    );
    fn pick(s: &ServerReport) -> Option<&Outcome<ReloadResult>> {
        s.reload.as_ref()
    }
    t.add(&g, "requests sent", Higher, true, pick, |v| {
        Some(v.sent as f64)
    });
    t.add(&g, "reloads applied", Higher, true, pick, |v| {
        Some(v.reloads_applied as f64)
    });
    t.add(
        &g,
        "last swap serving after (ms)",
        Lower,
        false,
        pick,
        |v| v.last_swap_live_ms,
    );
    t.add(&g, "lost", Lower, true, pick, |v| Some(v.lost as f64));
    t.add(&g, "doubled", Lower, true, pick, |v| Some(v.doubled as f64));
    t.add(&g, "reordered on a connection", Lower, true, pick, |v| {
        Some(v.reordered as f64)
    });
    t.add(
        &g,
        "write → every instance serving, p50 (ms)",
        Lower,
        false,
        pick,
        |v| v.swap_live.as_ref().map(|d| d.p50_ms),
    );
    t.add(
        &g,
        "write → every instance serving, max (ms)",
        Lower,
        false,
        pick,
        |v| v.swap_live.as_ref().map(|d| d.max_ms),
    );
    t.add(
        &g,
        "swaps not seen serving before the next write",
        Lower,
        true,
        pick,
        |v| Some(v.swaps_not_seen as f64),
    );
    t.add(
        &g,
        &format!("late (> {} ms)", p.reload_timeout_ms),
        Lower,
        true,
        pick,
        |v| Some(v.late as f64),
    );
    t.add(&g, "dropped connections", Lower, true, pick, |v| {
        Some(v.dropped_connections as f64)
    });
    t.add(&g, "p99 before swaps (ms)", Lower, false, pick, |v| {
        v.baseline.as_ref().map(|d| d.p99_ms)
    });
    t.add(&g, "p99 during swaps (ms)", Lower, false, pick, |v| {
        v.during_swaps.as_ref().map(|d| d.p99_ms)
    });
    t.add(&g, "max during swaps (ms)", Lower, false, pick, |v| {
        v.during_swaps.as_ref().map(|d| d.max_ms)
    });
    soak_rows(&mut t, p);
    t.rows
}

fn group_fanout_rows(t: &mut Rows<'_>, p: &Params) {
    use Better::{Higher, Lower};
    let g = format!(
        "fan-out to a group of {} in a system of {} clients (send_to_group), {} B",
        p.group_members, p.group_system_clients, p.payload_bytes
    );
    fn pick(s: &ServerReport) -> Option<&Outcome<FanoutResult>> {
        s.fanout_group.as_ref()
    }
    t.add(&g, "setup: connect + bind (s)", Lower, false, pick, |v| {
        Some(v.setup_secs)
    });
    t.add(&g, "first delivery (ms)", Lower, false, pick, |v| {
        Some(v.single.first_ms)
    });
    t.add(&g, "median delivery (ms)", Lower, false, pick, |v| {
        Some(v.single.p50_ms)
    });
    t.add(&g, "last delivery (ms)", Lower, false, pick, |v| {
        Some(v.single.last_ms)
    });
    t.add(&g, "members reached", Higher, true, pick, |v| {
        Some(v.single.received as f64)
    });
    t.add(&g, "non-members reached", Lower, true, pick, |v| {
        Some(v.strays as f64)
    });
    t.add(
        &g,
        &format!(
            "sustained {}/s: Redis commands per broadcast (cluster)",
            p.fanout_rate
        ),
        Lower,
        false,
        pick,
        |v| v.sustained.redis_commands_per_broadcast,
    );
    let sus = format!("sustained {}/s", p.fanout_rate);
    t.add(
        &g,
        &format!("{sus}: lost deliveries"),
        Lower,
        true,
        pick,
        |v| Some(v.sustained.expected.saturating_sub(v.sustained.delivered) as f64),
    );
    t.add(
        &g,
        &format!("{sus}: p50 last delivery (ms)"),
        Lower,
        false,
        pick,
        |v| v.sustained.last_delivery.as_ref().map(|d| d.p50_ms),
    );
    t.add(
        &g,
        &format!("{sus}: server CPU per delivery (µs)"),
        Lower,
        false,
        pick,
        |v| measurable(&v.sustained.cpu).then_some(v.sustained.server_us_per_delivery),
    );
    t.add(
        &g,
        &format!("{sus}: server CPU per broadcast (µs)"),
        Lower,
        false,
        pick,
        |v| {
            measurable(&v.sustained.cpu)
                .then(|| v.sustained.cpu.server_secs * 1e6 / v.sustained.sent.max(1) as f64)
        },
    );
    t.add(
        &g,
        &format!("{sus}: server CPU busy (% of a core)"),
        Lower,
        false,
        pick,
        |v| Some(100.0 * v.sustained.cpu.server_secs / v.sustained.cpu.wall_secs.max(1e-9)),
    );
}

fn latency_rows(t: &mut Rows<'_>, p: &Params) {
    use Better::Lower;
    let g = format!(
        "one send_to_client at a time, {}/s, {} B (cluster: API on node 1, clients on nodes 2-3)",
        p.latency_rate, p.payload_bytes
    );
    fn pick(s: &ServerReport) -> Option<&Outcome<LatencyResult>> {
        s.latency.as_ref()
    }
    t.add_dist(&g, "call → client", pick, |v| v.delivery.as_ref());
    t.add(
        &g,
        "p50 call → HTTP answer (ms)",
        Lower,
        false,
        pick,
        |v| v.answer.as_ref().map(|d| d.p50_ms),
    );
    t.add(&g, "lost", Lower, true, pick, |v| {
        Some(v.sent.saturating_sub(v.received) as f64)
    });
    t.add(
        &g,
        "doubled, misrouted or out of order",
        Lower,
        true,
        pick,
        |v| Some((v.doubled + v.misrouted + v.out_of_order) as f64),
    );
}

fn scaling_rows(t: &mut Rows<'_>, p: &Params) {
    use Better::{Higher, Lower};
    let g = format!(
        "echo scaling: wasmgate Rust plugin ({}), peers JS handler, {} rounds of handler work per message; one core (CPU {}) vs every core, {} clients",
        p.instances_label(),
        p.scaling_work,
        p.scaling_cpu,
        p.echo_clients
    );
    fn pick(s: &ServerReport) -> Option<&Outcome<ScalingResult>> {
        s.echo_scaling.as_ref()
    }
    let busy = |c: &CpuUse, secs: f64| 100.0 * secs / c.wall_secs.max(1e-9);
    t.add(&g, "replies/s, one core", Higher, false, pick, |v| {
        Some(v.one_core.per_sec)
    });
    t.add(&g, "replies/s, every core", Higher, false, pick, |v| {
        Some(v.all_cores.per_sec)
    });
    t.add(
        &g,
        "every core ÷ one core (replies/s)",
        Higher,
        false,
        pick,
        |v| Some(v.speedup),
    );
    t.add(
        &g,
        "server CPU busy, one core (%)",
        Higher,
        false,
        pick,
        move |v| Some(busy(&v.one_core.cpu, v.one_core.cpu.server_secs)),
    );
    t.add(
        &g,
        "server CPU busy, every core (% of a core)",
        Higher,
        false,
        pick,
        move |v| Some(busy(&v.all_cores.cpu, v.all_cores.cpu.server_secs)),
    );
    t.add(
        &g,
        "server CPU per reply, every core (µs)",
        Lower,
        false,
        pick,
        |v| measurable(&v.all_cores.cpu).then_some(v.all_cores.server_us_per_reply),
    );
    t.add(
        &g,
        "load generator CPU busy, one core (% of a core)",
        Lower,
        false,
        pick,
        move |v| Some(busy(&v.one_core.cpu, v.one_core.cpu.client_secs)),
    );
    t.add(
        &g,
        "load generator CPU busy, every core (% of a core)",
        Lower,
        false,
        pick,
        move |v| Some(busy(&v.all_cores.cpu, v.all_cores.cpu.client_secs)),
    );
    t.add(
        &g,
        "server CPU per reply, one core (µs)",
        Lower,
        false,
        pick,
        |v| measurable(&v.one_core.cpu).then_some(v.one_core.server_us_per_reply),
    );
    t.add(&g, "p99 latency, one core (ms)", Lower, false, pick, |v| {
        v.one_core.latency.as_ref().map(|d| d.p99_ms)
    });
    t.add(
        &g,
        "least-served client ÷ median client, one core",
        Higher,
        false,
        pick,
        |v| v.one_core.fairness,
    );
    t.add(
        &g,
        "least-served client ÷ median client, every core",
        Higher,
        false,
        pick,
        |v| v.all_cores.fairness,
    );
    t.add(
        &g,
        "p99 latency, every core (ms)",
        Lower,
        false,
        pick,
        |v| v.all_cores.latency.as_ref().map(|d| d.p99_ms),
    );
    t.add(&g, "errors", Lower, true, pick, |v| {
        Some((v.one_core.errors + v.all_cores.errors) as f64)
    });
}

fn soak_rows(t: &mut Rows<'_>, p: &Params) {
    use Better::{Higher, Lower};
    let g = format!(
        "soak, {} s: {} long-lived + {}/s churn clients, {} pushes/s",
        p.soak_secs, p.soak_pool, p.soak_churn_per_sec, p.soak_pushes_per_sec
    );
    fn pick(s: &ServerReport) -> Option<&Outcome<SoakResult>> {
        s.soak.as_ref()
    }
    let mb = |kib: u64| Some(kib as f64 * 1.024 / 1000.0);
    t.add(&g, "RSS at start (MB)", Lower, false, pick, move |v| {
        mb(v.rss_start_kib)
    });
    t.add(&g, "RSS after warm-up (MB)", Lower, false, pick, move |v| {
        mb(v.rss_warmup_kib)
    });
    t.add(&g, "RSS at end (MB)", Lower, false, pick, move |v| {
        mb(v.rss_end_kib)
    });
    t.add(&g, "RSS end ÷ warm-up", Lower, false, pick, |v| {
        Some(v.rss_ratio)
    });
    t.add(&g, "max RSS (MB)", Lower, false, pick, move |v| {
        mb(v.rss_max_kib)
    });
    t.add(
        &g,
        "RSS after all left (MB)",
        Lower,
        false,
        pick,
        move |v| mb(v.rss_after_kib),
    );
    t.add(&g, "connects/s", Higher, false, pick, |v| {
        Some(v.connects_per_sec)
    });
    t.add(&g, "client events/s", Higher, false, pick, |v| {
        Some(v.events_per_sec)
    });
    t.add(&g, "frames received/s", Higher, false, pick, |v| {
        Some(v.frames_received_per_sec)
    });
    t.add(&g, "server CPU busy (%)", Lower, false, pick, |v| {
        Some(100.0 * v.cpu.server_secs / v.cpu.wall_secs.max(1e-9))
    });
    t.add(&g, "errors", Lower, true, pick, |v| {
        Some(v.errors.total as f64)
    });
}

fn notes(r: &Report) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let many = r.runs.len() > 1;
    for run in &r.runs {
        for s in &run.servers {
            server_notes(s, many.then_some(run.run), &mut out);
        }
    }
    // A skip says the same in every run: say it once.
    let mut seen = std::collections::HashSet::new();
    out.retain(|n| seen.insert(n.clone()));
    out
}

fn server_notes(s: &ServerReport, run: Option<usize>, out: &mut Vec<String>) {
    {
        let label = s.server.label();
        let mut note = |name: &str, o: Option<(&'static str, &str)>| {
            if let Some((what, why)) = o {
                match (what, run) {
                    ("FAILED", Some(n)) => {
                        out.push(format!("{label} / {name}: FAILED in run {n}: {why}"));
                    }
                    _ => out.push(format!("{label} / {name}: {what}: {why}")),
                }
            }
        };
        fn why<T>(o: &Option<Outcome<T>>) -> Option<(&'static str, &str)> {
            match o {
                Some(Outcome::Skipped(w)) => Some(("skipped", w)),
                Some(Outcome::Failed(w)) => Some(("FAILED", w)),
                _ => None,
            }
        }
        note("idle", why(&s.idle));
        note("fan-out", why(&s.fanout));
        note("echo native", why(&s.echo_native));
        note("echo application", why(&s.echo_app));
        note("echo application, JavaScript plugin", why(&s.echo_app_js));
        note("echo application, Python plugin", why(&s.echo_app_python));
        note("connect storm", why(&s.storm));
        note("hot reload", why(&s.reload));
        note("soak", why(&s.soak));
        note("echo scaling", why(&s.echo_scaling));
        note("group fan-out", why(&s.fanout_group));
        note("single-send latency", why(&s.latency));
        if let Some(Outcome::Ok(r)) = &s.soak {
            for f in &r.failures {
                out.push(format!("{} / soak: FAILED: {f}", s.server.label()));
            }
            if !r.rss_checked {
                out.push(format!(
                    "{} / soak: RSS criterion not applied (smoke run: too short for a steady state)",
                    s.server.label()
                ));
            }
        }
    }
}

/// Per (group, metric), in the order rows first appear: every server's numbers over the runs,
/// their medians, and the per-run ratios to Node `ws`.
fn aggregate(servers: &[ServerKind], runs: &[Vec<Row>]) -> Vec<SummaryRow> {
    let mut keys: Vec<(String, String, Better, bool)> = Vec::new();
    for run in runs {
        for row in run {
            if !keys
                .iter()
                .any(|(g, m, ..)| *g == row.group && *m == row.metric)
            {
                keys.push((row.group.clone(), row.metric.clone(), row.better, row.count));
            }
        }
    }
    let ws = reference(servers).and_then(|r| servers.iter().position(|&k| k == r));
    keys.into_iter()
        .map(|(group, metric, better, count)| {
            fn find<'r>(run: &'r [Row], group: &str, metric: &str) -> Option<&'r Row> {
                run.iter().find(|r| r.group == group && r.metric == metric)
            }
            let cells: Vec<SummaryCell> = servers
                .iter()
                .enumerate()
                .map(|(i, &server)| {
                    let mut text = String::new();
                    let per_run: Vec<Option<f64>> = runs
                        .iter()
                        .map(
                            |run| match find(run, &group, &metric).and_then(|r| r.cells.get(i)) {
                                Some(Cell::Num(v)) => Some(*v),
                                Some(Cell::Text(t)) => {
                                    if text.is_empty() {
                                        (*t).clone_into(&mut text);
                                    }
                                    None
                                }
                                None => None,
                            },
                        )
                        .collect();
                    let nums: Vec<f64> = per_run.iter().flatten().copied().collect();
                    SummaryCell {
                        server,
                        median: median(&nums),
                        per_run,
                        text,
                    }
                })
                .collect();
            let ratios = match ws {
                Some(w) if !count => cells
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| i != w)
                    .map(|(_, c)| {
                        let per_run = per_run_ratios(&c.per_run, &cells[w].per_run);
                        let nums: Vec<f64> = per_run.iter().flatten().copied().collect();
                        let mm = min_max(&per_run);
                        RatioCell {
                            server: c.server,
                            median: median(&nums),
                            min: mm.map(|m| m.0),
                            max: mm.map(|m| m.1),
                            per_run,
                        }
                    })
                    .collect(),
                _ => Vec::new(),
            };
            SummaryRow {
                group,
                metric,
                better,
                count,
                cells,
                ratios,
            }
        })
        .collect()
}

/// What the ratios divide by: Node `ws` when it ran; otherwise, for `--servers
/// wasmgate,cluster`, the one-node gateway (what a cluster is judged against, issue 12).
fn reference(servers: &[ServerKind]) -> Option<ServerKind> {
    if servers.contains(&ServerKind::Ws) {
        Some(ServerKind::Ws)
    } else if servers.contains(&ServerKind::Cluster) && servers.contains(&ServerKind::Wasmgate) {
        Some(ServerKind::Wasmgate)
    } else {
        None
    }
}

/// The summary of `runs` (each run's servers in the same order).
pub fn summarize(p: &Params, runs: &[RunReport]) -> Vec<SummaryRow> {
    let servers: Vec<ServerKind> = runs
        .first()
        .map(|r| r.servers.iter().map(|s| s.server).collect())
        .unwrap_or_default();
    let per_run: Vec<Vec<Row>> = runs.iter().map(|r| rows(p, &r.servers)).collect();
    aggregate(&servers, &per_run)
}

fn fmt_ratio(v: f64) -> String {
    format!("{v:.2}×")
}

/// Renders the Markdown report.
pub fn markdown(r: &Report) -> String {
    let m = &r.machine;
    let mut s = String::new();
    let title = if r.smoke {
        "wasmgate benchmark (SMOKE run: tiny sizes, do not quote)"
    } else {
        "wasmgate benchmark"
    };
    let _ = writeln!(s, "# {title}\n");
    let _ = writeln!(s, "- date: {}, commit {}", m.date, m.git_commit);
    let _ = writeln!(
        s,
        "- machine: {} CPUs ({}), {} MiB, kernel {}",
        m.nproc, m.cpu_model, m.mem_total_mib, m.kernel
    );
    let _ = writeln!(
        s,
        "- load average before / after the run: {} / {} (other work on the machine slows \
         wall-clock numbers; CPU per operation is less affected)",
        m.load_before, m.load_after
    );
    let _ = writeln!(
        s,
        "- pinning: load generator on CPUs {}, servers on {}",
        m.client_cpus,
        m.server_cpus.as_deref().unwrap_or("(not pinned)")
    );
    let _ = writeln!(
        s,
        "- versions: {}, node {}, ws {}, socket.io {}, wasmgate {}",
        m.rustc, m.node, m.ws, m.socketio, m.wasmgate
    );
    let servers: Vec<ServerKind> = r
        .runs
        .first()
        .map(|x| x.servers.iter().map(|s| s.server).collect())
        .unwrap_or_default();
    let reference = reference(&servers);
    let _ = writeln!(
        s,
        "- ↓ lower is better, ↑ higher is better; ratio = server ÷ {}\n",
        reference.map_or("Node ws (not in this run: no ratios)", ServerKind::label)
    );
    let n = r.runs.len();
    let _ = writeln!(
        s,
        "- runs: {n} (each: every scenario against every server, a fresh server process per \
         scenario); layout: {}; load generator: {} thread(s); run times: {} s",
        r.layout,
        r.client_threads,
        r.runs
            .iter()
            .map(|x| format!("{:.0}", x.secs))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        s,
        "- each server cell is the median over the runs; each ratio is computed inside every \
         run, then its median and min–max over the runs are shown; a cell measured in only some \
         runs says in how many\n"
    );
    let _ = write!(s, "| scenario | metric |");
    for k in &servers {
        let _ = write!(s, " {} (median) |", k.label());
    }
    let has_ws = reference.is_some();
    let others: Vec<ServerKind> = servers
        .iter()
        .copied()
        .filter(|&k| Some(k) != reference)
        .collect();
    if let Some(base) = reference {
        for k in &others {
            let _ = write!(
                s,
                " {} ÷ {} median | min–max over runs |",
                k.label(),
                if base == ServerKind::Ws {
                    "ws"
                } else {
                    base.label()
                }
            );
        }
    }
    let _ = write!(s, "\n|---|---|");
    let ncols = servers.len() + if has_ws { 2 * others.len() } else { 0 };
    s.push_str(&"---:|".repeat(ncols));
    s.push('\n');
    for row in &r.summary {
        let arrow = match row.better {
            Better::Lower => "↓",
            Better::Higher => "↑",
        };
        let _ = write!(s, "| {} | {} {arrow} |", row.group, row.metric);
        for c in &row.cells {
            let have = c.per_run.iter().flatten().count();
            match c.median {
                Some(v) if have < n => {
                    let _ = write!(s, " {} ({have} of {n} runs) |", fmt_num(v, row.count));
                }
                Some(v) => {
                    let _ = write!(s, " {} |", fmt_num(v, row.count));
                }
                None => {
                    let _ = write!(s, " {} |", c.text);
                }
            }
        }
        if has_ws {
            for k in &others {
                match row.ratios.iter().find(|x| x.server == *k) {
                    Some(RatioCell {
                        median: Some(m),
                        min: Some(lo),
                        max: Some(hi),
                        ..
                    }) => {
                        let _ = write!(
                            s,
                            " {} | {}–{} |",
                            fmt_ratio(*m),
                            fmt_ratio(*lo),
                            fmt_ratio(*hi)
                        );
                    }
                    _ => s.push_str("  |  |"),
                }
            }
        }
        s.push('\n');
    }
    let notes = notes(r);
    if !notes.is_empty() {
        s.push_str("\nNotes:\n");
        for n in notes {
            let _ = writeln!(s, "- {}", n.replace('\n', " "));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(metric: &str, count: bool, cells: Vec<Cell>) -> Row {
        Row {
            group: "g".into(),
            metric: metric.into(),
            better: Better::Higher,
            count,
            cells,
        }
    }

    #[test]
    fn aggregates_medians_and_per_run_ratios() {
        use Cell::{Num, Text};
        let servers = [ServerKind::Wasmgate, ServerKind::Ws, ServerKind::Socketio];
        // Three runs; wasmgate ÷ ws is 2.0, 1.5 and 3.0 run by run; Socket.IO failed once.
        let runs = vec![
            vec![
                row("replies/s", false, vec![Num(200.0), Num(100.0), Num(50.0)]),
                row("errors", true, vec![Num(0.0), Num(0.0), Num(1.0)]),
            ],
            vec![row(
                "replies/s",
                false,
                vec![Num(150.0), Num(100.0), Text("failed")],
            )],
            vec![
                row("replies/s", false, vec![Num(300.0), Num(100.0), Num(40.0)]),
                row("errors", true, vec![Num(0.0), Num(0.0), Num(3.0)]),
            ],
        ];
        let sum = aggregate(&servers, &runs);
        assert_eq!(sum.len(), 2, "one line per (group, metric): {sum:?}");
        let r = &sum[0];
        assert_eq!(r.metric, "replies/s");
        assert_eq!(r.cells[0].median, Some(200.0));
        assert_eq!(r.cells[1].median, Some(100.0));
        assert_eq!(r.cells[2].per_run, vec![Some(50.0), None, Some(40.0)]);
        assert_eq!(r.cells[2].median, Some(45.0));
        assert_eq!(r.cells[2].text, "failed");
        assert_eq!(r.ratios.len(), 2, "wasmgate and Socket.IO, each ÷ ws");
        let w = &r.ratios[0];
        assert_eq!(w.server, ServerKind::Wasmgate);
        assert_eq!(w.per_run, vec![Some(2.0), Some(1.5), Some(3.0)]);
        assert_eq!((w.median, w.min, w.max), (Some(2.0), Some(1.5), Some(3.0)));
        let sio = &r.ratios[1];
        assert_eq!(sio.per_run, vec![Some(0.5), None, Some(0.4)]);
        assert_eq!((sio.min, sio.max), (Some(0.4), Some(0.5)));
        // A count has no ratio; a row missing from a run counts as no number there.
        let e = &sum[1];
        assert!(e.ratios.is_empty());
        assert_eq!(e.cells[2].per_run, vec![Some(1.0), None, Some(3.0)]);
        assert_eq!(e.cells[2].median, Some(2.0));
    }

    #[test]
    fn without_node_ws_there_are_no_ratios() {
        let runs = vec![vec![row("replies/s", false, vec![Cell::Num(1.0)])]];
        let sum = aggregate(&[ServerKind::Wasmgate], &runs);
        assert!(sum[0].ratios.is_empty());
        assert_eq!(sum[0].cells[0].median, Some(1.0));
    }

    /// `--servers wasmgate,cluster`: the cluster is judged against one node, run by run.
    #[test]
    fn a_cluster_without_node_ws_is_divided_by_one_node() {
        use Cell::Num;
        let runs = vec![
            vec![row("p99 (ms)", false, vec![Num(2.0), Num(3.0)])],
            vec![row("p99 (ms)", false, vec![Num(4.0), Num(4.0)])],
        ];
        let sum = aggregate(&[ServerKind::Wasmgate, ServerKind::Cluster], &runs);
        let r = &sum[0].ratios;
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].server, ServerKind::Cluster);
        assert_eq!(r[0].per_run, vec![Some(1.5), Some(1.0)]);
        // With Node ws in the run, ws stays the reference.
        let runs = vec![vec![row(
            "p99 (ms)",
            false,
            vec![Num(2.0), Num(3.0), Num(1.0)],
        )]];
        let servers = [ServerKind::Wasmgate, ServerKind::Cluster, ServerKind::Ws];
        let sum = aggregate(&servers, &runs);
        assert_eq!(sum[0].ratios.len(), 2);
        assert_eq!(sum[0].ratios[1].per_run, vec![Some(3.0)]);
    }
}
