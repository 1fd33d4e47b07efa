//! Starting, measuring and stopping the servers under test: one fresh process per scenario,
//! on a free port, optionally pinned to a CPU with `taskset`.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

use crate::client::{Proto, Target};
use crate::http::Api;

/// The servers the benchmark compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    /// The gateway of this repository.
    Wasmgate,
    /// `bench/peers/ws-server.js` (Node `ws`).
    Ws,
    /// `bench/peers/socketio-server.js` (Socket.IO v4).
    Socketio,
    /// Three wasmgate nodes of one cluster on a `redis-server` of the run's own (issue 12):
    /// clients spread round-robin over the nodes, the HTTP API called on the first.
    Cluster,
}

impl ServerKind {
    /// Name used in tables.
    pub fn label(self) -> &'static str {
        match self {
            ServerKind::Wasmgate => "wasmgate",
            ServerKind::Ws => "Node ws",
            ServerKind::Socketio => "Socket.IO",
            ServerKind::Cluster => "wasmgate ×3",
        }
    }

    /// Protocol its clients speak.
    pub fn proto(self) -> Proto {
        match self {
            ServerKind::Wasmgate | ServerKind::Ws | ServerKind::Cluster => Proto::Gateway,
            ServerKind::Socketio => Proto::SocketIo,
        }
    }
}

/// The language an echo plugin is written in: scenario 3 measures one plugin per language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginLang {
    /// `tests/guests/hostcalls` through the Rust SDK (also the hot-reload scenario's plugin).
    Rust,
    /// `bench/plugins/js-echo` (QuickJS through componentize-qjs).
    Js,
    /// `bench/plugins/py-echo` (CPython through componentize-py).
    Python,
}

impl PluginLang {
    /// Every language, in table order.
    pub const ALL: [PluginLang; 3] = [PluginLang::Rust, PluginLang::Js, PluginLang::Python];

    /// Name used in tables.
    pub fn label(self) -> &'static str {
        match self {
            PluginLang::Rust => "Rust",
            PluginLang::Js => "JavaScript",
            PluginLang::Python => "Python",
        }
    }
}

/// The system the gateway serves with the echo plugin (and the peers with their JS echo).
pub const ECHO_SYSTEM: &str = "echo";
/// The plain system every server has at startup.
pub const BENCH_SYSTEM: &str = "bench";
/// The system of the group fan-out: declared in wasmgate's configuration with
/// `group_notices = false` (a group of N members costs N²/2 join notices to build otherwise),
/// registered through the API on the peers (which send no notices).
pub const QUIET_SYSTEM: &str = "quiet";
/// File name of the echo plugin inside the gateway's plugins directory.
pub const ECHO_PLUGIN_FILE: &str = "echo.wasm";
/// The echo plugin's name: its file name without `.wasm`.
pub const ECHO_PLUGIN_NAME: &str = "echo";

/// The chat plugin's name (`plugins/chat`, installed as `chat.wasm`): the system it serves.
pub const CHAT_PLUGIN_NAME: &str = "chat";

/// A plugin to install in a gateway: `<name>.wasm` in its plugins folder, serving the system
/// `<name>` (a plugin serves the system named like its file).
#[derive(Clone, Copy, Debug)]
pub struct PluginInstall<'a> {
    /// The component.
    pub wasm: &'a Path,
    /// Its file name without `.wasm`, and the system it serves.
    pub name: &'a str,
}

/// How to start each server.
#[derive(Clone, Debug)]
pub struct Launcher {
    /// The `wasmgate` binary, when available.
    pub wasmgate_bin: Option<PathBuf>,
    /// The Rust echo plugin component, when available (plugin echo and hot reload).
    pub echo_wasm: Option<PathBuf>,
    /// The JavaScript echo plugin component, when available.
    pub js_echo_wasm: Option<PathBuf>,
    /// The Python echo plugin component, when available.
    pub py_echo_wasm: Option<PathBuf>,
    /// The chat plugin (`plugins/chat`), for the soak, when available.
    pub chat_wasm: Option<PathBuf>,
    /// `node` executable.
    pub node: PathBuf,
    /// Directory holding the peers and their `node_modules`.
    pub peers_dir: PathBuf,
    /// CPU list for `taskset -c`, keeping the server off the load generator's core.
    pub server_cpu: Option<String>,
    /// The gateway's compile cache, shared by every gateway of the run so that each start
    /// does not compile the same plugin again (startup is not what is measured).
    pub cache_dir: Option<PathBuf>,
    /// `[plugins.<name>] instances` for the gateway's plugin; `None` leaves the key out (the
    /// gateway's default; a gateway without the instance pool refuses the key).
    pub plugin_instances: Option<usize>,
}

