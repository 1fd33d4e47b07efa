//! The actor of one plugin: a dedicated thread that owns the plugin's instance and handles its
//! events one at a time, in order.
//!
//! Why a dedicated thread with synchronous wasmtime rather than async wasmtime on tokio: events
//! of one plugin are sequential by contract anyway, so a thread per plugin loses no parallelism;
//! guest code never runs on a tokio worker, so a guest that burns its whole deadline delays only
//! its own plugin, never unrelated sockets; sync calls skip the fiber switch of async wasmtime;
//! and a plugin's code stays warm in one core's caches. Host calls reach the async gateway
//! through the runtime handle's `block_on` (legal here: this is not a runtime thread).
//!
//! Failure handling: a trap (panic, deadline, out of bounds, memory) drops the `Store` and the
//! next event gets a fresh instance from the `InstancePre` (with `init` run again). The event
//! that trapped is not retried. A plugin that keeps trapping is backed off: after the second
//! consecutive failure the actor waits 10 ms, then 20, 40, ... up to 5 s before instantiating
//! again, while events wait in the bounded queue (clients past their share of it are not read
//! meanwhile; see `mailbox.rs`).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::{info, warn};
use wasmtime::{Engine, Store, Trap, WasmBacktrace};

use crate::gateway::ConnectVerdict;

use super::bindings::{CloseReason, Plugin, PluginPre, from_ws};
use super::engine::{CodeSource, deadline_ticks};
use super::entry::{PluginShared, VersionInfo, now_ms};
use super::mailbox::{Control, Event, Next};
use super::state::HostState;

/// First backoff delay after consecutive failures.
const BACKOFF_BASE: Duration = Duration::from_millis(10);
/// Longest backoff delay.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Longest error text kept for the API.
const MAX_ERROR_CHARS: usize = 1000;

/// A compiled and linked version, ready to instantiate.
pub(crate) struct Loaded {
    /// Linked against the host's imports, exports checked.
    pub pre: PluginPre<HostState>,
    /// blake3 of the bytes.
    pub hash: String,
    /// Where the code came from.
    pub code: CodeSource,
}

/// A live instance.
pub(crate) struct Instance {
    /// Its store (dropped after a trap).
    pub store: Store<HostState>,
    /// Typed access to its exports.
    pub bindings: Plugin,
}

/// Start the actor thread of `plugin`.
pub(crate) fn spawn(plugin: Arc<PluginShared>, engine: Engine) -> std::io::Result<()> {
    let name = format!("plugin-{}", plugin.name);
    let actor = Actor {
        call_ticks: deadline_ticks(plugin.limits.call_timeout),
        init_ticks: deadline_ticks(plugin.limits.init_timeout),
        plugin,
        engine,
        version: None,
        instance: None,
        failures: 0,
        retry_at: None,
    };
    std::thread::Builder::new()
        .name(name)
        // Room for wasmtime's default 512 KiB of wasm stack plus host frames.
        .stack_size(8 << 20)
        .spawn(move || actor.run())
        .map(|_| ())
}

