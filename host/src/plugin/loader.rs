//! Loading, reloading and unloading plugins.
//!
//! A sync of plugin `name` looks at `<plugins_dir>/<name>.wasm` and makes the runtime match it:
//! - the file is gone: the plugin is unloaded (routes removed, actor stopped, timers cancelled,
//!   store written); its clients stay connected and their messages are dropped as `no_plugin`;
//! - the file has the hash of the serving version: nothing to do (unless forced);
//! - otherwise the bytes are compiled (through the cache) and linked on a blocking thread,
//!   beside the serving version, which keeps handling events meanwhile. The result goes to the
//!   plugin's actor as a swap order: between two events it instantiates the new version and runs
//!   its `init`; only if that succeeds does the new version replace the old one. Events still
//!   queued then go to the new version, in order. Any failure leaves the old version serving and
//!   is logged and shown as `lastError`.
//!
//! Syncs of one plugin take turns, so a burst of file events settles on the final file.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use tokio::sync::oneshot;
use tracing::{error, info, warn};
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

use super::actor::{self, CallMetrics, Loaded};
use super::bindings::{v0_1, v0_2};
use super::engine::{CodeSource, code_bytes, version_of};
use super::entry::{Lane, PluginShared, VersionInfo, now_ms};
use super::kv::Kv;
use super::mailbox::{Control, Mailbox};
use super::metrics::{PluginLabel, ReloadLabels};
use super::state::HostState;
use super::timers::Timers;
use super::world::PluginPre;
use super::{PluginError, PluginHost, RECENT_VERSIONS};

/// What a sync did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum ReloadOutcome {
    /// A new version serves.
    Loaded {
        /// Its blake3 hash.
        version: String,
        /// Where its code came from: `compiler`, `disk-cache` or `memory`.
        code: String,
    },
    /// The file matches the serving version.
    Unchanged {
        /// The serving version.
        version: String,
    },
    /// The file is gone: the plugin was unloaded.
    Unloaded,
}

/// The linker every plugin is instantiated with: WASI (sandboxed per store) and `host` of
/// both contracts (their interface names carry the version, so they do not collide).
pub(crate) fn linker(engine: &Engine) -> Result<Linker<HostState>, String> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| format!("WASI: {e:#}"))?;
    v0_2::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
        .map_err(|e| format!("host imports 0.2.0: {e:#}"))?;
    v0_1::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
        .map_err(|e| format!("host imports 0.1.0: {e:#}"))?;
    Ok(linker)
}