/// A running server.
pub struct Server {
    /// Which server this is.
    pub kind: ServerKind,
    /// Its listening port on 127.0.0.1.
    pub port: u16,
    /// Its process id (taskset execs, so this is the server itself), for RSS readings.
    pub pid: u32,
    /// The gateway's plugins directory (empty directory for the peers).
    pub plugins_dir: PathBuf,
    /// The name of the plugin it was started with, if any.
    plugin: Option<String>,
    child: Child,
    log_path: PathBuf,
    /// Owns the scratch directory (config, plugins, log) for the server's lifetime.
    _dir: tempfile::TempDir,
    /// [`ServerKind::Cluster`]: the other nodes, and the `redis-server` (killed on drop).
    others: Vec<Server>,
    redis: Option<(Child, u32)>,
    /// The cluster's `redis-server` port.
    redis_port: Option<u16>,
}

/// How long a gateway may take to serve its echo plugin after it was started: the first start
/// of a run compiles the component (the 18 MB Python one takes 6–25 s on this machine kind,
/// more on a busy one, and the gateway answers HTTP only after its initial plugin load).
const PLUGIN_LOAD_LIMIT: Duration = Duration::from_secs(180);

impl Launcher {
    /// The echo plugin of `lang`, when it was given and exists.
    pub fn echo_plugin(&self, lang: PluginLang) -> Option<&Path> {
        match lang {
            PluginLang::Rust => self.echo_wasm.as_deref(),
            PluginLang::Js => self.js_echo_wasm.as_deref(),
            PluginLang::Python => self.py_echo_wasm.as_deref(),
        }
    }

    /// Starts `kind` on a free port and waits until it accepts connections. With `plugin`,
    /// the gateway gets that component (the peers ignore it) and this returns once it serves.
    pub async fn start_with(
        &self,
        kind: ServerKind,
        plugin: Option<PluginInstall<'_>>,
    ) -> Result<Server> {
        if kind == ServerKind::Cluster {
            return self.start_cluster(plugin).await;
        }
        self.start_one(kind, plugin, &[]).await
    }

