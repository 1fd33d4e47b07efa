//! The scenarios and the runner that gives each (scenario, server) pair a fresh server.

pub mod echo;
pub mod fanout;
pub mod idle;
pub mod latency;
pub mod reload;
pub mod soak;
pub mod storm;

use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::params::Params;
use crate::server::{
    BENCH_SYSTEM, CHAT_PLUGIN_NAME, ECHO_SYSTEM, Launcher, PluginInstall, PluginLang, Server,
    ServerKind,
};

/// What became of one scenario against one server.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "status", content = "value", rename_all = "lowercase")]
pub enum Outcome<T> {
    /// It ran; the measurements.
    Ok(T),
    /// It does not apply (or a needed file is missing); why.
    Skipped(String),
    /// It was attempted and failed; the error.
    Failed(String),
}

impl<T> Outcome<T> {
    /// Whether it was attempted and failed.
    pub fn is_failed(&self) -> bool {
        matches!(self, Outcome::Failed(_))
    }
}

impl Scenario {
    /// The name `--only` knows it by.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Idle => "idle",
            Scenario::Fanout => "fanout",
            Scenario::EchoNative => "echo-native",
            Scenario::EchoApp => "echo-app",
            Scenario::Storm => "storm",
            Scenario::Reload => "reload",
            Scenario::EchoScaling => "scaling",
            Scenario::FanoutGroup => "fanout-group",
            Scenario::Soak => "soak",
            Scenario::Latency => "latency",
        }
    }

    /// Every scenario `all` runs, in order (not the soak).
    pub const ALL: [Scenario; 9] = [
        Scenario::Idle,
        Scenario::Fanout,
        Scenario::FanoutGroup,
        Scenario::Latency,
        Scenario::EchoNative,
        Scenario::EchoApp,
        Scenario::EchoScaling,
        Scenario::Storm,
        Scenario::Reload,
    ];

    /// The scenarios a `--only` name selects (`echo` = both echo paths).
    pub fn parse_only(name: &str) -> Result<Vec<Scenario>, String> {
        let name = name.trim();
        if name == "echo" {
            return Ok(vec![Scenario::EchoNative, Scenario::EchoApp]);
        }
        Scenario::ALL
            .into_iter()
            .chain([Scenario::Soak])
            .find(|s| s.name() == name)
            .map(|s| vec![s])
            .ok_or_else(|| {
                let known: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                format!(
                    "unknown scenario {name:?} (known: echo, {}, soak)",
                    known.join(", ")
                )
            })
    }
}

/// Scenario 3b: the same application echo with the server on one core, then on all of them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScalingResult {
    /// Plugin instances asked for (wasmgate; `None`: the gateway's default, 1).
    pub instances: Option<usize>,
    /// The CPU list the server was pinned to for `one_core`.
    pub one_core_cpus: String,
    /// Server pinned to one core.
    pub one_core: echo::EchoResult,
    /// Server free on every core.
    pub all_cores: echo::EchoResult,
    /// `all_cores.per_sec ÷ one_core.per_sec`.
    pub speedup: f64,
}

/// What a [`ServerKind::Cluster`] runs: delivery across nodes and memory per connection.
const CLUSTER_SCENARIOS: [Scenario; 4] = [
    Scenario::Idle,
    Scenario::Fanout,
    Scenario::FanoutGroup,
    Scenario::Latency,
];

/// The scenarios, in the order `all` runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Idle memory per connection.
    Idle,
    /// Broadcast to a group.
    Fanout,
    /// Echo answered by the server itself (`ping`/`pong`).
    EchoNative,
    /// Echo answered by application code: on wasmgate one run per plugin language (Rust,
    /// JavaScript, Python), on the peers their JS handler.
    EchoApp,
    /// Connections per second.
    Storm,
    /// Plugin replaced under load (wasmgate only).
    Reload,
    /// Application echo with the server pinned to one core, then free on every core (issue 11:
    /// the plugin instance pool; Node's single-threaded JS handler beside it).
    EchoScaling,
    /// `send_to_group` to a group that is a part of a larger system (issue 13).
    FanoutGroup,
    /// Minutes of churn, chat and pushes, watching memory and errors (wasmgate only).
    Soak,
    /// One `send_to_client` at a time, timed from the HTTP call to the client (issue 12: across
    /// nodes in a cluster).
    Latency,
}

