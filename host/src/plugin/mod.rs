//! The plugin runtime: loads WebAssembly components implementing `wit/0.2.0` or `wit/0.1.0`
//! (`world.rs` tells which), feeds them
//! client events, serves their host calls, and swaps them for new versions without dropping
//! connections. See `README.md` in this folder for the operator's view.
//!
//! Layout: [`PluginHost`] (this file) owns the plugins and routes events to them; `loader.rs`
//! loads, reloads and unloads; `actor.rs` runs each instance of a plugin's pool as a task on
//! the runtime (a lane); `hostcalls.rs` implements the imports (`compat.rs` serves 0.1's); `kv.rs` and `timers.rs` keep what outlives instances;
//! `engine.rs` compiles through the cache; `watch.rs` watches the folder; `api.rs` serves
//! `/api/plugins`.

mod actor;
mod api;
#[cfg(feature = "bench-support")]
mod bench;
mod bindings;
mod compat;
mod compiler;
mod engine;
mod entry;
mod hostcalls;
mod kv;
mod loader;
mod mailbox;
mod metrics;
pub mod rules;
mod state;
mod timers;
mod watch;
mod world;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tracing::{info, warn};
use wasmtime::component::{Component, Linker};

use crate::gateway::{ConnectContext, ConnectVerdict, EventSink, Gateway, Taken};
use crate::metrics::DropLabels;
use crate::outbound::OutboundRx;

pub use api::router;
#[doc(hidden)]
#[cfg(feature = "bench-support")]
pub use bench::DirectInstance;
pub use compiler::{compile_in_child_processes, compile_plugin_command};
pub(crate) use entry::now_ms;
pub use loader::ReloadOutcome;
pub(crate) use watch::valid_name as valid_plugin_name;

use self::engine::Runtime;
use self::entry::{Limits, PluginShared};
use self::mailbox::{Admission, Event, QueueBounds};
use self::metrics::PluginMetrics;
use self::state::HostState;

/// How often changed key-value stores are written to disk.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Log lines (host `log` plus stdout/stderr lines) one event may write.
pub const LOG_LINES_PER_EVENT: u32 = 1000;
/// Compiled versions kept in memory for instant swaps back and forth.
const RECENT_VERSIONS: usize = 8;

/// Errors of the plugin runtime.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The wasmtime engine or its cache could not be set up.
    #[error("plugin engine: {0}")]
    Engine(String),
    /// The plugins folder could not be read.
    #[error("plugins folder {path}: {source}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The folder watcher could not start.
    #[error("{0}")]
    Watch(String),
    /// No plugin of that name is loaded and no such file exists.
    #[error("unknown plugin: {0}")]
    NotFound(String),
    /// A plugin file failed to read, compile, link, instantiate or initialize; the previous
    /// version (if any) keeps serving.
    #[error("plugin {plugin}: {error}")]
    Load {
        /// The plugin.
        plugin: String,
        /// What went wrong.
        error: String,
    },
}

/// The plugin runtime of one gateway.
pub struct PluginHost {
    /// Where host calls go and whose metrics and shutdown token we use.
    gateway: Gateway,
    /// The engine and its compile cache.
    runtime: Arc<Runtime>,
    /// WASI plus the `host` interface, shared by every plugin.
    linker: Linker<HostState>,
    /// The plugins folder (canonical), `None` when plugins are disabled.
    dir: Option<PathBuf>,
    /// Where key-value stores persist.
    kv_dir: PathBuf,
    /// Woken when any plugin's key-value store changed: the flush waits on it.
    kv_changed: Arc<tokio::sync::Notify>,
    /// Limits of every instance.
    limits: Limits,
    /// Bounds of each plugin's event queue.
    queue_bounds: QueueBounds,
    /// Metric families.
    metrics: PluginMetrics,
    /// The runtime host calls block on.
    rt: Handle,
    /// Loaded plugins by name (sorted for the API).
    plugins: RwLock<BTreeMap<String, Arc<PluginShared>>>,
    /// Which plugin serves each system: the hot path of every client event.
    /// Read on every client message. foldhash: system names come from the operator.
    routes: RwLock<HashMap<String, Route, foldhash::fast::RandomState>>,
    /// One load at a time per plugin, in arrival order.
    turns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Recently compiled versions by blake3 hash, so swapping back costs no compilation.
    recent: Mutex<VecDeque<(String, Component)>>,
    /// The folder watcher; dropped on shutdown.
    watcher: Mutex<Option<watch::Watcher>>,
}

