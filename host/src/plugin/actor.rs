//! The instances of one plugin: one task per instance ("lane") of the pool, each owning its
//! instance and handling its lane's events one at a time, in order.
//!
//! Guest calls run on the tokio runtime's own threads, as wasmtime fibers (`call_async`). Why:
//! the dedicated actor thread of earlier versions cost two OS-thread hand-offs per event (tokio
//! worker → actor thread → back), and the actor thread fought the workers for the same cores:
//! the Rust echo plugin's p99 was 52.8 ms against Node `ws`'s 14.8 ms, and a plugin could never
//! use more than one core. Now an event is handled by the worker that polls its lane's task, and
//! `instances = N` runs N lanes in parallel. A guest never holds a worker for long: at every
//! epoch tick (5 ms, only while a call is in flight) it yields to the scheduler, and once it has
//! run for its deadline (counted in ticks it was found running, so time spent suspended does not
//! count) the tick traps it instead (`Trap::Interrupt`, counted as a trap).
//!
//! **Direct calls.** When a client's message finds its lane idle (nothing queued, no call in
//! flight, an instance ready), the client's own connection task makes the call
//! ([`try_direct`]) instead of queueing the event for the lane's task: no queue push, no wake-up
//! of another task, and the reply written by the same poll that read the request. Whoever calls
//! into a lane holds its [`Serving`] lock, and the lane's task takes events from the queue only
//! while it holds that lock; a direct call is made only when the queue is empty under the lock.
//! So a direct call never overtakes a queued event, and each client's events stay in order.
//! Measured (perf, Rust echo plugin, 1000 clients, one core): the queue push, the lane task's
//! wake-up and its poll were ~0.5 us of the 12.4 us of server CPU per reply.
//!
//! Failure handling: a trap (panic, deadline, out of bounds, memory) drops that lane's `Store`
//! and its next event gets a fresh instance from the `InstancePre` (with `init` run again); the
//! other lanes are not touched. The event that trapped is not retried. A lane that keeps
//! trapping is backed off: after the second consecutive failure it waits 10 ms, then 20, 40,
//! ... up to 5 s before instantiating again, while its events wait in its bounded queue
//! (clients past their share of it are not read meanwhile; see `mailbox.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::OwnedMutexGuard;
use tokio_tungstenite::tungstenite::Message;
use tracing::{info, warn};
use wasmtime::{Engine, Store, StoreContextMut, Trap, UpdateDeadline, WasmBacktrace};

use crate::domain::close::CloseReason as Reason;
use crate::gateway::ConnectVerdict;
use crate::outbound::{Outbound, OutboundRx};

use super::bindings::{
    CloseReason, Inbound, Reject, WitConnectContext, WitMessage, WitTimer, to_wit_context,
};
use super::engine::{CodeSource, deadline_ticks, ticking};
use super::entry::PluginShared;
use super::mailbox::{Control, Event, Next};
use super::metrics::{EventLabels, PluginLabel, PluginMetrics};
use super::state::HostState;
use super::world::{Plugin, PluginPre};

/// First backoff delay after consecutive failures.
const BACKOFF_BASE: Duration = Duration::from_millis(10);
/// Longest backoff delay.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Longest error text kept for the API.
const MAX_ERROR_CHARS: usize = 1000;

/// A compiled and linked version, ready to instantiate.
pub(crate) struct Loaded {
    /// Linked against the host's imports, exports checked.
    pub pre: PluginPre,
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
    /// Timers its `init` set, not started yet: whoever makes the instance serve arms them
    /// (`Timers::arm`), or cancels them if it never serves.
    pub held_timers: Vec<u64>,
}

/// Start the task of lane `lane` of `plugin`. It waits for its first version (a swap).
pub(crate) fn spawn(plugin: Arc<PluginShared>, lane: usize, engine: Engine) {
    let rt = plugin.rt.clone();
    rt.spawn(run(plugin, lane, engine));
}

/// The metric handles of a plugin's calls, looked up once: an event allocates no label.
pub(crate) struct CallMetrics {
    call_seconds: Histogram,
    traps: Counter,
    events: [Counter; 4],
}