    /// Three wasmgate nodes on a `redis-server` of their own (free port, nothing persisted).
    async fn start_cluster(&self, plugin: Option<PluginInstall<'_>>) -> Result<Server> {
        let port = free_port()?;
        let mut redis = Command::new("redis-server");
        redis
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let redis = redis
            .spawn()
            .context("start redis-server (apt-get install redis-server)")?;
        let redis_pid = redis.id().context("redis-server exited at once")?;
        let start = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if start.elapsed() > Duration::from_secs(10) {
                bail!("redis-server not listening after 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let url = format!("redis://127.0.0.1:{port}/0");
        let mut nodes = Vec::new();
        for id in 1..=3u32 {
            let args = [
                "--redis".to_owned(),
                url.clone(),
                "--node-id".to_owned(),
                id.to_string(),
                "--redis-prefix".to_owned(),
                "bench:".to_owned(),
            ];
            let mut node = self.start_one(ServerKind::Wasmgate, plugin, &args).await?;
            node.kind = ServerKind::Cluster;
            nodes.push(node);
        }
        let mut first = nodes.remove(0);
        first.others = nodes;
        first.redis = Some((redis, redis_pid));
        first.redis_port = Some(port);
        Ok(first)
    }

    async fn start_one(
        &self,
        kind: ServerKind,
        plugin: Option<PluginInstall<'_>>,
        extra_args: &[String],
    ) -> Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix("wasmgate-bench-")
            .tempdir()
            .context("scratch directory")?;
        let plugins_dir = dir.path().join("plugins");
        std::fs::create_dir(&plugins_dir).context("plugins directory")?;
        let port = free_port()?;
        let (program, args) = match kind {
            ServerKind::Wasmgate => {
                let bin = self
                    .wasmgate_bin
                    .clone()
                    .context("wasmgate binary not found (build it or set WASMGATE_BIN)")?;
                if let Some(p) = plugin {
                    std::fs::copy(p.wasm, plugins_dir.join(format!("{}.wasm", p.name)))
                        .with_context(|| format!("copy {}", p.wasm.display()))?;
                }
                let config = dir.path().join("wasmgate.toml");
                std::fs::write(
                    &config,
                    wasmgate_config(
                        plugin.map(|p| p.name),
                        self.cache_dir.as_deref(),
                        self.plugin_instances,
                    ),
                )
                .context("write config")?;
                let mut args = vec![
                    "--listen".into(),
                    format!("127.0.0.1:{port}"),
                    "--plugins".into(),
                    plugins_dir.display().to_string(),
                    "--config".into(),
                    config.display().to_string(),
                ];
                args.extend(extra_args.iter().cloned());
                (bin, args)
            }
            ServerKind::Cluster => bail!("a cluster is started by start_cluster"),
            ServerKind::Ws | ServerKind::Socketio => {
                let script = match kind {
                    ServerKind::Ws => "ws-server.js",
                    _ => "socketio-server.js",
                };
                let script = self.peers_dir.join(script);
                if !self.peers_dir.join("node_modules").join("ws").is_dir() {
                    bail!(
                        "{}/node_modules is missing: run `npm ci` there (scripts/bench.sh does)",
                        self.peers_dir.display()
                    );
                }
                let args = vec![
                    script.display().to_string(),
                    "--port".into(),
                    port.to_string(),
                ];
                (self.node.clone(), args)
            }
        };
        let log_path = dir.path().join("server.log");
        let log = File::create(&log_path).context("server log")?;
        let mut cmd = match &self.server_cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        cmd.args(&args)
            // The gateway reads WASMGATE_* as configuration and rejects unknown keys: the
            // variables meant for this harness must not reach it.
            .env_remove("WASMGATE_BIN")
            .env_remove("WASMGATE_ECHO_WASM")
            .env_remove("WASMGATE_JS_ECHO_WASM")
            .env_remove("WASMGATE_PY_ECHO_WASM")
            .env_remove("WASMGATE_CHAT_WASM")
            .env("NO_COLOR", "1")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("log handle")?)
            .stderr(log)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .with_context(|| format!("start {}", program.display()))?;
        let pid = child.id().context("server exited at once")?;
        let mut server = Server {
            kind,
            port,
            pid,
            plugins_dir,
            plugin: plugin
                .filter(|_| kind == ServerKind::Wasmgate)
                .map(|p| p.name.to_owned()),
            child,
            log_path,
            _dir: dir,
            others: Vec::new(),
            redis: None,
            redis_port: None,
        };
        server.wait_ready(Duration::from_secs(60)).await?;
        if server.plugin.is_some() {
            server.wait_plugin_live(PLUGIN_LOAD_LIMIT).await?;
        }
        Ok(server)
    }
}

/// The gateway config: the `bench` system, the `quiet` system (no group notices), plus the
/// system the plugin file `<plugin>.wasm` serves (a plugin serves the system named like its
/// file), with `instances` of that plugin when given.
fn wasmgate_config(
    plugin: Option<&str>,
    cache_dir: Option<&Path>,
    instances: Option<usize>,
) -> String {
    let mut s = String::new();
    if let Some(dir) = cache_dir {
        // TOML basic string: escape what a path may hold.
        let dir = dir
            .display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"");
        s.push_str(&format!("cache_dir = \"{dir}\"\n\n"));
    }
    s.push_str(&format!("[systems.{BENCH_SYSTEM}]\n"));
    s.push_str(&format!(
        "\n[systems.{QUIET_SYSTEM}]\ngroup_notices = false\n"
    ));
    if let Some(name) = plugin {
        s.push_str(&format!("\n[systems.{name}]\n"));
        if let Some(n) = instances {
            s.push_str(&format!("\n[plugins.{name}]\ninstances = {n}\n"));
        }
    }
    s
}

/// A port that was free a moment ago (bind to 0, read it, release it).
fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("find a free port")?;
    Ok(l.local_addr().context("local addr")?.port())
}

impl Server {
    /// How clients reach it.
    pub fn target(&self) -> Target {
        Target {
            proto: self.kind.proto(),
            addr: self.addr(),
        }
    }

    /// Every node clients may connect to (one, but for a cluster): connection `i` goes to
    /// `targets()[i % len]`.
    pub fn targets(&self) -> Vec<Target> {
        std::iter::once(self)
            .chain(&self.others)
            .map(Server::target)
            .collect()
    }