/// A short text for a failed call: the trap (or error), where it happened, and what the guest
/// last wrote to stderr (a panic message).
pub(crate) fn describe(err: &wasmtime::Error, timeout: Duration, stderr: Option<String>) -> String {
    let mut text = match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => format!("deadline of {timeout:?} exceeded"),
        Some(trap) => trap.to_string(),
        None => format!("{err:#}"),
    };
    if let Some(bt) = err.downcast_ref::<WasmBacktrace>() {
        let frames: Vec<String> = bt
            .frames()
            .iter()
            .filter_map(|f| f.func_name())
            .map(|n| format!("{:#}", rustc_demangle::demangle(n)))
            .filter(|n| !is_runtime_frame(n))
            .take(3)
            .collect();
        if !frames.is_empty() {
            text.push_str(&format!(" in {}", frames.join(" < ")));
        }
    }
    if let Some(stderr) = stderr {
        text.push_str(&format!("; stderr: {stderr}"));
    }
    match text.char_indices().nth(MAX_ERROR_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Frames not worth showing: the panic, abort and allocation machinery of the guest's
/// language runtime, so what remains is the plugin's own code.
fn is_runtime_frame(name: &str) -> bool {
    const RUNTIME: [&str; 8] = [
        "std::",
        "core::",
        "alloc::",
        "__rust",
        "__rdl",
        "abort",
        "rust_begin_unwind",
        "panic",
    ];
    RUNTIME.iter().any(|p| name.starts_with(p))
}

/// A new instance of `loaded` for `plugin`, with `init` done.
pub(crate) fn instantiate(
    engine: &Engine,
    plugin: &Arc<PluginShared>,
    loaded: &Loaded,
    init_ticks: u64,
) -> Result<Instance, String> {
    let system = plugin.systems.first().cloned().unwrap_or_default();
    let mut store = Store::new(engine, HostState::new(plugin.clone(), system.clone()));
    store.limiter(|s| &mut s.limits);
    store.epoch_deadline_trap();
    store.set_epoch_deadline(init_ticks);
    let _ticking = super::engine::ticking();
    let timeout = plugin.limits.init_timeout;
    let bindings = loaded.pre.instantiate(&mut store).map_err(|e| {
        let stderr = store.data().log.stderr_tail();
        format!("instantiate: {}", describe(&e, timeout, stderr))
    })?;
    store.data_mut().begin_event(system);
    let init = bindings.call_init(&mut store, &plugin.init_config);
    store.data_mut().end_event();
    let stderr = store.data().log.stderr_tail();
    match init {
        Ok(Ok(())) => Ok(Instance { store, bindings }),
        Ok(Err(msg)) => Err(format!("init failed: {msg}")),
        Err(e) => Err(format!("init trapped: {}", describe(&e, timeout, stderr))),
    }
}

struct Actor {
    plugin: Arc<PluginShared>,
    engine: Engine,
    call_ticks: u64,
    init_ticks: u64,
    /// The version serving (`None` until the first successful load).
    version: Option<Box<Loaded>>,
    /// Its instance (`None` after a trap, until re-instantiated).
    instance: Option<Instance>,
    /// Consecutive failures (traps, failed re-instantiations); reset by a successful call.
    failures: u32,
    /// No instantiation before this instant (backoff).
    retry_at: Option<Instant>,
}

impl Actor {
    fn run(mut self) {
        loop {
            let due = self.retry_at.is_none_or(|t| Instant::now() >= t);
            if self.instance.is_none()
                && due
                && let Some(version) = self.version.take()
            {
                self.retry_at = None;
                match self.instantiate(&version) {
                    Ok(instance) => self.instance = Some(instance),
                    Err(e) => self.failed(format!("re-instantiation failed: {e}")),
                }
                self.version = Some(version);
            }
            let ready = self.instance.is_some();
            let until = if ready { None } else { self.retry_at };
            match self.plugin.mailbox.next(ready, until) {
                Next::Control(Control::Stop) => break,
                Next::Control(Control::Swap { loaded, reply }) => {
                    let _ = reply.send(self.swap(loaded));
                }
                Next::Event(event) => self.handle(event),
                Next::Timeout => {}
            }
        }
        self.instance = None;
        for event in self.plugin.mailbox.drain() {
            if let Event::Connect { reply, .. } = event {
                let _ = reply.send(ConnectVerdict::Accept);
            }
        }
        info!(plugin = %self.plugin.name, "plugin stopped");
    }

    fn instantiate(&self, loaded: &Loaded) -> Result<Instance, String> {
        instantiate(&self.engine, &self.plugin, loaded, self.init_ticks)
    }

    /// Make `loaded` the serving version if it instantiates and its `init` succeeds.
    fn swap(&mut self, loaded: Box<Loaded>) -> Result<(), String> {
        let instance = self.instantiate(&loaded)?;
        let stats = &self.plugin.stats;
        *stats.version.lock() = Some(VersionInfo {
            hash: loaded.hash.clone(),
            loaded_at_ms: now_ms(),
            code: loaded.code,
        });
        *stats.last_error.lock() = None;
        stats.reloads.fetch_add(1, Ordering::Relaxed);
        self.instance = Some(instance);
        self.version = Some(loaded);
        self.failures = 0;
        self.retry_at = None;
        self.plugin.live.store(true, Ordering::Release);
        Ok(())
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Connect {
                system,
                client,
                reply,
            } => {
                let verdict =
                    match self.call(&system, "connect", |b, s| b.call_on_connect(s, &client)) {
                        Some(Err(reject)) => {
                            reject_verdict(&self.plugin.name, reject.code, &reject.reason)
                        }
                        Some(Ok(())) | None => ConnectVerdict::Accept,
                    };
                let _ = reply.send(verdict);
            }
            Event::Message {
                system,
                client,
                msg,
            } => {
                if let Some(msg) = from_ws(&msg) {
                    self.call(&system, "message", |b, s| {
                        b.call_on_message(s, &client, &msg)
                    });
                }
            }
            Event::Close {
                system,
                client,
                code,
                reason,
            } => {
                let reason = CloseReason { code, reason };
                self.call(&system, "close", |b, s| {
                    b.call_on_close(s, &client, &reason)
                });
            }
            Event::Timer { id } => {
                if let Some((system, payload)) = self.plugin.timers.take(id) {
                    self.call(&system, "timer", |b, s| b.call_on_timer(s, id, &payload));
                }
            }
        }
    }

    /// Call into the instance for an event of `system`; `None` if there is no instance or the
    /// call trapped (the instance is then gone).
    fn call<R>(
        &mut self,
        system: &Arc<str>,
        kind: &'static str,
        f: impl FnOnce(&Plugin, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Option<R> {
        let instance = self.instance.as_mut()?;
        instance.store.data_mut().begin_event(system.clone());
        instance.store.set_epoch_deadline(self.call_ticks);
        let ticking = super::engine::ticking();
        let started = Instant::now();
        // A panic in host code must not kill the actor: treat it like a trap.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            f(&instance.bindings, &mut instance.store)
        }));
        let took = started.elapsed();
        drop(ticking);
        instance.store.data_mut().end_event();
        let plugin = &self.plugin;
        plugin.stats.events_handled.fetch_add(1, Ordering::Relaxed);
        plugin.stats.latency.record(took);
        plugin
            .metrics
            .call_seconds
            .get_or_create(&plugin.label)
            .observe(took.as_secs_f64());
        plugin
            .metrics
            .events
            .get_or_create(&super::metrics::EventLabels {
                plugin: plugin.name.to_string(),
                kind: kind.to_owned(),
            })
            .inc();
        let error = match result {
            Ok(Ok(r)) => {
                self.failures = 0;
                return Some(r);
            }
            Ok(Err(e)) => describe(
                &e,
                plugin.limits.call_timeout,
                instance.store.data().log.stderr_tail(),
            ),
            Err(_) => "host panic while handling the event".to_owned(),
        };
        plugin.stats.traps.fetch_add(1, Ordering::Relaxed);
        plugin.metrics.traps.get_or_create(&plugin.label).inc();
        warn!(plugin = %plugin.name, system = %system, event = kind, cause = %error,
            "plugin trapped: instance dropped, a fresh one serves the next event");
        self.instance = None;
        self.failed(format!("trap in on-{kind}: {error}"));
        None
    }

    /// Count a failure, record it, and schedule the next instantiation.
    fn failed(&mut self, error: String) {
        self.failures = self.failures.saturating_add(1);
        self.retry_at = backoff(self.failures).map(|d| Instant::now() + d);
        if let Some(at) = self.retry_at {
            warn!(plugin = %self.plugin.name, failures = self.failures,
                delay_ms = at.saturating_duration_since(Instant::now()).as_millis() as u64,
                cause = %error, "plugin keeps failing: backing off");
        }
        self.plugin.set_error(error);
    }
}

