//! The data of one instance's `Store`: the WASI sandbox, the memory limiter, the plugin it belongs
//! to, the system of the event being handled and the per-event budgets.
//!
//! The sandbox: no preopened folders, no environment, no arguments, no network (TCP, UDP and
//! name lookups denied), stdin closed; stdout and stderr are captured line by line into the log,
//! tagged with the plugin's name.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::io::AsyncWrite;
use tracing::info;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::entry::PluginShared;
use crate::outbound::Outbound;

/// Longest line kept from a guest's stdout/stderr; longer lines are cut.
const MAX_LINE: usize = 4096;
/// How many stderr lines of an event are kept to explain a trap.
const STDERR_TAIL: usize = 4;

/// Per-event allowances, reset before every call into the guest.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    /// Send calls left.
    pub sends: u32,
}

/// The log side of a plugin instance: its name and the lines it may still write in this event.
pub(crate) struct GuestLog {
    /// The plugin's name, on every line.
    pub plugin: Arc<str>,
    /// Lines left in this event (host `log`, stdout, stderr together).
    pub lines_left: AtomicU32,
    /// Lines refused in this event, reported once at its end.
    pub refused: AtomicU32,
    /// The last lines the guest wrote to stderr in this event: a panic message, quoted when
    /// the event traps.
    pub stderr_tail: Mutex<VecDeque<String>>,
}

impl GuestLog {
    /// A complete line of `stream`: logged within the budget, and remembered if it is stderr.
    fn line(&self, stream: &str, line: &[u8]) {
        if stream == "stderr" && !line.iter().all(u8::is_ascii_whitespace) {
            let mut tail = self.stderr_tail.lock();
            if tail.len() == STDERR_TAIL {
                tail.pop_front();
            }
            let text = String::from_utf8_lossy(line);
            tail.push_back(text.chars().take(300).collect());
        }
        if self.take_line() {
            emit(&self.plugin, stream, line);
        }
    }

    /// The remembered stderr lines of this event, joined.
    pub(crate) fn stderr_tail(&self) -> Option<String> {
        let tail = self.stderr_tail.lock();
        (!tail.is_empty()).then(|| tail.iter().cloned().collect::<Vec<_>>().join(" | "))
    }