/// Everything measured against one server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServerReport {
    /// Which server.
    pub server: ServerKind,
    /// Scenario 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<Outcome<idle::IdleResult>>,
    /// Scenario 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fanout: Option<Outcome<fanout::FanoutResult>>,
    /// Scenario 3, native path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo_native: Option<Outcome<echo::EchoResult>>,
    /// Scenario 3, application path: wasmgate's Rust plugin, the peers' JS handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo_app: Option<Outcome<echo::EchoResult>>,
    /// Scenario 3, application path through wasmgate's JavaScript plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo_app_js: Option<Outcome<echo::EchoResult>>,
    /// Scenario 3, application path through wasmgate's Python plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo_app_python: Option<Outcome<echo::EchoResult>>,
    /// Scenario 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storm: Option<Outcome<storm::StormResult>>,
    /// Scenario 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<Outcome<reload::ReloadResult>>,
    /// Scenario 6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<Outcome<soak::SoakResult>>,
    /// Application echo on one core vs every core (issue 11).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo_scaling: Option<Outcome<ScalingResult>>,
    /// A group inside a larger system (issue 13).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fanout_group: Option<Outcome<fanout::FanoutResult>>,
    /// Single-send latency (issue 12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Outcome<latency::LatencyResult>>,
}

impl ServerReport {
    /// Mark scenario `sc` skipped, with `why`.
    fn skip(&mut self, sc: Scenario, why: &str) {
        fn skipped<T>(why: &str) -> Option<Outcome<T>> {
            Some(Outcome::Skipped(why.to_owned()))
        }
        match sc {
            Scenario::Idle => self.idle = skipped(why),
            Scenario::Fanout => self.fanout = skipped(why),
            Scenario::EchoNative => self.echo_native = skipped(why),
            Scenario::EchoApp => {
                for lang in PluginLang::ALL {
                    *self.echo_app_slot(lang) = skipped(why);
                }
            }
            Scenario::Storm => self.storm = skipped(why),
            Scenario::Reload => self.reload = skipped(why),
            Scenario::EchoScaling => self.echo_scaling = skipped(why),
            Scenario::FanoutGroup => self.fanout_group = skipped(why),
            Scenario::Soak => self.soak = skipped(why),
            Scenario::Latency => self.latency = skipped(why),
        }
    }

    /// An empty report for `server`.
    pub fn new(server: ServerKind) -> ServerReport {
        ServerReport {
            server,
            idle: None,
            fanout: None,
            echo_native: None,
            echo_app: None,
            echo_app_js: None,
            echo_app_python: None,
            storm: None,
            reload: None,
            soak: None,
            echo_scaling: None,
            fanout_group: None,
            latency: None,
        }
    }

    /// Whether any scenario was attempted and failed (or the soak found errors).
    pub fn any_failed(&self) -> bool {
        let f = |o: Option<bool>| o.unwrap_or(false);
        f(self.idle.as_ref().map(Outcome::is_failed))
            || f(self.fanout.as_ref().map(Outcome::is_failed))
            || f(self.echo_native.as_ref().map(Outcome::is_failed))
            || f(self.echo_app.as_ref().map(Outcome::is_failed))
            || f(self.echo_app_js.as_ref().map(Outcome::is_failed))
            || f(self.echo_app_python.as_ref().map(Outcome::is_failed))
            || f(self.storm.as_ref().map(Outcome::is_failed))
            || f(self.reload.as_ref().map(Outcome::is_failed))
            || f(self.soak.as_ref().map(Outcome::is_failed))
            || f(self.echo_scaling.as_ref().map(Outcome::is_failed))
            || f(self.fanout_group.as_ref().map(Outcome::is_failed))
            || f(self.latency.as_ref().map(Outcome::is_failed))
            || matches!(&self.soak, Some(Outcome::Ok(r)) if !r.failures.is_empty())
    }
}

impl ServerReport {
    /// The application echo as measured through wasmgate's plugin of `lang` (for the peers,
    /// whose application echo is one JS handler, the same result for every language).
    pub fn echo_app_of(&self, lang: PluginLang) -> Option<&Outcome<echo::EchoResult>> {
        match (self.server, lang) {
            (ServerKind::Wasmgate, PluginLang::Js) => self.echo_app_js.as_ref(),
            (ServerKind::Wasmgate, PluginLang::Python) => self.echo_app_python.as_ref(),
            _ => self.echo_app.as_ref(),
        }
    }

    fn echo_app_slot(&mut self, lang: PluginLang) -> &mut Option<Outcome<echo::EchoResult>> {
        match lang {
            PluginLang::Rust => &mut self.echo_app,
            PluginLang::Js => &mut self.echo_app_js,
            PluginLang::Python => &mut self.echo_app_python,
        }
    }
}

