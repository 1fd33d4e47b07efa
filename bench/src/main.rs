//! `wasmgate-bench`: a load generator that runs the same scenarios against wasmgate, a Node
//! `ws` server and a Socket.IO server, and reports absolute numbers and ratios.
//!
//! It runs on a single-threaded tokio runtime (`--client-threads` for more) with small
//! per-connection buffers so that it stays much cheaper per connection than the servers it
//! measures (pin it to its own core). `--runs N` repeats every selected scenario against every
//! server N times and reports medians and per-run ratios.

mod client;
mod cpu;
mod fleet;
mod http;
mod machine;
mod params;
mod report;
mod scenario;
mod server;
mod stats;

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::params::Params;
use crate::report::{Report, RunReport};
use crate::scenario::Scenario;
use crate::scenario::fanout::Via;
use crate::server::{Launcher, ServerKind};

#[derive(Parser)]
#[command(version, about = "Benchmarks wasmgate against Node ws and Socket.IO")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Servers to measure, comma-separated.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "wasmgate,ws,socketio"
    )]
    servers: Vec<ServerKind>,
    /// Tiny sizes (tens of connections): checks every path in seconds.
    #[arg(long, global = true)]
    smoke: bool,
    /// The gateway binary [default: `wasmgate` next to this binary].
    #[arg(long, global = true, env = "WASMGATE_BIN")]
    wasmgate_bin: Option<PathBuf>,
    /// Rust echo plugin component for the plugin echo and hot-reload scenarios.
    #[arg(long, global = true, env = "WASMGATE_ECHO_WASM")]
    echo_wasm: Option<PathBuf>,
    /// JavaScript echo plugin component (bench/plugins/js-echo) for the plugin echo scenario.
    #[arg(long, global = true, env = "WASMGATE_JS_ECHO_WASM")]
    js_echo_wasm: Option<PathBuf>,
    /// Python echo plugin component (bench/plugins/py-echo) for the plugin echo scenario.
    #[arg(long, global = true, env = "WASMGATE_PY_ECHO_WASM")]
    py_echo_wasm: Option<PathBuf>,
    /// Chat plugin component (plugins/chat) for the soak.
    #[arg(long, global = true, env = "WASMGATE_CHAT_WASM")]
    chat_wasm: Option<PathBuf>,
    /// Node executable for the peers.
    #[arg(long, global = true, default_value = "node")]
    node: PathBuf,
    /// Directory of the peers (with node_modules installed by `npm ci`).
    #[arg(long, global = true, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/peers"))]
    peers_dir: PathBuf,
    /// Pin every server to these CPUs (`taskset -c LIST`).
    #[arg(long, global = true)]
    server_cpu: Option<String>,
    /// Write the full results as JSON here.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// Write the Markdown report here (it always goes to stdout too).
    #[arg(long, global = true)]
    markdown: Option<PathBuf>,
    /// Override the idle-memory levels, e.g. `1000,10000,19000`.
    #[arg(long, global = true, value_delimiter = ',')]
    idle_levels: Option<Vec<usize>>,
    /// Override the number of fan-out clients.
    #[arg(long, global = true)]
    fanout_clients: Option<usize>,
    /// Address the fan-out clients as one system (`send_to_system`) or one group
    /// (`send_to_group`; join notices make its setup quadratic where the server sends them).
    #[arg(long, global = true)]
    fanout_via: Option<Via>,
    /// Override the number of echo clients.
    #[arg(long, global = true)]
    echo_clients: Option<usize>,
    /// Override the number of connect-storm connections.
    #[arg(long, global = true)]
    storm_conns: Option<usize>,
    /// Override the number of plugin swaps in the hot-reload scenario.
    #[arg(long, global = true)]
    reload_swaps: Option<usize>,
    /// Length of the soak's steady load, in seconds [full: 600, smoke: 15].
    #[arg(long, global = true)]
    soak_duration: Option<u64>,
    /// Long-lived clients of the soak [full: 200, smoke: 20].
    #[arg(long, global = true)]
    soak_pool: Option<usize>,
    /// Short-lived clients the soak connects per second [full: 40, smoke: 10].
    #[arg(long, global = true)]
    soak_churn: Option<u32>,
    /// API pushes per second during the soak [full: 20, smoke: 10].
    #[arg(long, global = true)]
    soak_pushes: Option<u32>,
    /// Apply the soak's RSS criterion (end ≤ 1.10 × warm-up) even in a smoke run.
    #[arg(long, global = true)]
    soak_check_rss: bool,
    /// Runs: each runs every selected scenario against every server (fresh server processes).
    #[arg(long, global = true, default_value_t = 1)]
    runs: usize,
    /// Only these scenarios (comma-separated: idle, fanout, fanout-group, latency, echo,
    /// echo-native, echo-app, scaling, storm, reload, soak), in the order of `all`.
    #[arg(long, global = true, value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// The CPU layout's name, for the report (scripts/bench.sh applies it with `taskset`).
    #[arg(long, global = true, default_value = "unpinned")]
    layout: String,
    /// Worker threads of the load generator (1 = a current-thread runtime).
    #[arg(long, global = true, default_value_t = 1)]
    client_threads: usize,
    /// `[plugins.echo] instances = N` in the gateways of the echo scaling and hot-reload
    /// scenarios (left out when not given: a gateway without the instance pool refuses it).
    #[arg(long, global = true)]
    plugin_instances: Option<usize>,
    /// The CPU list of the one-core half of the echo scaling scenario.
    #[arg(long, global = true)]
    scaling_cpu: Option<String>,
    /// Rounds of handler work per message in the echo scaling scenario [full: 200000, smoke: 1000].
    #[arg(long, global = true)]
    scaling_work: Option<u32>,
    /// Clients connected to the system of the group fan-out [full: 10000, smoke: 60].
    #[arg(long, global = true)]
    group_system_clients: Option<usize>,
    /// Members of the group of the group fan-out [full: 1000, smoke: 20].
    #[arg(long, global = true)]
    group_members: Option<usize>,
}

