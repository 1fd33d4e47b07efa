//! A plugin's timers: `set-timer` starts a tokio sleep that, when it fires, queues an `on-timer`
//! event for the instance (lane) of the pool that set it, in order with that instance's other
//! events. The table lives beside the plugin, not in an instance, so timers survive traps and
//! hot reloads (the version current when the timer fires gets it); they die with the plugin
//! (file deleted) and with the process. A timer bound to a client (WIT 0.2) also dies when that
//! client leaves: an index by client makes the cancellation cost the client's own timers only.
//!
//! A timer set by `init` while a new version is being instantiated is *held*: it is in the table
//! (it counts, it can be cancelled) but its clock starts only when the version serves
//! ([`Timers::arm`]). A version that fails to load takes its held timers with it
//! ([`Timers::cancel`]), so neither a failed reload nor a short timer of the new version ever
//! fires an `on-timer` into the version still serving.
//!
//! In a cluster the table works the same, and Redis holds a copy of every timer
//! ([`crate::cluster::timers`]): the id comes from there, a sleep that ends claims its timer
//! there before queueing `on-timer` (a cancel through another node wins), and timers of a node
//! that died are [adopted](Timers::adopt) by the node that reaps it.

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
/// How long a due timer waits before asking Redis again for its claim (cluster mode, Redis
/// unreachable).
const CLAIM_RETRY: Duration = Duration::from_millis(500);
/// Largest timer payload, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// A timer that has not been delivered yet.
struct Pending {
    /// The system it was set from: `on-timer` runs scoped to it.
    system: Arc<str>,
    /// Handed to `on-timer`.
    payload: String,
    /// The client it is bound to, if any.
    client: Option<String>,
    /// Stops the sleeping task on cancel or unload; `None` while the timer is held.
    task: Option<AbortHandle>,
    /// The lane it fires on.
    lane: usize,
    /// Its delay, kept to start it when a held timer is armed.
    delay: Duration,
    /// When it is due (ms since the epoch; for a held timer, as if it started when set).
    due_ms: u64,
}

/// One plugin's timers.
#[derive(Default)]
pub(crate) struct Timers {
    /// Ids are never reused within a plugin's lifetime, across versions.
    next_id: AtomicU64,
    pending: Mutex<Table>,
}

/// The pending timers and, for those bound to a client, their ids by client.
#[derive(Default)]
struct Table {
    by_id: HashMap<u64, Pending>,
    by_client: HashMap<String, Vec<u64>>,
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Pending> {
        let p = self.by_id.remove(&id)?;
        if let Some(client) = &p.client
            && let Some(ids) = self.by_client.get_mut(client)
        {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                self.by_client.remove(client);
            }
        }
        Some(p)
    }
}