/// Starts a fresh server, runs `f` against it within `limit`, stops the server.
async fn guarded<T>(
    l: &Launcher,
    kind: ServerKind,
    echo_plugin: Option<&std::path::Path>,
    limit: Duration,
    f: impl AsyncFnOnce(&mut Server) -> Result<T>,
) -> Outcome<T> {
    let plugin = echo_plugin.map(|wasm| PluginInstall {
        wasm,
        name: crate::server::ECHO_PLUGIN_NAME,
    });
    guarded_with(l, kind, plugin, limit, f).await
}

/// [`guarded`] with any plugin installed.
async fn guarded_with<T>(
    l: &Launcher,
    kind: ServerKind,
    plugin: Option<PluginInstall<'_>>,
    limit: Duration,
    f: impl AsyncFnOnce(&mut Server) -> Result<T>,
) -> Outcome<T> {
    let mut server = match l.start_with(kind, plugin).await {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(format!("start: {e:#}")),
    };
    let out = match tokio::time::timeout(limit, f(&mut server)).await {
        Ok(Ok(v)) => Outcome::Ok(v),
        Ok(Err(e)) => Outcome::Failed(format!("{e:#}")),
        Err(_) => Outcome::Failed(format!("did not finish within {limit:?}")),
    };
    if let Outcome::Failed(e) = &out {
        tracing::warn!(server = kind.label(), error = %e, "scenario failed");
    }
    server.stop().await;
    out
}

/// Why a plugin row is empty: the component was not given (scripts/bench.sh builds all three).
fn no_plugin(lang: PluginLang) -> String {
    let how = match lang {
        PluginLang::Rust => "build tests/guests/hostcalls or set WASMGATE_ECHO_WASM",
        PluginLang::Js => {
            "build bench/plugins/js-echo with scripts/build-js-plugin.sh or set WASMGATE_JS_ECHO_WASM"
        }
        PluginLang::Python => {
            "build bench/plugins/py-echo with scripts/build-py-plugin.sh or set WASMGATE_PY_ECHO_WASM"
        }
    };
    format!("{} echo plugin .wasm not found ({how})", lang.label())
}

/// The application echo twice, each against a fresh server: pinned to `p.scaling_cpu`, then
/// on every core (whatever `--server-cpu` says for the other scenarios).
async fn scaling(
    l: &Launcher,
    k: ServerKind,
    plugin: Option<&std::path::Path>,
    limit: Duration,
    p: &Params,
) -> Outcome<ScalingResult> {
    let pinned = Launcher {
        server_cpu: Some(p.scaling_cpu.clone()),
        ..l.clone()
    };
    // Explicitly every core: a server started without `taskset` would inherit the load
    // generator's affinity (CPU 0 when scripts/bench.sh pins it).
    let free = Launcher {
        server_cpu: Some(crate::machine::all_cpus()),
        ..l.clone()
    };
    let echo = async |s: &mut Server| {
        echo::run(s, p, echo::EchoPath::App, ECHO_SYSTEM, p.scaling_work).await
    };
    tracing::info!(
        server = k.label(),
        cpus = p.scaling_cpu,
        "scaling: one core"
    );
    let one_core = match guarded(&pinned, k, plugin, limit, echo).await {
        Outcome::Ok(v) => v,
        Outcome::Skipped(w) => return Outcome::Skipped(w),
        Outcome::Failed(e) => return Outcome::Failed(format!("one core: {e}")),
    };
    tracing::info!(server = k.label(), "scaling: every core");
    let all_cores = match guarded(&free, k, plugin, limit, echo).await {
        Outcome::Ok(v) => v,
        Outcome::Skipped(w) => return Outcome::Skipped(w),
        Outcome::Failed(e) => return Outcome::Failed(format!("every core: {e}")),
    };
    Outcome::Ok(ScalingResult {
        instances: p.plugin_instances.filter(|_| k == ServerKind::Wasmgate),
        one_core_cpus: p.scaling_cpu.clone(),
        speedup: all_cores.per_sec / one_core.per_sec.max(1e-9),
        one_core,
        all_cores,
    })
}