#[derive(Subcommand, Clone, Copy)]
enum Command {
    /// Idle memory per connection.
    Idle,
    /// Broadcast to one group: delivery times, then sustained rate.
    Fanout,
    /// Echo round trips: native ping/pong and application echo.
    Echo,
    /// Connections per second.
    Storm,
    /// Plugin replaced under load (wasmgate only).
    Reload,
    /// One `send_to_client` at a time, from the HTTP call to the client (across nodes in a
    /// cluster).
    Latency,
    /// Minutes of connect/disconnect churn, chat and pushes: memory and errors (wasmgate
    /// only; not part of `all`).
    Soak,
    /// Every scenario but the soak.
    All,
}

impl Command {
    fn scenarios(self) -> Vec<Scenario> {
        match self {
            Command::Idle => vec![Scenario::Idle],
            Command::Fanout => vec![Scenario::Fanout],
            Command::Echo => vec![Scenario::EchoNative, Scenario::EchoApp],
            Command::Storm => vec![Scenario::Storm],
            Command::Reload => vec![Scenario::Reload],
            Command::Latency => vec![Scenario::Latency],
            Command::Soak => vec![Scenario::Soak],
            Command::All => Scenario::ALL.to_vec(),
        }
    }
}

/// The command's scenarios, narrowed to `--only` when given (kept in the command's order).
fn selected(cli: &Cli) -> Result<Vec<Scenario>> {
    let all = cli.command.scenarios();
    let Some(only) = &cli.only else {
        return Ok(all);
    };
    let mut wanted = Vec::new();
    for name in only {
        wanted.extend(Scenario::parse_only(name).map_err(anyhow::Error::msg)?);
    }
    let out: Vec<Scenario> = all.into_iter().filter(|s| wanted.contains(s)).collect();
    if out.is_empty() {
        anyhow::bail!(
            "--only {} selects none of the command's scenarios",
            only.join(",")
        );
    }
    Ok(out)
}

