//! The run's report: JSON for machines, a Markdown table (absolute numbers and the ratio
//! to Node `ws`) for people.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::cpu::CpuUse;
use crate::machine::MachineInfo;
use crate::params::Params;
use crate::scenario::echo::EchoResult;
use crate::scenario::fanout::Via;
use crate::scenario::reload::ReloadResult;
use crate::scenario::soak::SoakResult;
use crate::scenario::{Outcome, ServerReport};
use crate::server::{PluginLang, ServerKind};

/// Everything one invocation measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// Whether this was the `--smoke` run (tiny numbers, not for quoting).
    pub smoke: bool,
    /// Where it ran.
    pub machine: MachineInfo,
    /// Sizes used.
    pub params: Params,
    /// Per server, per scenario.
    pub servers: Vec<ServerReport>,
}

#[derive(Clone, Copy)]
enum Better {
    Lower,
    Higher,
}

enum Cell {
    Num(f64),
    Text(&'static str),
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

fn rows(r: &Report) -> Vec<Row> {
    use Better::{Higher, Lower};
    let p = &r.params;
    let mut t = Rows {
        servers: &r.servers,
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
        &format!("{sus}: load generator CPU busy (%)"),
        Lower,
        false,
        |s| s.fanout.as_ref(),
        |v| Some(100.0 * v.sustained.cpu.client_secs / v.sustained.cpu.wall_secs.max(1e-9)),
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
        t.add(&g, "p50 latency (ms)", Lower, false, pick, |v| {
            v.latency.as_ref().map(|d| d.p50_ms)
        });
        t.add(&g, "p99 latency (ms)", Lower, false, pick, |v| {
            v.latency.as_ref().map(|d| d.p99_ms)
        });
        t.add(&g, "server CPU per reply (µs)", Lower, false, pick, |v| {
            measurable(&v.cpu).then_some(v.server_us_per_reply)
        });
        t.add(&g, "load generator CPU busy (%)", Lower, false, pick, |v| {
            Some(100.0 * v.cpu.client_secs / v.cpu.wall_secs.max(1e-9))
        });
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
    let g = format!(
        "hot reload, {} swaps, {} clients",
        p.reload_swaps, p.reload_clients
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
    let mut out = Vec::new();
    for s in &r.servers {
        let mut note = |name: &str, o: Option<(&'static str, &str)>| {
            if let Some((what, why)) = o {
                out.push(format!("{} / {name}: {what}: {why}", s.server.label()));
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
    out
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
    let _ = writeln!(
        s,
        "- ↓ lower is better, ↑ higher is better; ratio = server ÷ Node ws\n"
    );
    let ws = r.servers.iter().position(|x| x.server == ServerKind::Ws);
    let _ = write!(s, "| scenario | metric |");
    for x in &r.servers {
        let _ = write!(s, " {} |", x.server.label());
    }
    let others: Vec<usize> = (0..r.servers.len()).filter(|&i| Some(i) != ws).collect();
    if ws.is_some() {
        for &i in &others {
            let _ = write!(s, " {} ÷ ws |", r.servers[i].server.label());
        }
    }
    let _ = write!(s, "\n|---|---|");
    let ncols = r.servers.len() + if ws.is_some() { others.len() } else { 0 };
    s.push_str(&"---:|".repeat(ncols));
    s.push('\n');
    for row in rows(r) {
        let arrow = match row.better {
            Better::Lower => "↓",
            Better::Higher => "↑",
        };
        let _ = write!(s, "| {} | {} {arrow} |", row.group, row.metric);
        for c in &row.cells {
            match c {
                Cell::Num(v) => {
                    let _ = write!(s, " {} |", fmt_num(*v, row.count));
                }
                Cell::Text(t) => {
                    let _ = write!(s, " {t} |");
                }
            }
        }
        if let Some(w) = ws {
            for &i in &others {
                match (&row.cells[i], &row.cells[w]) {
                    (Cell::Num(a), Cell::Num(b)) if *b != 0.0 && !row.count => {
                        let _ = write!(s, " {:.2}× |", a / b);
                    }
                    _ => s.push_str("  |"),
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