impl CallMetrics {
    /// The handles of plugin `label` in `metrics`.
    pub(crate) fn new(metrics: &PluginMetrics, label: &PluginLabel) -> Self {
        Self {
            call_seconds: metrics.call_seconds.get_or_create(label).clone(),
            traps: metrics.traps.get_or_create(label).clone(),
            events: KIND_NAMES.map(|kind| {
                metrics
                    .events
                    .get_or_create(&EventLabels {
                        plugin: label.plugin.clone(),
                        kind: kind.to_owned(),
                    })
                    .clone()
            }),
        }
    }
}

/// What serves one lane: its version, its instance and its failure state. Behind the lane's
/// lock (`Lane::serving`), held by whoever calls into the instance.
#[derive(Default)]
pub(crate) struct Serving {
    /// The version serving (`None` until the first swap).
    version: Option<Arc<Loaded>>,
    /// Its instance (`None` after a trap, until re-instantiated).
    instance: Option<Box<Instance>>,
    /// Consecutive failures (traps, failed re-instantiations); reset by a successful call.
    failures: u32,
    /// No instantiation before this instant (backoff).
    retry_at: Option<Instant>,
    /// A call is in flight: still set when a direct call's future is dropped half-way, which
    /// then drops the instance ([`Direct`]). The lane's task needs no such check: when its
    /// future is dropped, [`ClearOnExit`] drops the instance.
    calling: bool,
    /// The buffers client frames are handed to the guest in.
    inbound: Inbound,
}