/// The plugin names of the `*.wasm` files directly inside `dir`, sorted.
pub(crate) fn scan(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file()
            && let Some(name) = super::watch::plugin_name(dir, &path)
        {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

impl PluginHost {
    /// Make plugin `name` match its file (see the module docs). `force` reloads an unchanged
    /// file too.
    pub(crate) async fn sync(
        self: &Arc<Self>,
        name: &str,
        force: bool,
    ) -> Result<ReloadOutcome, PluginError> {
        // In a task of its own: a caller that goes away (an API request whose client hung up)
        // must not cancel a sync between handing lanes their new instances and marking the
        // plugin live, which would leave a plugin that serves but is never marked live.
        let (host, plugin) = (self.clone(), name.to_owned());
        let name = plugin.clone();
        let task = tokio::spawn(async move {
            let turn = host.turns.lock().entry(name.clone()).or_default().clone();
            let guard = turn.lock().await;
            let outcome = host.sync_turn(&name, force).await;
            drop(guard);
            // A name that serves nothing (a reload of an unknown plugin, an unloaded one) must
            // not keep its turn forever: every unknown name an API caller tries would grow the
            // map.
            if !host.plugins.read().contains_key(&name) {
                host.turns
                    .lock()
                    .retain(|n, t| *n != name || Arc::strong_count(t) > 2);
            }
            outcome
        });
        task.await.unwrap_or_else(|e| {
            Err(PluginError::Load {
                plugin,
                error: format!("sync task failed: {e}"),
            })
        })
    }

    async fn sync_turn(
        self: &Arc<Self>,
        name: &str,
        force: bool,
    ) -> Result<ReloadOutcome, PluginError> {
        let Some(dir) = &self.dir else {
            return Err(PluginError::NotFound(name.to_owned()));
        };
        let path = dir.join(format!("{name}.wasm"));
        let read = tokio::fs::read(&path).await;
        if read.is_ok() {
            self.metrics
                .file_reads
                .get_or_create(&PluginLabel {
                    plugin: name.to_owned(),
                })
                .inc();
        }
        let bytes = match read {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return if self.unload(name).await {
                    Ok(ReloadOutcome::Unloaded)
                } else {
                    Err(PluginError::NotFound(name.to_owned()))
                };
            }
            Err(e) => {
                return Err(self.failed(name, None, format!("reading {}: {e}", path.display())));
            }
        };
        let hash = version_of(&bytes);
        let existing = self.plugins.read().get(name).cloned();
        if !force
            && let Some(v) = existing.as_ref().and_then(|p| p.version())
            && v.hash == hash
        {
            return Ok(ReloadOutcome::Unchanged { version: hash });
        }
        let plugin = match existing {
            Some(p) => p,
            None => self.create(name).await?,
        };
        let loaded = match self.prepare(bytes, hash.clone()).await {
            Ok(loaded) => loaded,
            Err(e) => return Err(self.failed(name, Some(&plugin), e)),
        };
        let code = loaded.code;
        match self.swap(&plugin, loaded).await {
            Ok(()) => {
                self.count_reload(name, "ok", code.as_str());
                info!(plugin = name, version = %hash, code = code.as_str(),
                    world = plugin.version().map_or("", |v| v.world.as_str()),
                    instances = plugin.lanes.len(), "plugin version serving");
                Ok(ReloadOutcome::Loaded {
                    version: hash,
                    code: code.as_str().to_owned(),
                })
            }
            Err(e) => Err(self.failed(name, Some(&plugin), e)),
        }
    }

    /// Make `loaded` serve every lane of `plugin`: first instantiate it (and run `init`) for
    /// every lane, in parallel, while the old version keeps serving; only when all succeeded,
    /// hand each lane its new instance. A version that fails `init` on any lane serves nothing,
    /// and no lane ever mixes versions for long: the swaps are plain assignments, taken by each
    /// lane before its next event (orders overtake events), so an event is handled by exactly
    /// one version and none is lost or doubled.
    async fn swap(&self, plugin: &Arc<PluginShared>, loaded: Loaded) -> Result<(), String> {
        let loaded = Arc::new(loaded);
        let builds = (0..plugin.lanes.len()).map(|lane| {
            let (engine, plugin, loaded) =
                (self.runtime.engine.clone(), plugin.clone(), loaded.clone());
            tokio::spawn(async move { actor::instantiate(&engine, &plugin, &loaded, lane).await })
        });
        let mut instances = Vec::with_capacity(plugin.lanes.len());
        let mut failure = None;
        for built in futures_util::future::join_all(builds).await {
            match built.map_err(|e| format!("instantiate task failed: {e}")) {
                Ok(Ok(instance)) => instances.push(Box::new(instance)),
                Ok(Err(e)) | Err(e) => failure = failure.or(Some(e)),
            }
        }
        // Timers the new version's `init` set start only once every lane has its order to
        // swap (orders overtake events, so none fires into the old version), and die with a
        // version that does not serve.
        let held: Vec<u64> = instances
            .iter_mut()
            .flat_map(|i| std::mem::take(&mut i.held_timers))
            .collect();
        if let Some(e) = failure {
            plugin.drop_timers(held).await;
            return Err(e);
        }
        let mut replies = Vec::with_capacity(instances.len());
        for (lane, instance) in plugin.lanes.iter().zip(instances) {
            let (tx, rx) = oneshot::channel();
            lane.mailbox.control(Control::Swap {
                loaded: loaded.clone(),
                instance,
                reply: tx,
            });
            replies.push(rx);
        }
        plugin.timers.arm(plugin, &plugin.rt, &held);
        for rx in replies {
            rx.await.map_err(|_| "the plugin stopped".to_owned())?;
        }
        let stats = &plugin.stats;
        *stats.version.lock() = Some(VersionInfo {
            hash: loaded.hash.clone(),
            loaded_at_ms: now_ms(),
            code: loaded.code,
            world: loaded.pre.world(),
        });
        *stats.last_error.lock() = None;
        stats.reloads.fetch_add(1, Ordering::Relaxed);
        plugin.live.store(true, Ordering::Release);
        Ok(())
    }

    /// Record, log and count a failed load.
    fn failed(&self, name: &str, plugin: Option<&PluginShared>, error: String) -> PluginError {
        let serving = plugin.and_then(|p| p.version()).map(|v| v.hash);
        match &serving {
            Some(v) => error!(plugin = name, cause = %error, serving = %v,
                "plugin load failed: the previous version keeps serving"),
            None => error!(plugin = name, cause = %error, "plugin load failed"),
        }
        if let Some(p) = plugin {
            p.set_error(error.clone());
        }
        self.count_reload(name, "error", "none");
        PluginError::Load {
            plugin: name.to_owned(),
            error,
        }
    }

    fn count_reload(&self, name: &str, result: &str, code: &str) {
        self.metrics
            .reloads
            .get_or_create(&ReloadLabels {
                plugin: name.to_owned(),
                result: result.to_owned(),
                code: code.to_owned(),
            })
            .inc();
    }

    /// Bytes of the compiled image of version `hash`, if it is among the recent versions kept in
    /// memory (the serving version always is, unless more than `RECENT_VERSIONS` newer versions
    /// failed to load since).
    pub(crate) fn code_bytes(&self, hash: &str) -> Option<usize> {
        let recent = self.recent.lock();
        let component = recent.iter().find(|(h, _)| h == hash).map(|(_, c)| c)?;
        Some(code_bytes(component))
    }

    /// Compile (or reuse) and link `bytes` on a blocking thread.
    pub(crate) async fn prepare(
        self: &Arc<Self>,
        bytes: Vec<u8>,
        hash: String,
    ) -> Result<Loaded, String> {
        let host = self.clone();
        let job = tokio::task::spawn_blocking(move || {
            let recent = host
                .recent
                .lock()
                .iter()
                .find(|(h, _)| *h == hash)
                .map(|(_, c)| c.clone());
            let (component, code) = match recent {
                Some(c) => (c, CodeSource::Memory),
                None => host.runtime.compile(&bytes)?,
            };
            let pre = PluginPre::new(&host.linker, &component)?;
            let mut recent = host.recent.lock();
            recent.retain(|(h, _)| *h != hash);
            recent.push_back((hash.clone(), component));
            while recent.len() > RECENT_VERSIONS {
                recent.pop_front();
            }
            Ok(Loaded { pre, hash, code })
        });
        job.await
            .unwrap_or_else(|e| Err(format!("compile task failed: {e}")))
    }

    /// Set up a plugin seen for the first time: claim its systems, open its store, start its
    /// actor. It serves no events until a version has been swapped in.
    async fn create(self: &Arc<Self>, name: &str) -> Result<Arc<PluginShared>, PluginError> {
        let config = self.gateway.config().plugins.get(name);
        let systems: Vec<Arc<str>> = match config {
            Some(c) if !c.systems.is_empty() => {
                c.systems.iter().map(|s| s.as_str().into()).collect()
            }
            _ => vec![name.into()],
        };
        {
            let routes = self.routes.read();
            for s in &systems {
                if let Some(other) = routes.get(&**s) {
                    let error = format!(
                        "system {s} is already served by plugin {}",
                        other.plugin.name
                    );
                    return Err(self.failed(name, None, error));
                }
            }
        }
        for s in &systems {
            if let Err(e) = self.gateway.register_system(s).await {
                warn!(plugin = name, system = %s, cause = %e, "could not register the system");
            }
        }
        let instances = config
            .and_then(|c| c.instances)
            .unwrap_or(self.gateway.config().plugin.instances)
            .resolve();
        let label = PluginLabel {
            plugin: name.to_owned(),
        };
        let plugin = Arc::new(PluginShared {
            name: name.into(),
            systems: systems.clone(),
            init_config: config.map(|c| c.config.clone()).unwrap_or_default(),
            gateway: self.gateway.clone(),
            rt: self.rt.clone(),
            limits: self.limits,
            lanes: (0..instances)
                .map(|_| Lane::new(Mailbox::new(self.queue_bounds)))
                .collect(),
            kv_turn: Arc::default(),
            kv: Kv::open(self.kv_dir.join(format!("{name}.json")))
                .notify_changes(self.kv_changed.clone()),
            timers: Timers::default(),
            stats: Default::default(),
            metrics: self.metrics.clone(),
            calls: CallMetrics::new(&self.metrics, &label),
            live: AtomicBool::new(false),
        });
        for lane in 0..instances {
            actor::spawn(plugin.clone(), lane, self.runtime.engine.clone());
        }
        self.plugins.write().insert(name.to_owned(), plugin.clone());
        let mut routes = self.routes.write();
        for system in systems {
            let route = super::Route {
                plugin: plugin.clone(),
                system: system.clone(),
            };
            routes.insert(system.to_string(), route);
        }
        Ok(plugin)
    }

    /// Unload plugin `name`; whether it was loaded.
    async fn unload(&self, name: &str) -> bool {
        let Some(plugin) = self.plugins.write().remove(name) else {
            return false;
        };
        plugin.live.store(false, Ordering::Release);
        self.routes
            .write()
            .retain(|_, r| !Arc::ptr_eq(&r.plugin, &plugin));
        plugin.stop();
        // In a cluster its timers go from Redis too: no node would run them (a node that
        // stops keeps its timers there instead, for the node that reaps it).
        let ids = plugin.timers.clear();
        plugin.drop_timers(ids).await;
        super::flush(vec![plugin]).await;
        info!(plugin = name, "plugin unloaded: its clients stay connected");
        true
    }
}