impl Timers {
    /// Start a timer for `plugin`, bound to `client` if given (or only register it, when
    /// `held`); its id.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn set(
        &self,
        plugin: &Arc<PluginShared>,
        rt: &Handle,
        system: Arc<str>,
        lane: usize,
        delay_ms: u64,
        payload: String,
        client: Option<String>,
        held: bool,
        id: Option<u64>,
    ) -> Result<u64, WitError> {
        let delay = Duration::from_millis(delay_ms);
        // Held across the spawn: the task cannot deliver before the entry exists.
        let mut pending = self.pending.lock();
        super::rules::timer(delay_ms, payload.len(), pending.by_id.len())?;
        // A cluster's id (from Redis) or this plugin's own. Redis hands out an id it handed
        // out before only after it lost its data, until this node wrote its timers back.
        let id = id.unwrap_or_else(|| self.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        if pending.by_id.contains_key(&id) {
            return Err(WitError::Unavailable(format!(
                "timer id {id} is in use (the cluster is recovering its timers)"
            )));
        }
        let task = (!held).then(|| start(plugin, rt, id, lane, delay));
        if let Some(client) = &client {
            pending
                .by_client
                .entry(client.clone())
                .or_default()
                .push(id);
        }
        pending.by_id.insert(
            id,
            Pending {
                system,
                payload,
                client,
                task,
                lane,
                delay,
                due_ms: super::now_ms().saturating_add(delay_ms),
            },
        );
        Ok(id)
    }

    /// Run timer `id`, set on a node that died, on lane 0 after `delay` (cluster mode).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn adopt(
        &self,
        plugin: &Arc<PluginShared>,
        rt: &Handle,
        id: u64,
        system: Arc<str>,
        payload: String,
        client: Option<String>,
        delay: Duration,
    ) {
        let mut pending = self.pending.lock();
        if pending.by_id.contains_key(&id) {
            return;
        }
        if let Some(client) = &client {
            pending
                .by_client
                .entry(client.clone())
                .or_default()
                .push(id);
        }
        let task = Some(start(plugin, rt, id, 0, delay));
        pending.by_id.insert(
            id,
            Pending {
                system,
                payload,
                client,
                task,
                lane: 0,
                delay,
                due_ms: super::now_ms().saturating_add(delay.as_millis() as u64),
            },
        );
    }

    /// Every pending timer of plugin `name`.
    pub(crate) fn snapshot(&self, name: &str) -> Vec<crate::events::PendingTimer> {
        self.pending
            .lock()
            .by_id
            .iter()
            .map(|(id, p)| {
                let (system, payload) = (p.system.clone(), p.payload.clone());
                (
                    name.to_owned(),
                    *id,
                    system,
                    payload,
                    p.client.clone(),
                    p.due_ms,
                )
            })
            .collect()
    }

    /// Start held timers `ids` (their version now serves); cancelled ones are skipped.
    pub(crate) fn arm(&self, plugin: &Arc<PluginShared>, rt: &Handle, ids: &[u64]) {
        let mut table = self.pending.lock();
        for id in ids {
            if let Some(p) = table.by_id.get_mut(id)
                && p.task.is_none()
            {
                p.task = Some(start(plugin, rt, *id, p.lane, p.delay));
            }
        }
    }

    /// Cancel a timer; whether it was still pending (if so, `on-timer` will not run for it).
    pub(crate) fn cancel(&self, id: u64) -> bool {
        match self.pending.lock().remove(id) {
            Some(p) => {
                if let Some(task) = p.task {
                    task.abort();
                }
                true
            }
            None => false,
        }
    }

    /// A fired timer, taken out of the table: its system, payload and client. `None` when it
    /// was cancelled after it fired but before its lane got to it.
    pub(crate) fn take(&self, id: u64) -> Option<Fired> {
        self.pending.lock().remove(id).map(|p| Fired {
            system: p.system,
            payload: p.payload,
            client: p.client,
        })
    }

    /// Cancel the timers bound to `client` (it left); how many there were.
    pub(crate) fn cancel_client(&self, client: &str) -> usize {
        let mut table = self.pending.lock();
        let Some(ids) = table.by_client.remove(client) else {
            return 0;
        };
        for id in &ids {
            if let Some(p) = table.by_id.remove(id)
                && let Some(task) = p.task
            {
                task.abort();
            }
        }
        ids.len()
    }

    /// Cancel every timer (the plugin is unloaded, or the process stops); their ids.
    pub(crate) fn clear(&self) -> Vec<u64> {
        let mut table = self.pending.lock();
        table.by_client.clear();
        let mut ids = Vec::with_capacity(table.by_id.len());
        for (id, p) in table.by_id.drain() {
            ids.push(id);
            if let Some(task) = p.task {
                task.abort();
            }
        }
        ids
    }

    /// Timers pending.
    pub(crate) fn len(&self) -> usize {
        self.pending.lock().by_id.len()
    }
}

/// A timer that fired, as its lane hands it to `on-timer`.
pub(crate) struct Fired {
    /// The system it was set from.
    pub system: Arc<str>,
    /// Its payload.
    pub payload: String,
    /// The client it is bound to.
    pub client: Option<String>,
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
        // In a cluster: claimed here, or cancelled (or claimed) elsewhere, exactly one of the
        // two, since the claim is one atomic delete. While Redis cannot say, ask again: the
        // timer fires late rather than twice (a node that reaped this one may hold it too).
        loop {
            let Some(plugin) = weak.upgrade() else {
                return;
            };
            let Some(shared) = plugin.gateway.shared_timers().cloned() else {
                break;
            };
            let name = plugin.name.clone();
            drop(plugin);
            match shared.claim(&name, id).await {
                Ok(true) => break,
                Ok(false) => {
                    if let Some(plugin) = weak.upgrade() {
                        plugin.timers.pending.lock().remove(id);
                    }
                    return;
                }
                Err(e) => {
                    tracing::debug!(plugin = %name, id, cause = %e, "timer claim retried");
                    tokio::time::sleep(CLAIM_RETRY).await;
                }
            }
        }
        if let Some(plugin) = weak.upgrade()
            && let Some(lane) = plugin.lanes.get(lane)
        {
            lane.mailbox.push_unbounded(Event::Timer { id });
        }
    })
    .abort_handle()
}