    /// Take one line from the budget.
    pub(crate) fn take_line(&self) -> bool {
        let ok = self
            .lines_left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if !ok {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }
}

/// The memory cap of one instance (`plugin.max_memory_bytes` per linear memory), which also
/// counts the instance's linear memory into its lane's figure for `GET /api/plugins`.
pub(crate) struct Limiter {
    inner: StoreLimits,
    /// Bytes this store added to `lane_bytes`, given back when it is dropped.
    counted: u64,
    /// Bytes of the last grow allowed: taken back if the grow then fails.
    last_grown: u64,
    lane_bytes: Option<Arc<AtomicU64>>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = self.inner.memory_growing(current, desired, maximum)?;
        if ok && let Some(bytes) = &self.lane_bytes {
            let grown = u64::try_from(desired.saturating_sub(current)).unwrap_or(u64::MAX);
            bytes.fetch_add(grown, Ordering::Relaxed);
            self.counted = self.counted.saturating_add(grown);
            self.last_grown = grown;
        }
        Ok(ok)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        if let Some(bytes) = &self.lane_bytes {
            bytes.fetch_sub(self.last_grown, Ordering::Relaxed);
            self.counted = self.counted.saturating_sub(self.last_grown);
        }
        self.last_grown = 0;
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

impl Drop for Limiter {
    fn drop(&mut self) {
        if let Some(bytes) = &self.lane_bytes {
            bytes.fetch_sub(self.counted, Ordering::Relaxed);
        }
    }
}

/// The store data of one instance.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Caps linear memory growth and counts it.
    pub limits: Limiter,
    /// The plugin this instance belongs to.
    pub plugin: Arc<PluginShared>,
    /// The system of the event being handled: every host call is scoped to it.
    pub system: Arc<str>,
    /// For a message event called by its client's own task: that client and its queue.
    pub caller: Caller,
    /// This event's allowances.
    pub budget: Budget,
    /// Log budget, shared with the stdout/stderr streams.
    pub log: Arc<GuestLog>,
    /// Partial lines of stdout and stderr, flushed at the end of each event.
    pub stdio: [Arc<Mutex<Vec<u8>>>; 2],
    /// Which instance of the plugin's pool this is: timers it sets fire here.
    pub lane: usize,
    /// The plugin's key-value turn, held from the event's first KV call to its end.
    pub kv_held: Option<KvHeld>,
    /// Epoch ticks the call in progress may still run before it is cut (see `actor.rs`).
    pub ticks_left: u64,
    /// Epoch ticks the call in progress was found running at (it yields from the second on).
    pub ticks_seen: u32,
    /// While `init` of an instance not serving yet runs: the timers it set, held until the
    /// instance serves (see `timers.rs`).
    pub held_timers: Option<Vec<u64>>,
}

/// The client whose message is being handled, with its own queue, so that the plugin's reply
/// to it is pushed there without looking the client up (`Gateway::send_to_own`).
///
/// Why: the lookup (the connections map, its hash of the id, the comparison of the system)
/// was `DashMap::_get` 1.15 % and most of `memcmp`'s 0.92 % of the gateway's samples with the
/// Rust echo plugin, none with the native echo (perf, 1000 clients, one profiled run;
/// `DashMap::_get` 0.27 % after, the per-system counter's lookup). The id is copied into a
/// buffer kept across events rather than stored with every connection's queue: no allocation
/// per event, nothing added to an idle connection.
#[derive(Default)]
pub(crate) struct Caller {
    id: String,
    queue: Option<Outbound>,
}

impl Caller {
    /// The event is `client`'s message, called by its connection task, which lent `queue`.
    pub(crate) fn set(&mut self, client: &str, queue: Outbound) {
        self.id.clear();
        self.id.push_str(client);
        self.queue = Some(queue);
    }

    /// The event is over: its client's queue is not held past it.
    pub(crate) fn clear(&mut self) {
        self.queue = None;
    }

    /// The queue to push a reply to `client` to, if it is the caller.
    pub(crate) fn queue_for(&self, client: &str) -> Option<&Outbound> {
        self.queue.as_ref().filter(|_| self.id == client)
    }
}

impl HostState {
    /// Fresh state for a new instance of `plugin`, scoped to `system` until an event says
    /// otherwise.
    pub(crate) fn new(plugin: Arc<PluginShared>, system: Arc<str>, lane: usize) -> Self {
        let log = Arc::new(GuestLog {
            plugin: plugin.name.clone(),
            lines_left: AtomicU32::new(plugin.limits.logs_per_event),
            refused: AtomicU32::new(0),
            stderr_tail: Mutex::new(VecDeque::new()),
        });
        let stdio: [Arc<Mutex<Vec<u8>>>; 2] = [Arc::default(), Arc::default()];
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(LineLog {
            log: log.clone(),
            stream: "stdout",
            buf: stdio[0].clone(),
        })
        .stderr(LineLog {
            log: log.clone(),
            stream: "stderr",
            buf: stdio[1].clone(),
        })
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
        let limits = Limiter {
            inner: StoreLimitsBuilder::new()
                .memory_size(plugin.limits.max_memory_bytes)
                .build(),
            counted: 0,
            last_grown: 0,
            lane_bytes: plugin.lanes.get(lane).map(|l| l.memory_bytes.clone()),
        };
        Self {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits,
            budget: Budget {
                sends: plugin.limits.sends_per_event,
            },
            plugin,
            system,
            caller: Caller::default(),
            log,
            stdio,
            lane,
            kv_held: None,
            ticks_left: 0,
            ticks_seen: 0,
            held_timers: None,
        }
    }