impl PluginHost {
    /// Loads every `*.wasm` directly inside `gateway.config().plugins_dir` (if set), registers the
    /// systems they serve (plugin `quiz.wasm` serves system `quiz` unless `[plugins.quiz]
    /// systems = [..]` says otherwise), routes the gateway's client events to them, starts the
    /// debounced folder watcher, and stops everything when the gateway's shutdown token is
    /// cancelled. Returns after the initial load; plugins that fail to load are logged and
    /// listed with their error, they do not fail the start.
    pub async fn start(gateway: Gateway) -> Result<Arc<PluginHost>, PluginError> {
        let config = gateway.config();
        let dir = match &config.plugins_dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(|source| PluginError::Folder {
                    path: d.clone(),
                    source,
                })?;
                Some(
                    std::fs::canonicalize(d).map_err(|source| PluginError::Folder {
                        path: d.clone(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        let base = dir.clone().unwrap_or_else(std::env::temp_dir);
        let cache_dir = config
            .cache_dir
            .clone()
            .unwrap_or_else(|| base.join(".cache"));
        let cache_dir = std::path::absolute(&cache_dir).unwrap_or(cache_dir);
        let kv_dir = config.kv_dir.clone().unwrap_or_else(|| base.join(".kv"));
        let runtime = engine::runtime(&cache_dir).map_err(PluginError::Engine)?;
        let linker = loader::linker(&runtime.engine).map_err(PluginError::Engine)?;
        let pc = &config.plugin;
        let limits = Limits {
            call_timeout: pc.call_timeout,
            init_timeout: (pc.call_timeout * 10).max(Duration::from_secs(1)),
            max_memory_bytes: pc.max_memory_bytes,
            sends_per_event: rules::sends_per_event(config),
            logs_per_event: LOG_LINES_PER_EVENT,
        };
        let host = Arc::new(PluginHost {
            metrics: PluginMetrics::register(gateway.metrics()),
            queue_bounds: QueueBounds::new(
                pc.queue_capacity,
                pc.queue_bytes,
                pc.client_queue_share,
            ),
            rt: Handle::current(),
            gateway: gateway.clone(),
            runtime,
            linker,
            dir: dir.clone(),
            kv_dir,
            kv_changed: Arc::new(tokio::sync::Notify::new()),
            limits,
            plugins: RwLock::new(BTreeMap::new()),
            routes: RwLock::new(HashMap::default()),
            turns: Mutex::new(HashMap::new()),
            recent: Mutex::new(VecDeque::new()),
            watcher: Mutex::new(None),
        });
        let Some(dir) = dir else {
            return Ok(host);
        };
        gateway.set_event_sink(Arc::new(Sink {
            host: Arc::downgrade(&host),
        }));
        // Watch before the initial scan, so a file written meanwhile is not missed.
        let (tx, rx) = mpsc::unbounded_channel();
        let watcher =
            watch::watch(dir.clone(), pc.reload_debounce, tx).map_err(PluginError::Watch)?;
        *host.watcher.lock() = Some(watcher);
        let names = loader::scan(&dir).map_err(|source| PluginError::Folder {
            path: dir.clone(),
            source,
        })?;
        let loads = names.iter().map(|name| host.sync(name, false));
        let results = futures_util::future::join_all(loads).await;
        let loaded = results.iter().filter(|r| r.is_ok()).count();
        info!(folder = %dir.display(), loaded, failed = results.len() - loaded, "plugins loaded");
        gateway.tasks().spawn(host.clone().background(rx));
        Ok(host)
    }

    /// Watch-driven syncs and key-value flushes until shutdown, then stop everything. A flush
    /// runs [`FLUSH_INTERVAL`] after a store changed (batching the changes of that interval),
    /// never on a timer: an idle gateway does not wake up for it.
    async fn background(self: Arc<Self>, mut changes: mpsc::UnboundedReceiver<String>) {
        let token = self.gateway.shutdown_token().clone();
        loop {
            tokio::select! {
                () = token.cancelled() => break,
                () = self.kv_changed.notified() => {
                    tokio::select! {
                        () = token.cancelled() => break,
                        () = tokio::time::sleep(FLUSH_INTERVAL) => {}
                    }
                    self.flush_all().await;
                }
                Some(name) = changes.recv() => {
                    let host = self.clone();
                    tokio::spawn(async move {
                        // Failures are logged and recorded by `sync`.
                        let _ = host.sync(&name, false).await;
                    });
                }
            }
        }
        self.shutdown().await;
    }

    /// Stop watching, stop every plugin, cancel their timers and write their stores.
    async fn shutdown(&self) {
        drop(self.watcher.lock().take());
        self.routes.write().clear();
        let plugins: Vec<_> = std::mem::take(&mut *self.plugins.write())
            .into_values()
            .collect();
        for p in &plugins {
            p.live.store(false, std::sync::atomic::Ordering::Release);
            p.stop();
            p.timers.clear();
        }
        flush(plugins).await;
        info!("plugin runtime stopped");
    }

    /// Write every changed key-value store.
    async fn flush_all(&self) {
        self.metrics.store_flushes.inc();
        let plugins: Vec<_> = self.plugins.read().values().cloned().collect();
        flush(plugins).await;
    }

    /// Reload the plugin `name` from disk now, even if its file did not change (a missing file
    /// unloads it). Answers when the new version serves or failed to.
    pub async fn reload(self: &Arc<Self>, name: &str) -> Result<ReloadOutcome, PluginError> {
        if self.dir.is_none() || !watch::valid_name(name) {
            return Err(PluginError::NotFound(name.to_owned()));
        }
        self.sync(name, true).await
    }

    /// The `data` of `GET /api/plugins`: `{count, list:[{name, systems, version, loadedAt,
    /// eventsHandled, traps, lastError, p50Us, p99Us, ...}]}`.
    pub fn list(&self) -> Value {
        let list: Vec<Value> = self.plugins.read().values().map(|p| p.describe()).collect();
        json!({ "count": list.len(), "list": list })
    }

    /// The live plugin serving `system`, with the system's shared name.
    fn route(&self, system: &str) -> Option<Route> {
        self.routes
            .read()
            .get(system)
            .filter(|r| r.plugin.is_live())
            .cloned()
    }

    fn count_drop(&self, system: &str, reason: &str) {
        self.gateway
            .metrics()
            .messages_dropped
            .get_or_create(&DropLabels {
                system: system.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }
}

/// Write the stores of `plugins` off the async runtime.
async fn flush(plugins: Vec<Arc<PluginShared>>) {
    let done = tokio::task::spawn_blocking(move || {
        for p in plugins {
            if let Err(e) = p.kv.flush() {
                warn!(plugin = %p.name, path = %p.kv.path().display(), cause = %e,
                    "could not write the key-value store");
            }
        }
    })
    .await;
    if let Err(e) = done {
        warn!(cause = %e, "key-value flush task failed");
    }
}

/// Routes the gateway's client events to plugins. Holds the host weakly: the gateway must not
/// keep the runtime alive.
struct Sink {
    host: Weak<PluginHost>,
}

/// A route: the plugin serving a system, and that system's name as the plugin shares it (the
/// `Arc<str>` every event of the system carries), so that routing a message finds both in one
/// map lookup. Looking the name up in `plugin.systems` on every message cost ~0.05 us per
/// reply of the Rust echo plugin (perf, 1000 clients, one profiled run before and after:
/// `Sink::route` 0.10 -> 0.07 us, `memcmp` 0.125 -> 0.10 us, of ~10 us).
#[derive(Clone)]
pub(crate) struct Route {
    pub(crate) plugin: Arc<PluginShared>,
    pub(crate) system: Arc<str>,
}

impl Sink {
    fn route(&self, system: &str) -> Option<(Arc<PluginHost>, Arc<PluginShared>, Arc<str>)> {
        let host = self.host.upgrade()?;
        let Route { plugin, system } = host.route(system)?;
        Some((host, plugin, system))
    }
}

impl EventSink for Sink {
    fn serves(&self, system: &str) -> bool {
        let host = self.host.upgrade();
        host.is_some_and(|h| h.routes.read().contains_key(system))
    }

    fn adopt_timer(
        &self,
        plugin: &str,
        id: u64,
        system: &str,
        payload: String,
        client: Option<String>,
        delay: Duration,
    ) -> bool {
        let Some(host) = self.host.upgrade() else {
            return false;
        };
        let Some(p) = host.plugins.read().get(plugin).cloned() else {
            return false;
        };
        p.timers
            .adopt(&p, &p.rt, id, system.into(), payload, client, delay);
        true
    }

    fn pending_timers(&self) -> Vec<crate::events::PendingTimer> {
        let Some(host) = self.host.upgrade() else {
            return Vec::new();
        };
        let plugins: Vec<_> = host.plugins.read().values().cloned().collect();
        plugins
            .iter()
            .flat_map(|p| p.timers.snapshot(&p.name))
            .collect()
    }

    fn connect(
        &self,
        system: &str,
        client: &str,
        context: Box<ConnectContext>,
    ) -> Option<oneshot::Receiver<ConnectVerdict>> {
        let (host, plugin, system) = self.route(system)?;
        let (tx, rx) = oneshot::channel();
        let event = Event::Connect {
            system,
            client: client.to_owned(),
            context,
            reply: tx,
        };
        // Last resort: messages cannot fill this budget (they have their own), only a connect
        // storm at a stuck plugin can.
        if let Err(Event::Connect { system, reply, .. }) =
            plugin.mailbox(client).push_connect(event)
        {
            host.count_drop(&system, "plugin_queue_full");
            let _ = reply.send(ConnectVerdict::Reject {
                code: 1013,
                reason: "plugin overloaded, try again later".into(),
            });
        }
        Some(rx)
    }

    fn message(&self, system: &str, client: &str, msg: Message, from: &OutboundRx) -> Taken {
        let Some((_, plugin, system)) = self.route(system) else {
            return Taken::NoPlugin;
        };
        let lane = plugin.lane(client);
        let msg = match actor::try_direct(&plugin, lane, system.clone(), client, msg, from) {
            Ok(call) => return Taken::Call(call),
            Err(msg) => msg,
        };
        match plugin.lanes[lane].mailbox.push_message(system, client, msg) {
            Admission::Queued => Taken::Queued,
            Admission::Hold => {
                let client = client.to_owned();
                Taken::Hold(Box::pin(async move {
                    plugin.mailbox(&client).room(&client).await
                }))
            }
        }
    }

    fn close(&self, system: &str, client: &str, code: u16, reason: &str) {
        let Some((_, plugin, system)) = self.route(system) else {
            return;
        };
        // Its timers go with it (0.2 `set-timer` bound to a client): after this, none fires.
        // In a cluster, also those set through other nodes, wherever they sleep.
        plugin.timers.cancel_client(client);
        if let Some(shared) = plugin.gateway.shared_timers().cloned() {
            let client = client.to_owned();
            plugin.rt.spawn(async move {
                if let Err(e) = shared.take_client(&client).await {
                    warn!(client, cause = %e, "bound timers not cancelled in the cluster");
                }
            });
        }
        // Past every bound: a plugin that misses an on-close leaks that client's state.
        plugin.mailbox(client).push_unbounded(Event::Close {
            system,
            client: client.to_owned(),
            code,
            reason: reason.to_owned(),
        });
    }
}
