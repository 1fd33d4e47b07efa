//! A plugin's timers: `set-timer` starts a tokio sleep that, when it fires, queues an `on-timer`
//! event for the instance (lane) of the pool that set it, in order with that instance's other
//! events. The table lives beside the plugin, not in an instance, so timers survive traps and
//! hot reloads (the version current when the timer fires gets it); they die with the plugin
//! (file deleted) and with the process.
//!
//! A timer set by `init` while a new version is being instantiated is *held*: it is in the table
//! (it counts, it can be cancelled) but its clock starts only when the version serves
//! ([`Timers::arm`]). A version that fails to load takes its held timers with it
//! ([`Timers::cancel`]), so neither a failed reload nor a short timer of the new version ever
//! fires an `on-timer` into the version still serving.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::task::AbortHandle;

use super::bindings::WitError;
use super::entry::PluginShared;
use super::mailbox::Event;

/// Most timers one plugin may have pending.
pub const MAX_PENDING: usize = 10_000;
/// Longest delay of a timer.
pub const MAX_DELAY: Duration = Duration::from_secs(30 * 24 * 3600);
/// Largest timer payload, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// A timer that has not been delivered yet.
struct Pending {
    /// The system it was set from: `on-timer` runs scoped to it.
    system: Arc<str>,
    /// Handed to `on-timer`.
    payload: String,
    /// Stops the sleeping task on cancel or unload; `None` while the timer is held.
    task: Option<AbortHandle>,
    /// The lane it fires on.
    lane: usize,
    /// Its delay, kept to start it when a held timer is armed.
    delay: Duration,
}

/// One plugin's timers.
#[derive(Default)]
pub(crate) struct Timers {
    /// Ids are never reused within a plugin's lifetime, across versions.
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, Pending>>,
}

impl Timers {
    /// Start a timer for `plugin` (or only register it, when `held`); its id.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn set(
        &self,
        plugin: &Arc<PluginShared>,
        rt: &Handle,
        system: Arc<str>,
        lane: usize,
        delay_ms: u64,
        payload: String,
        held: bool,
    ) -> Result<u64, WitError> {
        let delay = Duration::from_millis(delay_ms);
        if delay > MAX_DELAY {
            return Err(WitError::InvalidArgument(format!(
                "delay longer than {} days",
                MAX_DELAY.as_secs() / 86_400
            )));
        }
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(WitError::InvalidArgument(format!(
                "payload larger than {MAX_PAYLOAD_BYTES} bytes"
            )));
        }
        // Held across the spawn: the task cannot deliver before the entry exists.
        let mut pending = self.pending.lock();
        if pending.len() >= MAX_PENDING {
            return Err(WitError::QuotaExceeded(format!(
                "{MAX_PENDING} timers pending already"
            )));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let task = (!held).then(|| start(plugin, rt, id, lane, delay));
        pending.insert(
            id,
            Pending {
                system,
                payload,
                task,
                lane,
                delay,
            },
        );
        Ok(id)
    }

    /// Start held timers `ids` (their version now serves); cancelled ones are skipped.
    pub(crate) fn arm(&self, plugin: &Arc<PluginShared>, rt: &Handle, ids: &[u64]) {
        let mut pending = self.pending.lock();
        for id in ids {
            if let Some(p) = pending.get_mut(id)
                && p.task.is_none()
            {
                p.task = Some(start(plugin, rt, *id, p.lane, p.delay));
            }
        }
    }

    /// Cancel a timer; whether it was still pending (if so, `on-timer` will not run for it).
    pub(crate) fn cancel(&self, id: u64) -> bool {
        match self.pending.lock().remove(&id) {
            Some(p) => {
                if let Some(task) = p.task {
                    task.abort();
                }
                true
            }
            None => false,
        }
    }

    /// A fired timer, taken out of the table: its system and payload. `None` when it was
    /// cancelled after it fired but before its lane got to it.
    pub(crate) fn take(&self, id: u64) -> Option<(Arc<str>, String)> {
        self.pending
            .lock()
            .remove(&id)
            .map(|p| (p.system, p.payload))
    }

    /// Cancel every timer (the plugin is unloaded).
    pub(crate) fn clear(&self) {
        for (_, p) in self.pending.lock().drain() {
            if let Some(task) = p.task {
                task.abort();
            }
        }
    }

    /// Timers pending.
    pub(crate) fn len(&self) -> usize {
        self.pending.lock().len()
    }
}

/// The sleeping task of timer `id`: when it wakes, it queues `on-timer` on its lane.
fn start(
    plugin: &Arc<PluginShared>,
    rt: &Handle,
    id: u64,
    lane: usize,
    delay: Duration,
) -> AbortHandle {
    let weak: Weak<PluginShared> = Arc::downgrade(plugin);
    rt.spawn(async move {
        tokio::time::sleep(delay).await;
        if let Some(plugin) = weak.upgrade()
            && let Some(lane) = plugin.lanes.get(lane)
        {
            lane.mailbox.push_unbounded(Event::Timer { id });
        }
    })
    .abort_handle()
}