    /// Commands the cluster's Redis has run so far (`INFO commandstats`, every command);
    /// `None` without one.
    pub async fn redis_commands(&self) -> Option<u64> {
        let port = self.redis_port?;
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "INFO", "commandstats"])
            .output()
            .await
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        Some(
            text.lines()
                .filter_map(|l| {
                    l.split("calls=")
                        .nth(1)?
                        .split(',')
                        .next()?
                        .parse::<u64>()
                        .ok()
                })
                .sum(),
        )
    }

    /// Every process whose CPU and memory the server costs (a cluster: its nodes and Redis).
    pub fn pids(&self) -> Vec<u32> {
        std::iter::once(self.pid)
            .chain(self.others.iter().map(|o| o.pid))
            .chain(self.redis.as_ref().map(|(_, pid)| *pid))
            .collect()
    }

    /// Its listening address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    async fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().context("poll server")? {
                bail!(
                    "{} exited during startup ({status}): {}",
                    self.kind.label(),
                    self.log_tail()
                );
            }
            if tokio::net::TcpStream::connect(self.addr()).await.is_ok() {
                return Ok(());
            }
            if start.elapsed() > limit {
                bail!(
                    "{} not listening after {limit:?}: {}",
                    self.kind.label(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until `GET /api/plugins` shows the plugin serving a version: until then the
    /// gateway drops the frames meant for it, which would count as lost. The gateway accepts
    /// TCP connections (the kernel's backlog) but answers only once its initial plugin load is
    /// done, so an unanswered call is retried until `limit`.
    async fn wait_plugin_live(&mut self, limit: Duration) -> Result<()> {
        let start = Instant::now();
        let mut api = Api::with_timeout(self.addr(), Duration::from_secs(5));
        let name = self.plugin.clone().unwrap_or_default();
        loop {
            self.check_alive()?;
            let last = match plugin_state(&mut api, &name).await {
                Ok(state) => {
                    if state.version.is_some() {
                        tracing::info!(
                            server = self.kind.label(),
                            after_ms = start.elapsed().as_millis(),
                            plugin = name.as_str(),
                            "plugin serving"
                        );
                        return Ok(());
                    }
                    format!("{state:?}")
                }
                Err(e) => {
                    // A fresh connection: the old one may still owe the unanswered reply.
                    api = Api::with_timeout(self.addr(), Duration::from_secs(5));
                    format!("{e:#}")
                }
            };
            if start.elapsed() > limit {
                bail!("the plugin {name} is not serving after {limit:?}: {last}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Resident set size of the server's processes, in KiB (`VmRSS` of /proc/PID/status;
    /// a cluster: its nodes and Redis together).
    pub fn rss_kib(&self) -> Result<u64> {
        self.pids().into_iter().map(rss_kib).sum()
    }

    /// Fails with the log tail if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait().context("poll server")? {
            bail!(
                "{} exited ({status}): {}",
                self.kind.label(),
                self.log_tail()
            );
        }
        Ok(())
    }

    /// The server's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last lines of the server's output, for error messages.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        // Backtrace frames are numbered and indented: keep the lines that say what happened.
        // Only after "Stack backtrace:": before it, "0: invalid configuration: ..." is anyhow's
        // chain of causes, the one line that says why a gateway refused to start.
        let mut in_trace = false;
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| {
                let t = l.trim_start();
                if t == "Stack backtrace:" {
                    in_trace = true;
                    return false;
                }
                let frame = t.starts_with("at ")
                    || t.split_once(": ")
                        .is_some_and(|(n, _)| n.chars().all(|c| c.is_ascii_digit()));
                if !frame {
                    in_trace = false;
                }
                let trace_frame = frame && in_trace;
                !trace_frame && !t.is_empty()
            })
            .collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        if tail.is_empty() {
            "(no output)".into()
        } else {
            format!("last output:\n{tail}")
        }
    }

    /// Kills the process (a cluster: every node, then Redis) and waits for it.
    pub async fn stop(mut self) {
        for other in std::mem::take(&mut self.others) {
            Box::pin(other.stop()).await;
        }
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        if let Some((mut redis, _)) = self.redis.take() {
            let _ = redis.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(10), redis.wait()).await;
        }
    }
}

/// What wasmgate's `GET /api/plugins` says of one plugin.
#[derive(Debug)]
pub struct EchoPluginState {
    /// Successful loads so far.
    pub reloads: u64,
    /// The serving version (blake3 of the component), `None` before one serves.
    pub version: Option<String>,
    /// The last failed load or trap.
    pub last_error: Option<String>,
    /// The version each instance serves, when the entry lists its instances (`instances`:
    /// objects with a `version`; absent before the instance pool); empty otherwise.
    pub instance_versions: Vec<Option<String>>,
}

impl EchoPluginState {
    /// Whether build `hash` serves: on every listed instance, else as the plugin's version.
    pub fn serves(&self, hash: &str) -> bool {
        self.version.as_deref() == Some(hash)
            && self
                .instance_versions
                .iter()
                .all(|v| v.as_deref() == Some(hash))
    }

    /// Which field [`EchoPluginState::serves`] read.
    pub fn live_from(&self) -> &'static str {
        if self.instance_versions.is_empty() {
            "plugin version"
        } else {
            "every instance's version"
        }
    }
}