    /// Scope the instance to an event of `system` and refill the budgets.
    pub(crate) fn begin_event(&mut self, system: Arc<str>) {
        self.system = system;
        self.caller.clear();
        self.budget.sends = self.plugin.limits.sends_per_event;
        self.log
            .lines_left
            .store(self.plugin.limits.logs_per_event, Ordering::Relaxed);
        self.log.refused.store(0, Ordering::Relaxed);
        self.log.stderr_tail.lock().clear();
    }

    /// Log what stdout/stderr left without a newline, and report refused log lines.
    pub(crate) fn end_event(&mut self) {
        self.kv_held = None;
        self.caller.clear();
        for (buf, stream) in self.stdio.iter().zip(["stdout", "stderr"]) {
            let mut buf = buf.lock();
            if !buf.is_empty() {
                self.log.line(stream, &buf);
                buf.clear();
            }
        }
        let refused = self.log.refused.swap(0, Ordering::Relaxed);
        if refused > 0 {
            tracing::warn!(plugin = %self.log.plugin, refused, "log budget of the event exhausted: lines dropped");
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn emit(plugin: &str, stream: &str, line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    info!(target: "wasmgate::plugin::guest", plugin, stream, "{}", text.trim_end_matches('\r'));
}

/// stdout or stderr of a guest: complete lines go to the log.
#[derive(Clone)]
struct LineLog {
    log: Arc<GuestLog>,
    stream: &'static str,
    buf: Arc<Mutex<Vec<u8>>>,
}

impl LineLog {
    fn write_bytes(&self, bytes: &[u8]) {
        let mut buf = self.buf.lock();
        for &b in bytes {
            if b == b'\n' {
                self.log.line(self.stream, &buf);
                buf.clear();
            } else if buf.len() < MAX_LINE {
                buf.push(b);
            }
        }
    }
}

impl IsTerminal for LineLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LineLog {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineLog {
    async fn ready(&mut self) {}
}

impl OutputStream for LineLog {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl AsyncWrite for LineLog {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A plugin's key-value turn, as one event holds it: this node's (between the instances of a
/// pool) and, in a cluster, the cluster's (between nodes). Released when dropped.
pub struct KvHeld {
    /// This node's turn, when pooled (held, never read).
    pub _local: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// The cluster's turn, in cluster mode (extended while held).
    pub cluster: Option<crate::cluster::kv::Turn>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a reply to the client whose message it is takes its queue, and only during the event.
    #[test]
    fn only_the_caller_is_replied_to_through_its_own_queue() {
        let (queue, _rx) = crate::outbound::channel(8, 1 << 20, Default::default());
        let mut caller = Caller::default();
        assert!(caller.queue_for("a").is_none());
        caller.set("a", queue.clone());
        assert!(caller.queue_for("a").is_some());
        assert!(caller.queue_for("b").is_none());
        assert!(caller.queue_for("ab").is_none());
        caller.clear();
        assert!(caller.queue_for("a").is_none());
        // A later caller's id replaces the earlier one in the kept buffer.
        caller.set("b", queue);
        assert!(caller.queue_for("b").is_some());
        assert!(caller.queue_for("a").is_none());
    }

    #[test]
    fn a_grow_that_fails_after_it_was_allowed_is_not_counted() {
        let lane = Arc::new(AtomicU64::new(0));
        let mut limiter = Limiter {
            inner: StoreLimitsBuilder::new().memory_size(1 << 20).build(),
            counted: 0,
            last_grown: 0,
            lane_bytes: Some(lane.clone()),
        };
        assert!(limiter.memory_growing(0, 65536, None).unwrap_or(false));
        assert!(
            limiter
                .memory_growing(65536, 131_072, None)
                .unwrap_or(false)
        );
        assert_eq!(lane.load(Ordering::Relaxed), 131_072);
        // wasmtime could not map the pages after all.
        let _ = limiter.memory_grow_failed(wasmtime::Error::msg("mmap failed"));
        assert_eq!(lane.load(Ordering::Relaxed), 65536);
        drop(limiter);
        assert_eq!(lane.load(Ordering::Relaxed), 0, "given back with the store");
    }
}
