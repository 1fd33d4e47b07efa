//! What the gateway keeps about one plugin across its versions: identity, queue, key-value store,
//! timers and statistics. Instances come and go (reloads, traps); this stays.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::runtime::Handle;

use crate::gateway::Gateway;

use super::actor::{CallMetrics, Serving};
use super::engine::CodeSource;
use super::kv::Kv;
use super::mailbox::Mailbox;
use super::metrics::{LatencyWindow, PluginMetrics};
use super::timers::Timers;
use super::world::World;

/// Limits of every instance of a plugin.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Deadline of one handler call.
    pub call_timeout: Duration,
    /// Deadline of instantiation plus `init` (a big guest may need longer than a handler).
    pub init_timeout: Duration,
    /// Cap of each linear memory of an instance.
    pub max_memory_bytes: usize,
    /// Send calls one event may make (see `hostcalls.rs`).
    pub sends_per_event: u32,
    /// Log lines (host `log` plus stdout/stderr lines) one event may write.
    pub logs_per_event: u32,
}

/// The version currently serving.
#[derive(Debug, Clone)]
pub(crate) struct VersionInfo {
    /// blake3 of the `.wasm` bytes, hex.
    pub hash: String,
    /// When it started serving, in ms since the Unix epoch.
    pub loaded_at_ms: u64,
    /// Where its machine code came from.
    pub code: CodeSource,
    /// The contract it targets.
    pub world: World,
}

/// Counters and state shown by `GET /api/plugins`.
#[derive(Default)]
pub(crate) struct Stats {
    /// Successful loads and reloads.
    pub reloads: AtomicU64,
    /// The last load failure or trap, for operators.
    pub last_error: Mutex<Option<String>>,
    /// The version serving, if any.
    pub version: Mutex<Option<VersionInfo>>,
    /// Recent call durations.
    pub latency: LatencyWindow,
}

/// One plugin, shared by its lanes, its timers, the loader and the API.
pub(crate) struct PluginShared {
    /// File name without `.wasm`.
    pub name: Arc<str>,
    /// Systems it serves; host calls during `init` act on the first.
    pub systems: Vec<Arc<str>>,
    /// Handed to `init`.
    pub init_config: String,
    /// Where host calls go.
    pub gateway: Gateway,
    /// The runtime host calls block on and timers run on.
    pub rt: Handle,
    /// Instance limits.
    pub limits: Limits,
    /// One queue per instance of the pool: a client's events all go to `lanes[lane_of(client)]`.
    pub lanes: Box<[Lane]>,
    /// Held by an event of a pooled plugin from its first KV call to its end (see
    /// `hostcalls.rs`), so read-modify-writes of different instances do not interleave.
    pub kv_turn: Arc<tokio::sync::Mutex<()>>,
    /// The key-value store.
    pub kv: Kv,
    /// Pending timers.
    pub timers: Timers,
    /// What the API shows.
    pub stats: Stats,
    /// Metric families.
    pub metrics: PluginMetrics,
    /// The metric handles its calls count into.
    pub calls: CallMetrics,
    /// Whether a version serves: until then (and after unload) events are not routed here.
    pub live: AtomicBool,
}

/// One instance of a plugin's pool: its queue and its figures.
pub(crate) struct Lane {
    /// Events waiting for this instance.
    pub mailbox: Mailbox,
    /// Its instance and failure state, held by whoever calls into it: the lane's task, or a
    /// client's connection task calling directly (`actor::try_direct`).
    pub serving: Arc<tokio::sync::Mutex<Serving>>,
    /// Calls it handled (completed or trapped).
    pub events_handled: AtomicU64,
    /// Of those, messages called from their client's connection task (the lane was idle).
    pub direct_calls: AtomicU64,
    /// Its traps.
    pub traps: AtomicU64,
    /// Bytes of linear memory of its current instance (0 while it has none).
    pub memory_bytes: Arc<AtomicU64>,
}