impl Serving {
    /// Whether an instance is ready for a call.
    fn ready(&self) -> bool {
        self.instance.is_some()
    }
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

/// Arm the deadline of the call about to start: a budget of epoch ticks, one spent at each tick
/// the guest is found running (see [`on_tick`]).
pub(crate) fn arm(store: &mut Store<HostState>, timeout: Duration) {
    let data = store.data_mut();
    data.ticks_left = deadline_ticks(timeout);
    data.ticks_seen = 0;
    store.set_epoch_deadline(1);
}

/// At an epoch tick while the guest runs: spend one tick of its budget; trap when none is
/// left. From the second tick of a call on (it has run for at least one tick, 5 ms), let the
/// runtime run other tasks before it continues.
///
/// Why not yield at the first tick: that tick comes at any moment of the call, after 5 ms or
/// after 5 us. A call yielding in its first microseconds went to the back of the worker's
/// queue holding its instance, and every other client of that instance had to queue behind it
/// instead of being called directly: in the echo benchmark (1000 clients, one core) only 38 %
/// of the calls were direct, and the queue held up to ~860 events. A guest still never holds a
/// worker for more than two ticks (10 ms) without yielding.
///
/// Why ticks and not the wall clock: a guest is only found at a tick while it runs wasm code, and
/// a suspension (a host call waiting for the key-value turn another instance holds, or the wait
/// for a worker after a yield) counts as one tick at most. Measured against the wall clock, a
/// pooled plugin's call that waited for the turn behind another instance's long handler trapped
/// as "deadline exceeded" without having run for its deadline (`plugin_pool.rs`).
fn on_tick(mut store: StoreContextMut<'_, HostState>) -> wasmtime::Result<UpdateDeadline> {
    let data = store.data_mut();
    data.ticks_left = data.ticks_left.saturating_sub(1);
    if data.ticks_left == 0 {
        return Ok(UpdateDeadline::Interrupt);
    }
    data.ticks_seen = data.ticks_seen.saturating_add(1);
    if data.ticks_seen < 2 {
        return Ok(UpdateDeadline::Continue(1));
    }
    Ok(UpdateDeadline::YieldCustom(
        1,
        Box::pin(tokio::task::yield_now()),
    ))
}

/// A new instance of `loaded` for lane `lane` of `plugin`, with `init` done. Runs the guest on
/// the calling task.
pub(crate) async fn instantiate(
    engine: &Engine,
    plugin: &Arc<PluginShared>,
    loaded: &Loaded,
    lane: usize,
) -> Result<Instance, String> {
    let system = plugin.systems.first().cloned().unwrap_or_default();
    let mut store = Store::new(engine, HostState::new(plugin.clone(), system.clone(), lane));
    store.limiter(|s| &mut s.limits);
    store.epoch_deadline_callback(on_tick);
    let timeout = plugin.limits.init_timeout;
    arm(&mut store, timeout);
    let _ticking = ticking();
    let bindings = match loaded.pre.instantiate_async(&mut store).await {
        Ok(b) => b,
        Err(e) => {
            let stderr = store.data().log.stderr_tail();
            return Err(format!("instantiate: {}", describe(&e, timeout, stderr)));
        }
    };
    store.data_mut().begin_event(system);
    store.data_mut().held_timers = Some(Vec::new());
    let init = bindings.call_init(&mut store, &plugin.init_config).await;
    store.data_mut().end_event();
    let held_timers = store.data_mut().held_timers.take().unwrap_or_default();
    let stderr = store.data().log.stderr_tail();
    let failed = match init {
        Ok(Ok(())) => {
            return Ok(Instance {
                store,
                bindings,
                held_timers,
            });
        }
        Ok(Err(msg)) => format!("init failed: {msg}"),
        Err(e) => format!("init trapped: {}", describe(&e, timeout, stderr)),
    };
    plugin.drop_timers(held_timers).await;
    Err(failed)
}

/// One call into a guest.
enum Call<'a> {
    Connect(&'a String, WitConnectContext),
    Message(&'a String, &'a mut WitMessage),
    Close(&'a String, CloseReason),
    Timer(WitTimer),
}

impl Call<'_> {
    fn kind(&self) -> usize {
        match self {
            Call::Connect(..) => 0,
            Call::Message(..) => 1,
            Call::Close(..) => 2,
            Call::Timer(_) => 3,
        }
    }
}

const KIND_NAMES: [&str; 4] = ["connect", "message", "close", "timer"];

/// Call `client`'s message into its lane from the caller's task, when the lane is idle;
/// `Err` gives the message back when it must be queued instead. The future holds the lane's
/// lock until the call is over and must be run to its end.
pub(crate) fn try_direct(
    plugin: &Arc<PluginShared>,
    lane: usize,
    system: Arc<str>,
    client: &str,
    msg: Message,
    from: &OutboundRx,
) -> Result<crate::events::Call, Message> {
    let Ok(serving) = plugin.lanes[lane].serving.clone().try_lock_owned() else {
        return Err(msg);
    };
    // Under the lock: the lane's task takes events only while it holds it, so an empty queue
    // here means none of this client's events is waiting or being handled.
    if !serving.ready() || !plugin.lanes[lane].mailbox.is_idle() {
        return Err(msg);
    }
    let mut direct = Direct {
        plugin: plugin.clone(),
        lane,
        serving,
    };
    let client = client.to_owned();
    let from = from.sender();
    // Boxed here, as it is made: the future is as large as the deepest call it makes (the
    // guest call's), and every move of it by value was a copy of all of it (callgrind: two
    // `memcpy` per message from `Sink::message`, 370 instructions of the 13,191 of the
    // in-process echo with its socket write).
    Ok(Box::pin(async move {
        let event = Event::Message {
            system,
            client,
            msg,
        };
        let Direct {
            plugin,
            lane,
            serving,
        } = &mut direct;
        handle(plugin, *lane, serving, event, Some(from)).await;
        let this = &plugin.lanes[*lane];
        this.direct_calls.fetch_add(1, Ordering::Relaxed);
        if !serving.ready() {
            // It trapped: the lane's task makes the next instance now (and arms the timers
            // its `init` sets), not when the next event arrives.
            this.mailbox.wake();
        }
    }))
}

/// A direct call in flight, holding its lane.
struct Direct {
    plugin: Arc<PluginShared>,
    lane: usize,
    serving: OwnedMutexGuard<Serving>,
}

impl Drop for Direct {
    /// Dropped half-way (its task was dropped): the instance stopped in the middle of guest
    /// code. It is dropped now, with whatever its store held (the key-value turn of a pooled
    /// plugin), counted as a failure, and the lane's task makes the next one.
    fn drop(&mut self) {
        if self.serving.calling {
            self.serving.calling = false;
            self.serving.instance = None;
            failed(
                &self.plugin,
                self.lane,
                &mut self.serving,
                "a call was dropped half-way (its task ended): instance dropped".to_owned(),
            );
            self.plugin.lanes[self.lane].mailbox.wake();
        }
    }
}

/// Clears the lane's instance when its task ends, however it ends: the instance's store holds
/// the plugin (`HostState`), which holds the lane, so a lane that kept it would never be freed.
struct ClearOnExit<'a>(&'a PluginShared, usize);