/// Delay before instantiating again after `failures` consecutive failures.
fn backoff(failures: u32) -> Option<Duration> {
    if failures <= 1 {
        return None;
    }
    let exp = (failures - 2).min(16);
    Some((BACKOFF_BASE * 2u32.pow(exp)).min(BACKOFF_MAX))
}

/// A plugin's reject as the connection gets it: close codes a server may not send become 4000,
/// reasons are cut to the 123 bytes a close frame holds.
fn reject_verdict(plugin: &str, code: u16, reason: &str) -> ConnectVerdict {
    let code = if code == 1000 || (3000..=4999).contains(&code) {
        code
    } else {
        warn!(
            plugin,
            code, "plugin rejected with an invalid close code: using 4000"
        );
        4000
    };
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    ConnectVerdict::Reject {
        code,
        reason: reason[..end].to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0), None);
        assert_eq!(backoff(1), None);
        assert_eq!(backoff(2), Some(Duration::from_millis(10)));
        assert_eq!(backoff(3), Some(Duration::from_millis(20)));
        assert_eq!(backoff(40), Some(BACKOFF_MAX));
    }

    #[test]
    fn rejects_are_sanitized() {
        assert_eq!(
            reject_verdict("p", 1006, &"é".repeat(100)),
            ConnectVerdict::Reject {
                code: 4000,
                reason: "é".repeat(61),
            }
        );
        assert_eq!(
            reject_verdict("p", 4001, "no"),
            ConnectVerdict::Reject {
                code: 4001,
                reason: "no".into(),
            }
        );
    }
}