fn params(cli: &Cli) -> Params {
    let mut p = if cli.smoke {
        Params::smoke()
    } else {
        Params::full()
    };
    if let Some(v) = &cli.idle_levels {
        p.idle_levels.clone_from(v);
    }
    p.fanout_clients = cli.fanout_clients.unwrap_or(p.fanout_clients);
    p.fanout_via = cli.fanout_via.unwrap_or(p.fanout_via);
    p.echo_clients = cli.echo_clients.unwrap_or(p.echo_clients);
    p.storm_conns = cli.storm_conns.unwrap_or(p.storm_conns);
    p.reload_swaps = cli.reload_swaps.unwrap_or(p.reload_swaps);
    p.soak_secs = cli.soak_duration.unwrap_or(p.soak_secs);
    p.soak_pool = cli.soak_pool.unwrap_or(p.soak_pool);
    p.soak_churn_per_sec = cli.soak_churn.unwrap_or(p.soak_churn_per_sec);
    p.soak_pushes_per_sec = cli.soak_pushes.unwrap_or(p.soak_pushes_per_sec);
    p.soak_check_rss |= cli.soak_check_rss;
    p.plugin_instances = cli.plugin_instances.or(p.plugin_instances);
    p.scaling_work = cli.scaling_work.unwrap_or(p.scaling_work);
    if let Some(c) = &cli.scaling_cpu {
        p.scaling_cpu.clone_from(c);
    }
    p.group_system_clients = cli.group_system_clients.unwrap_or(p.group_system_clients);
    p.group_members = cli.group_members.unwrap_or(p.group_members);
    p
}

fn launcher(cli: &Cli, cache_dir: &std::path::Path) -> Launcher {
    let wasmgate_bin = cli.wasmgate_bin.clone().or_else(|| {
        let exe = std::env::current_exe().ok()?;
        let sibling = exe.parent()?.join("wasmgate");
        sibling.is_file().then_some(sibling)
    });
    let existing = |p: &Option<PathBuf>| {
        p.clone().filter(|p| {
            let found = p.is_file();
            if !found {
                tracing::warn!(path = %p.display(), "plugin not found; its rows will be skipped");
            }
            found
        })
    };
    Launcher {
        wasmgate_bin,
        echo_wasm: existing(&cli.echo_wasm),
        js_echo_wasm: existing(&cli.js_echo_wasm),
        py_echo_wasm: existing(&cli.py_echo_wasm),
        chat_wasm: existing(&cli.chat_wasm),
        node: cli.node.clone(),
        peers_dir: cli.peers_dir.clone(),
        server_cpu: cli.server_cpu.clone(),
        cache_dir: Some(cache_dir.to_path_buf()),
        plugin_instances: None,
    }
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "wasmgate_bench=info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let p = params(&cli);
    let scenarios = selected(&cli)?;
    anyhow::ensure!(cli.runs >= 1, "--runs must be at least 1");
    let cache = tempfile::Builder::new()
        .prefix("wasmgate-bench-cache-")
        .tempdir()
        .context("compile cache directory")?;
    let l = launcher(&cli, cache.path());
    let mut servers = cli.servers.clone();
    servers.dedup();
    // One thread by default: the load generator must not compete with the server for the
    // other core.
    let rt = if cli.client_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.client_threads)
            .enable_all()
            .build()
    }
    .context("tokio runtime")?;
    let load_before = machine::loadavg();
    let mut runs = Vec::new();
    for run in 1..=cli.runs {
        tracing::info!(run, of = cli.runs, "run");
        let started = std::time::Instant::now();
        let load = machine::loadavg();
        let servers = rt.block_on(scenario::run_all(&l, &servers, &scenarios, &p));
        runs.push(RunReport {
            run,
            load_before: load,
            secs: started.elapsed().as_secs_f64(),
            servers,
        });
    }
    let report = Report {
        smoke: cli.smoke,
        machine: machine::collect(&l, load_before),
        summary: report::summarize(&p, &runs),
        params: p,
        layout: cli.layout.clone(),
        client_threads: cli.client_threads.max(1),
        runs,
    };
    let md = report::markdown(&report);
    if let Some(path) = &cli.markdown {
        std::fs::write(path, &md).with_context(|| format!("write {}", path.display()))?;
    }
    if let Some(path) = &cli.json {
        let json = serde_json::to_string_pretty(&report).context("encode JSON")?;
        std::fs::write(path, json).with_context(|| format!("write {}", path.display()))?;
    }
    std::io::stdout()
        .write_all(md.as_bytes())
        .context("stdout")?;
    let failed = report
        .runs
        .iter()
        .flat_map(|r| &r.servers)
        .any(scenario::ServerReport::any_failed);
    if failed {
        anyhow::bail!("some scenarios failed (see the notes of the report)");
    }
    Ok(())
}
