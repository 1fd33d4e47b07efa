//! The `wasmgate` binary: read the configuration, then run the gateway until ctrl-c or SIGTERM;
//! or, as `wasmgate dev <plugin source folder>`, the plugin author's edit loop (`wasmgate::dev`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use wasmgate::config::{Config, LogFormat};
use wasmgate::{dev, plugin, server, telemetry};

/// Why jemalloc and not glibc malloc (memory, issue 11): compiling a plugin allocates hundreds
/// of MB on several threads for a few seconds, and glibc keeps what was freed in its arenas,
/// fragmented, for the life of the process. After a cold compile of the Python chat the gateway
/// held 334 MB of anonymous memory with 84 MB in use (`malloc_stats`); MALLOC_ARENA_MAX=1 and
/// low trim/mmap thresholds only brought it to 247 MB. jemalloc, with its background thread on
/// (the `background_threads` feature) and a 1 s decay (`.cargo/config.toml`), gives freed pages
/// back while the gateway idles: +58 MB over the bare gateway instead of +337 MB. mimalloc was
/// tried first and kept more (v3: +542 MB, v2: +380 MB: it purges only on later allocations).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A WebSocket gateway whose business logic lives in hot-swappable WebAssembly components.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "WASMGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Folder whose *.wasm files are loaded as plugins.
    #[arg(long)]
    plugins: Option<PathBuf>,
    /// Log format [default: text].
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Log filter, e.g. `info` or `wasmgate=debug` [default: info].
    #[arg(long)]
    log_level: Option<String>,
    /// Cluster mode: `redis://HOST:PORT[/db]` (also `WASMGATE_REDIS` or TOML `redis`).
    #[arg(long)]
    redis: Option<String>,
    /// Prefix of the cluster's Redis keys and channels [default: wasmgate:].
    #[arg(long)]
    redis_prefix: Option<String>,
    /// This node's id (0 to 4294967295), in every clientId [default: random].
    #[arg(long)]
    node_id: Option<u32>,
    /// Shut down when standard input reaches end of file. `wasmgate dev` starts its gateway
    /// with this and holds the pipe: however dev ends (Ctrl-C, a closed terminal's SIGHUP,
    /// SIGKILL), the kernel closes the pipe and the gateway stops instead of keeping the port.
    #[arg(long, hide = true)]
    exit_on_stdin_eof: bool,
    /// Without a subcommand, run the gateway.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build a plugin on every save and hot-reload it into a local gateway (started if none
    /// answers), printing build errors and the plugin's log lines.
    Dev(dev::DevArgs),
    /// Compile a plugin component read from standard input into the disk cache of
    /// `--cache-dir` and print `compiler` or `disk-cache`: what the gateway runs in a child
    /// process for every new version, so that the compiler's memory is never the gateway's.
    #[command(hide = true)]
    CompilePlugin {
        /// The gateway's `cache_dir`.
        #[arg(long)]
        cache_dir: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::CompilePlugin { cache_dir }) = &cli.command {
        return compile_plugin(cache_dir);
    }
    // Plugins are compiled by this same binary in child processes (`compile-plugin`).
    plugin::compile_in_child_processes();
    server::runtime()
        .context("starting the tokio runtime")?
        .block_on(run(cli))
}

/// The `compile-plugin` subcommand: its answer on standard output, a failure on standard error
/// with exit status 1.
fn compile_plugin(cache_dir: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write;
    match plugin::compile_plugin_command(cache_dir) {
        Ok(source) => {
            writeln!(std::io::stdout(), "{source}").context("writing the answer")?;
            Ok(())
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{e}");
            std::process::exit(1);
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Dev(args)) = cli.command {
        return dev::run(args).await.context("wasmgate dev");
    }
    let mut config = Config::load(cli.config.as_deref()).context("reading the configuration")?;
    if let Some(listen) = cli.listen {
        config.listen = listen;
    }
    if let Some(dir) = cli.plugins {
        config.plugins_dir = Some(dir);
    }
    if let Some(format) = cli.log_format {
        config.log_format = format;
    }
    if let Some(level) = cli.log_level {
        config.log_level = level;
    }
    if let Some(url) = cli.redis {
        config.redis = Some(url);
    }
    if let Some(prefix) = cli.redis_prefix {
        config.redis_prefix = prefix;
    }
    if let Some(node) = cli.node_id {
        config.node_id = Some(node);
    }
    telemetry::init(config.log_format, &config.log_level);
    let listener =
        server::bind(config.listen).with_context(|| format!("binding {}", config.listen))?;
    // Installed before the gateway says it listens (see `shutdown_signal`).
    let signal = server::shutdown_signal();
    let exit_on_eof = cli.exit_on_stdin_eof;
    let shutdown = async move {
        if exit_on_eof {
            tokio::select! {
                () = signal => {}
                () = server::stdin_closed() => {}
            }
        } else {
            signal.await;
        }
    };
    server::run(listener, config, shutdown)
        .await
        .context("running the gateway")
}