impl Drop for ClearOnExit<'_> {
    fn drop(&mut self) {
        if let Ok(mut serving) = self.0.lanes[self.1].serving.try_lock() {
            serving.instance = None;
            serving.version = None;
        }
    }
}

/// The task of one lane: it takes the lane's orders and queued events, in order, and
/// re-instantiates after a trap (with backoff). It releases the lane's lock only to wait.
async fn run(plugin: Arc<PluginShared>, lane: usize, engine: Engine) {
    let this = &plugin.lanes[lane];
    let _clear = ClearOnExit(&plugin, lane);
    let mailbox = &this.mailbox;
    let mut serving = this.serving.lock().await;
    'serve: loop {
        let due = serving.retry_at.is_none_or(|t| Instant::now() >= t);
        if !serving.ready()
            && due
            && let Some(version) = serving.version.clone()
        {
            serving.retry_at = None;
            match instantiate(&engine, &plugin, &version, lane).await {
                Ok(mut instance) => {
                    let held = std::mem::take(&mut instance.held_timers);
                    plugin.timers.arm(&plugin, &plugin.rt, &held);
                    serving.instance = Some(Box::new(instance));
                }
                Err(e) => failed(
                    &plugin,
                    lane,
                    &mut serving,
                    format!("re-instantiation failed: {e}"),
                ),
            }
        }
        // Events are taken only under the lock (see `try_direct`).
        loop {
            let ready = serving.ready();
            let Some(next) = mailbox.try_next(ready) else {
                break;
            };
            match next {
                Next::Control(Control::Stop) => {
                    // Under the lock: no direct call may start after the stop.
                    serving.instance = None;
                    serving.version = None;
                    break 'serve;
                }
                Next::Control(Control::Swap {
                    loaded,
                    instance,
                    reply,
                }) => {
                    serving.instance = Some(instance);
                    serving.version = Some(loaded);
                    serving.failures = 0;
                    serving.retry_at = None;
                    let _ = reply.send(());
                }
                Next::Event(event) => handle(&plugin, lane, &mut serving, event, None).await,
            }
        }
        let ready = serving.ready();
        let until = if ready { None } else { serving.retry_at };
        drop(serving);
        // Woken by an order, an event, a trap in a direct call, or the end of the backoff.
        mailbox.wait(ready, until).await;
        serving = this.serving.lock().await;
    }
    drop(serving);
    for event in mailbox.drain() {
        if let Event::Connect { reply, .. } = event {
            let _ = reply.send(ConnectVerdict::Accept);
        }
    }
    info!(plugin = %plugin.name, lane, "plugin instance stopped");
}

/// Handle `event` on the lane's instance. `caller`: the queue of the client whose message it
/// is, lent by its connection task for a direct call (`try_direct`); queued events have none,
/// since one may be handled after its client left, and holding the queue would keep what was
/// never sent to that client (up to `max_queue_bytes`) until then.
async fn handle(
    plugin: &Arc<PluginShared>,
    lane: usize,
    serving: &mut Serving,
    event: Event,
    caller: Option<Outbound>,
) {
    match event {
        Event::Connect {
            system,
            client,
            context,
            reply,
        } => {
            let context = to_wit_context(*context);
            let call = Call::Connect(&client, context);
            let verdict = match call_guest(plugin, lane, serving, &system, call, None).await {
                Some(Err(reject)) => reject_verdict(&plugin.name, reject.code, &reject.reason),
                Some(Ok(())) | None => ConnectVerdict::Accept,
            };
            let _ = reply.send(verdict);
        }
        Event::Message {
            system,
            client,
            msg,
        } => {
            if let Some(mut msg) = serving.inbound.fill(&msg) {
                let call = Call::Message(&client, &mut msg);
                call_guest(plugin, lane, serving, &system, call, caller).await;
                serving.inbound.reuse(msg);
            }
        }
        Event::Close {
            system,
            client,
            code,
            reason,
        } => {
            let reason = CloseReason { code, reason };
            let call = Call::Close(&client, reason);
            call_guest(plugin, lane, serving, &system, call, None).await;
        }
        Event::Timer { id } => {
            if let Some(fired) = plugin.timers.take(id) {
                let timer = WitTimer {
                    id,
                    payload: fired.payload,
                    client: fired.client,
                };
                call_guest(
                    plugin,
                    lane,
                    serving,
                    &fired.system,
                    Call::Timer(timer),
                    None,
                )
                .await;
            }
        }
    }
}