/// Runs `scenarios` against every server in `kinds`, scenario by scenario (so the servers
/// of one scenario are measured close together in time).
pub async fn run_all(
    l: &Launcher,
    kinds: &[ServerKind],
    scenarios: &[Scenario],
    p: &Params,
) -> Vec<ServerReport> {
    let mut reports: Vec<ServerReport> = kinds.iter().map(|&k| ServerReport::new(k)).collect();
    // The issue-11 rows run the plugin with the instances asked for; the other plugin rows
    // keep the gateway's default so that they stay comparable with earlier runs.
    let pooled = Launcher {
        plugin_instances: p.plugin_instances,
        ..l.clone()
    };
    let limit = Duration::from_secs(p.scenario_timeout_secs);
    for &sc in scenarios {
        for rep in &mut reports {
            let k = rep.server;
            tracing::info!(server = k.label(), scenario = ?sc, "running");
            if k == ServerKind::Cluster && !CLUSTER_SCENARIOS.contains(&sc) {
                rep.skip(
                    sc,
                    "the cluster runs the fan-out, latency and idle scenarios (issue 12)",
                );
                continue;
            }
            match sc {
                Scenario::Idle => {
                    rep.idle =
                        Some(guarded(l, k, None, limit, async |s| idle::run(s, p).await).await);
                }
                Scenario::Fanout => {
                    rep.fanout =
                        Some(guarded(l, k, None, limit, async |s| fanout::run(s, p).await).await);
                }
                Scenario::EchoNative => {
                    rep.echo_native = Some(if k == ServerKind::Socketio {
                        Outcome::Skipped(
                            "Socket.IO has no client-initiated ping frame (see the application echo)"
                                .into(),
                        )
                    } else {
                        guarded(l, k, None, limit, async |s| {
                            echo::run(s, p, echo::EchoPath::Native, BENCH_SYSTEM, 0).await
                        })
                        .await
                    });
                }
                Scenario::EchoApp => {
                    // wasmgate: one fresh gateway per plugin language; peers: their JS handler.
                    let langs: &[PluginLang] = if k == ServerKind::Wasmgate {
                        &PluginLang::ALL
                    } else {
                        &[PluginLang::Rust]
                    };
                    for &lang in langs {
                        let plugin = match (k, l.echo_plugin(lang)) {
                            (ServerKind::Wasmgate, None) => {
                                *rep.echo_app_slot(lang) = Some(Outcome::Skipped(no_plugin(lang)));
                                continue;
                            }
                            (ServerKind::Wasmgate, Some(wasm)) => Some(wasm),
                            _ => None,
                        };
                        tracing::info!(
                            server = k.label(),
                            plugin = lang.label(),
                            "application echo"
                        );
                        *rep.echo_app_slot(lang) = Some(
                            guarded(l, k, plugin, limit, async |s| {
                                echo::run(s, p, echo::EchoPath::App, ECHO_SYSTEM, 0).await
                            })
                            .await,
                        );
                    }
                }
                Scenario::Storm => {
                    rep.storm =
                        Some(guarded(l, k, None, limit, async |s| storm::run(s, p).await).await);
                }
                Scenario::Reload => {
                    rep.reload = Some(match (&l.echo_wasm, k) {
                        (_, ServerKind::Ws | ServerKind::Socketio) => {
                            Outcome::Skipped("plugin hot reload is a wasmgate feature".into())
                        }
                        (None, _) => Outcome::Skipped(no_plugin(PluginLang::Rust)),
                        (Some(wasm), _) => {
                            guarded(&pooled, k, Some(wasm), limit, async |s| {
                                reload::run(s, p, wasm).await
                            })
                            .await
                        }
                    });
                }
                Scenario::Latency => {
                    rep.latency =
                        Some(guarded(l, k, None, limit, async |s| latency::run(s, p).await).await);
                }
                Scenario::FanoutGroup => {
                    rep.fanout_group = Some(
                        guarded(l, k, None, limit, async |s| {
                            fanout::run_group_in_system(s, p).await
                        })
                        .await,
                    );
                }
                Scenario::EchoScaling => {
                    rep.echo_scaling = Some(match (k, &l.echo_wasm) {
                        (ServerKind::Wasmgate, None) => {
                            Outcome::Skipped(no_plugin(PluginLang::Rust))
                        }
                        (_, wasm) => {
                            let plugin = wasm.as_deref().filter(|_| k == ServerKind::Wasmgate);
                            scaling(&pooled, k, plugin, limit, p).await
                        }
                    });
                }
                Scenario::Soak => {
                    rep.soak = Some(match (&l.chat_wasm, k) {
                        (_, ServerKind::Ws | ServerKind::Socketio) => Outcome::Skipped(
                            "the soak runs wasmgate's chat plugin: a wasmgate scenario".into(),
                        ),
                        (None, _) => Outcome::Skipped(
                            "chat plugin .wasm not found (build plugins/chat for wasm32-wasip2 \
                             or set WASMGATE_CHAT_WASM)"
                                .into(),
                        ),
                        (Some(wasm), _) => {
                            let plugin = PluginInstall {
                                wasm,
                                name: CHAT_PLUGIN_NAME,
                            };
                            // The whole run plus the usual bound for setup and teardown.
                            let limit = limit + Duration::from_secs(p.soak_secs);
                            guarded_with(l, k, Some(plugin), limit, async |s| soak::run(s, p).await)
                                .await
                        }
                    });
                }
            }
        }
    }
    reports
}