/// The echo plugin's entry of `GET /api/plugins`; an error when it is not listed.
pub async fn echo_plugin_state(api: &mut Api) -> Result<EchoPluginState> {
    plugin_state(api, ECHO_PLUGIN_NAME).await
}

/// The entry of plugin `name` in `GET /api/plugins`; an error when it is not listed.
pub async fn plugin_state(api: &mut Api, name: &str) -> Result<EchoPluginState> {
    let data = api.get("/api/plugins").await?;
    let entry = data["list"]
        .as_array()
        .and_then(|l| l.iter().find(|p| p["name"] == name))
        .with_context(|| format!("plugin {name} not listed: {data}"))?;
    Ok(EchoPluginState {
        reloads: entry["reloads"].as_u64().unwrap_or(0),
        version: entry["version"].as_str().map(str::to_owned),
        last_error: entry["lastError"].as_str().map(str::to_owned),
        instance_versions: instance_versions(entry),
    })
}

/// Each instance's `version` when the plugin's entry lists instances that carry one (even
/// `null`: an instance between two builds); empty when they do not say (the pool's first API
/// lists instances with queue and memory figures only), so that the plugin's `version` decides.
fn instance_versions(entry: &serde_json::Value) -> Vec<Option<String>> {
    let Some(list) = entry["instances"].as_array() else {
        return Vec::new();
    };
    if !list.iter().any(|i| i.get("version").is_some()) {
        return Vec::new();
    }
    list.iter()
        .map(|i| i["version"].as_str().map(str::to_owned))
        .collect()
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    parse_vm_rss(&status).with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_config_names_the_systems_and_the_shared_cache() {
        let quiet = "\n[systems.quiet]\ngroup_notices = false\n";
        assert_eq!(
            wasmgate_config(None, None, Some(2)),
            format!("[systems.bench]\n{quiet}")
        );
        let c = wasmgate_config(Some(ECHO_SYSTEM), Some(Path::new("/tmp/a \"b\"")), None);
        assert_eq!(
            c,
            format!(
                "cache_dir = \"/tmp/a \\\"b\\\"\"\n\n[systems.bench]\n{quiet}\n[systems.echo]\n"
            )
        );
        let c = wasmgate_config(Some(ECHO_SYSTEM), None, Some(2));
        assert!(
            c.ends_with("\n[systems.echo]\n\n[plugins.echo]\ninstances = 2\n"),
            "{c}"
        );
    }

    #[test]
    fn serving_reads_instance_versions_only_when_listed() {
        let state = |entry: serde_json::Value| EchoPluginState {
            reloads: 0,
            version: entry["version"].as_str().map(str::to_owned),
            last_error: None,
            instance_versions: instance_versions(&entry),
        };
        // Instances without versions (queue figures only): the plugin's version decides.
        let s =
            state(serde_json::json!({"version": "b", "instances": [{"queued": 0}, {"queued": 1}]}));
        assert!(s.serves("b") && !s.serves("a"));
        assert_eq!(s.live_from(), "plugin version");
        // Instances with versions: every one must serve the build.
        let s = state(
            serde_json::json!({"version": "b", "instances": [{"version": "b"}, {"version": "a"}]}),
        );
        assert!(!s.serves("b"));
        assert_eq!(s.live_from(), "every instance's version");
        let s = state(
            serde_json::json!({"version": "b", "instances": [{"version": "b"}, {"version": null}]}),
        );
        assert!(
            !s.serves("b"),
            "an instance between two builds does not serve"
        );
        let s = state(
            serde_json::json!({"version": "b", "instances": [{"version": "b"}, {"version": "b"}]}),
        );
        assert!(s.serves("b"));
        assert!(state(serde_json::json!({"version": "b"})).serves("b"));
    }

    #[test]
    fn reads_vm_rss_of_this_process() {
        assert_eq!(parse_vm_rss("Name:\tx\nVmRSS:\t   1234 kB\n"), Some(1234));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        let own = rss_kib(std::process::id()).expect("own RSS");
        assert!(
            own > 100,
            "RSS of a running test binary is above 100 KiB, got {own}"
        );
    }
}