impl Lane {
    pub(crate) fn new(mailbox: Mailbox) -> Self {
        Self {
            mailbox,
            serving: Arc::default(),
            events_handled: AtomicU64::new(0),
            direct_calls: AtomicU64::new(0),
            traps: AtomicU64::new(0),
            memory_bytes: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// The lane of `client` among `lanes`: FNV-1a of its id, so a client's events always reach
/// the same instance, in order.
pub(crate) fn lane_of(client: &str, lanes: usize) -> usize {
    if lanes <= 1 {
        return 0;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in client.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    usize::try_from(h % lanes as u64).unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl PluginShared {
    /// Cancel timers `ids` here and, in a cluster, their copies in Redis (the version that set
    /// them never served, or the plugin is unloaded): no node runs them later.
    pub(crate) async fn drop_timers(&self, ids: Vec<u64>) {
        for id in &ids {
            self.timers.cancel(*id);
        }
        if let Some(shared) = self.gateway.shared_timers() {
            for id in ids {
                let _ = shared.take(&self.name, id).await;
            }
        }
    }

    /// Record a failure for operators (the API's `lastError`).
    pub(crate) fn set_error(&self, error: String) {
        *self.stats.last_error.lock() = Some(error);
    }

    /// The version serving now.
    pub(crate) fn version(&self) -> Option<VersionInfo> {
        self.stats.version.lock().clone()
    }

    /// Stop every lane's task (queued events are dropped, waiting connects accepted).
    pub(crate) fn stop(&self) {
        for lane in &*self.lanes {
            lane.mailbox.control(super::mailbox::Control::Stop);
        }
    }

    /// Whether more than one instance serves (the KV turn is then taken).
    pub(crate) fn pooled(&self) -> bool {
        self.lanes.len() > 1
    }

    /// The queue of `client`'s instance.
    pub(crate) fn mailbox(&self, client: &str) -> &Mailbox {
        &self.lanes[self.lane(client)].mailbox
    }

    /// The lane of `client`.
    pub(crate) fn lane(&self, client: &str) -> usize {
        lane_of(client, self.lanes.len())
    }

    /// Whether events are routed here.
    pub(crate) fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// The entry of `GET /api/plugins`.
    pub(crate) fn describe(&self) -> Value {
        let version = self.version();
        let (p50, p99) = match self.stats.latency.percentiles() {
            Some((a, b)) => (json!(a), json!(b)),
            None => (Value::Null, Value::Null),
        };
        let (mut queued, mut events, mut traps, mut memory, mut direct) = (0, 0, 0, 0, 0);
        let instances: Vec<Value> = self
            .lanes
            .iter()
            .map(|l| {
                let waiting = l.mailbox.len();
                queued += waiting;
                let lane = (
                    l.events_handled.load(Ordering::Relaxed),
                    l.traps.load(Ordering::Relaxed),
                    l.memory_bytes.load(Ordering::Relaxed),
                    l.direct_calls.load(Ordering::Relaxed),
                );
                events += lane.0;
                traps += lane.1;
                memory += lane.2;
                direct += lane.3;
                json!({
                    "queued": waiting,
                    // Someone holds the instance: a call in flight, or the lane's task taking
                    // its queue.
                    "busy": l.serving.try_lock().is_err(),
                    "eventsHandled": lane.0,
                    "directCalls": lane.3,
                    "traps": lane.1,
                    "memoryBytes": lane.2,
                })
            })
            .collect();
        json!({
            "name": &*self.name,
            "systems": self.systems.iter().map(|s| &**s).collect::<Vec<_>>(),
            "version": version.as_ref().map(|v| v.hash.clone()),
            "loadedAt": version.as_ref().map(|v| v.loaded_at_ms),
            "code": version.as_ref().map(|v| v.code.as_str()),
            "world": version.as_ref().map(|v| v.world.as_str()),
            "eventsHandled": events,
            "directCalls": direct,
            "traps": traps,
            "reloads": self.stats.reloads.load(Ordering::Relaxed),
            "lastError": self.stats.last_error.lock().clone(),
            "p50Us": p50,
            "p99Us": p99,
            "queued": queued,
            "timers": self.timers.len(),
            "memoryBytes": memory,
            "instances": instances,
        })
    }
}
