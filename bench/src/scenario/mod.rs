//! The scenarios and the runner that gives each (scenario, server) pair a fresh server.

pub mod echo;
pub mod fanout;
pub mod idle;
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
    /// Minutes of churn, chat and pushes, watching memory and errors (wasmgate only).
    Soak,
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

/// Runs `scenarios` against every server in `kinds`, scenario by scenario (so the servers
/// of one scenario are measured close together in time).
pub async fn run_all(
    l: &Launcher,
    kinds: &[ServerKind],
    scenarios: &[Scenario],
    p: &Params,
) -> Vec<ServerReport> {
    let mut reports: Vec<ServerReport> = kinds
        .iter()
        .map(|&server| ServerReport {
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
        })
        .collect();
    let limit = Duration::from_secs(p.scenario_timeout_secs);
    for &sc in scenarios {
        for rep in &mut reports {
            let k = rep.server;
            tracing::info!(server = k.label(), scenario = ?sc, "running");
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
                            echo::run(s, p, echo::EchoPath::Native, BENCH_SYSTEM).await
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
                                echo::run(s, p, echo::EchoPath::App, ECHO_SYSTEM).await
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
                            guarded(l, k, Some(wasm), limit, async |s| {
                                reload::run(s, p, wasm).await
                            })
                            .await
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