/// Call into the lane's instance for an event of `system`. `None` if there is no instance or
/// the call trapped (the instance is then gone); for a connect, the plugin's verdict.
async fn call_guest(
    plugin: &Arc<PluginShared>,
    lane: usize,
    serving: &mut Serving,
    system: &Arc<str>,
    call: Call<'_>,
    caller: Option<Outbound>,
) -> Option<Result<(), Reject>> {
    let kind = call.kind();
    let instance = serving.instance.as_mut()?;
    let Instance {
        store, bindings, ..
    } = &mut **instance;
    store.data_mut().begin_event(system.clone());
    if let (Some(queue), Call::Message(client, _)) = (caller, &call) {
        store.data_mut().caller.set(client, queue);
    }
    arm(store, plugin.limits.call_timeout);
    let ticking = ticking();
    let started = Instant::now();
    let work = async {
        match call {
            Call::Connect(client, context) => {
                bindings
                    .call_on_connect(&mut *store, client, &context)
                    .await
            }
            Call::Message(client, msg) => bindings
                .call_on_message(&mut *store, client, msg)
                .await
                .map(Ok),
            Call::Close(client, reason) => bindings
                .call_on_close(&mut *store, client, reason)
                .await
                .map(Ok),
            Call::Timer(timer) => bindings.call_on_timer(&mut *store, &timer).await.map(Ok),
        }
    };
    // A panic in host code must not kill the lane: treat it like a trap.
    serving.calling = true;
    let result = std::panic::AssertUnwindSafe(work).catch_unwind().await;
    serving.calling = false;
    let took = started.elapsed();
    drop(ticking);
    store.data_mut().end_event();
    let this = &plugin.lanes[lane];
    this.events_handled.fetch_add(1, Ordering::Relaxed);
    plugin.stats.latency.record(took);
    let metrics = &plugin.calls;
    metrics.call_seconds.observe(took.as_secs_f64());
    metrics.events[kind].inc();
    let error = match result {
        Ok(Ok(r)) => {
            serving.failures = 0;
            return Some(r);
        }
        Ok(Err(e)) => describe(
            &e,
            plugin.limits.call_timeout,
            store.data().log.stderr_tail(),
        ),
        Err(_) => "host panic while handling the event".to_owned(),
    };
    this.traps.fetch_add(1, Ordering::Relaxed);
    metrics.traps.inc();
    let kind = KIND_NAMES[kind];
    warn!(plugin = %plugin.name, lane, system = %system, event = kind,
        cause = %error, "plugin trapped: instance dropped, a fresh one serves the next event");
    serving.instance = None;
    failed(plugin, lane, serving, format!("trap in on-{kind}: {error}"));
    None
}

/// Count a failure, record it, and schedule the next instantiation.
fn failed(plugin: &PluginShared, lane: usize, serving: &mut Serving, error: String) {
    serving.failures = serving.failures.saturating_add(1);
    serving.retry_at = backoff(serving.failures).map(|d| Instant::now() + d);
    if let Some(at) = serving.retry_at {
        warn!(plugin = %plugin.name, lane, failures = serving.failures,
            delay_ms = at.saturating_duration_since(Instant::now()).as_millis() as u64,
            cause = %error, "plugin keeps failing: backing off");
    }
    plugin.set_error(error);
}

/// Delay before instantiating again after `failures` consecutive failures.
fn backoff(failures: u32) -> Option<Duration> {
    if failures <= 1 {
        return None;
    }
    let exp = (failures - 2).min(16);
    Some((BACKOFF_BASE * 2u32.pow(exp)).min(BACKOFF_MAX))
}

/// A plugin's reject as the connection gets it: close codes a server may not send become 4000
/// (the rule of `CloseCode::application`), reasons are cut to what a close frame
/// holds (`CloseReason::truncated`).
fn reject_verdict(plugin: &str, code: u16, reason: &str) -> ConnectVerdict {
    let code = match super::rules::reject_code(code) {
        valid if valid == code => code,
        replaced => {
            warn!(
                plugin,
                code, "plugin rejected with an invalid close code: using {replaced}"
            );
            replaced
        }
    };
    ConnectVerdict::Reject {
        code,
        reason: Reason::truncated(reason).as_str().to_owned(),
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
