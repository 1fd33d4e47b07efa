//! Instance leases, the reaper and the resync: no client of a dead node stays in the registry,
//! and no live client stays out of it.
//!
//! A node's clients are registered under its *instance* (node id and boot,
//! [`crate::ids::instance_of`]). Every [`LEASE_EVERY`] the node sets
//! `{prefix}node:<instance>:lease` with a TTL of [`LEASE_TTL`] and lists the instance in
//! `{prefix}nodes`. A separate task looks at the other instances: one listed without a lease is
//! dead (killed, or stopped past its TTL). The first node whose claim succeeds removes the dead
//! instance's clients from every list, count and group, sends the groups' other members the
//! offline notices (1002) and gives its own plugin `on-close` for each, so a dead node's
//! clients are gone within `LEASE_TTL + LEASE_EVERY` (8 s) of its last refresh.
//!
//! Two scripts make the races safe. The claim ([`CLAIM`]) checks that the lease is absent, takes
//! the reap lock and sets the instance's *reaped* mark in one step; the refresh ([`REFRESH`])
//! refuses to renew a lease under a reaped mark. So a node that wakes from a long stop either
//! renewed in time (nobody reaps it) or finds the mark: it then starts a new instance (new ids,
//! a new lease: whatever the reaper is still removing is not theirs) and closes every client it
//! held with 1012 (service restart), without a second `on-close` or notice: the one that
//! removes a client from the registry announces it, and removal is atomic.
//!
//! A lease gone *without* a mark means Redis lost its data (restarted without persistence):
//! the node registers its systems and live clients again from its [`Mirror`], and retries the
//! removals that failed while Redis was away. Reaping, the resync and the retries run in tasks
//! of their own, so none of them delays the node's own lease.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::Script;
use redis::aio::ConnectionManager;
use tokio::sync::Notify;
use tracing::{info, warn};

use super::LocalDelivery;
use super::broker::{REDIS_TIMEOUT, Stats};
use super::mirror::Mirror;
use super::redis_registry::RedisRegistry;
use super::timers::RedisTimers;
use crate::registry::{Registry, RegistryError};
use tokio_util::sync::CancellationToken;

/// How often a node refreshes its lease and looks for dead peers.
pub const LEASE_EVERY: Duration = Duration::from_secs(2);
/// How long a lease lives without a refresh.
pub const LEASE_TTL: Duration = Duration::from_secs(6);
/// How long a reap lock is held: a reaper that dies mid-reap is taken over after this.
const REAP_LOCK: Duration = Duration::from_secs(60);
/// How long the reaped mark stays: a node stopped for longer than this and woken up would
/// take the missing lease for lost data and register clients that were announced gone.
const REAPED_MARK: Duration = Duration::from_secs(24 * 3600);
/// Clients registered again at once after Redis lost its data (pipelined on one connection).
const RESTORE_CONCURRENCY: usize = 64;

/// ARGV: 1 prefix, 2 instance, 3 TTL ms. Answers {state, listed instances}: state 0 the lease
/// was held, 1 it was gone (a new instance, or Redis lost it), 2 the instance was reaped (no
/// lease is set).
const REFRESH: &str = r"
local p, me = ARGV[1], ARGV[2]
if redis.call('EXISTS', p..'node:'..me..':reaped') == 1 then
  return {2, redis.call('SCARD', p..'nodes')}
end
local old = redis.call('SET', p..'node:'..me..':lease', '1', 'PX', ARGV[3], 'GET')
redis.call('SADD', p..'nodes', me)
local state = 0
if not old then state = 1 end
return {state, redis.call('SCARD', p..'nodes')}
";

/// ARGV: 1 prefix, 2 dead instance, 3 this node's instance, 4 lock ms, 5 mark ms. Answers 1
/// when this node now reaps it.
const CLAIM: &str = r"
local p, peer = ARGV[1], ARGV[2]
if redis.call('EXISTS', p..'node:'..peer..':lease') == 1 then return 0 end
if not redis.call('SET', p..'node:'..peer..':reap', ARGV[3], 'NX', 'PX', ARGV[4]) then return 0 end
redis.call('SET', p..'node:'..peer..':reaped', '1', 'PX', ARGV[5])
return 1
";

/// What the lease task asks of the repair task.
#[derive(Default)]
struct Repair {
    /// The node's systems, clients and timers must be written back (Redis lost them).
    resync_due: AtomicBool,
    wake: Notify,
}

/// The lease and reaper tasks of one node.
pub(super) struct Lease {
    pub conn: ConnectionManager,
    pub prefix: String,
    pub stats: Arc<Stats>,
    pub registry: Arc<RedisRegistry>,
    pub local: Arc<dyn LocalDelivery>,
    pub mirror: Arc<Mirror>,
    pub timers: Arc<RedisTimers>,
    /// Woken when Redis answers again after an outage: check the lease now, not at the next tick.
    pub wake: Arc<Notify>,
    /// Cancelled when the node stops gracefully: the lease is deleted, the tasks end.
    pub shutdown: CancellationToken,
}

async fn bounded<T>(fut: impl Future<Output = redis::RedisResult<T>>) -> Option<T> {
    match tokio::time::timeout(REDIS_TIMEOUT, fut).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            warn!(cause = %e, "lease: redis command failed");
            None
        }
        Err(_) => {
            warn!("lease: redis command timed out");
            None
        }
    }
}

impl Lease {
    /// Start the lease task and the reaper task.
    pub fn spawn(self) {
        let this = Arc::new(self);
        let stop = this.shutdown.clone();
        tokio::spawn(async move {
            let lease = this.clone();
            let repair = Arc::new(Repair::default());
            tokio::select! {
                () = this.clone().refresh_loop(repair.clone()) => {}
                () = this.clone().repair_loop(repair) => {}
                () = this.clone().reap_loop() => {}
                () = stop.cancelled() => lease.give_up().await,
            }
        });
    }

    /// The node stops: delete its lease, so that another node reaps it now rather than in
    /// 6 s (its clients are closing; its timers go on there).
    async fn give_up(&self) {
        let instance = self.local.instance();
        let mut del = redis::cmd("DEL");
        del.arg(format!("{}node:{instance}:lease", self.prefix));
        let mut conn = self.conn.clone();
        let _: Option<()> = bounded(del.query_async(&mut conn)).await;
        info!(%instance, "lease given up: the node is stopping");
    }

    /// Refresh the lease, forever; start over after being reaped, and have the repairs done
    /// ([`Lease::repair_loop`]) when Redis answers.
    async fn refresh_loop(self: Arc<Self>, repair: Arc<Repair>) {
        let refresh = Script::new(REFRESH);
        let mut first = true;
        let mut tick = tokio::time::interval(LEASE_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.wake.notified() => {}
            }
            let instance = self.local.instance();
            let mut inv = refresh.prepare_invoke();
            inv.arg(&self.prefix)
                .arg(&instance)
                .arg(LEASE_TTL.as_millis() as u64);
            let mut conn = self.conn.clone();
            let Some((state, peers)) = bounded::<(u8, i64)>(inv.invoke_async(&mut conn)).await
            else {
                continue;
            };
            // Redis answered: sends may publish again now, not only after the next ping (the
            // notices of the removals retried below would otherwise be refused).
            self.stats.set_up(true);
            self.stats.peers.set(peers);
            match state {
                2 => {
                    warn!(
                        %instance,
                        "this node was reaped while it was away: closing its clients (1012) so they reconnect, under a new instance"
                    );
                    self.local
                        .reaped_while_away(1012, "node lost its cluster lease");
                    first = true;
                    repair.resync_due.store(false, Ordering::Relaxed);
                    tick.reset_immediately();
                    continue;
                }
                0 => self.timers.sure(),
                1 if !first => {
                    warn!(
                        %instance,
                        "lease gone without a reap (it expired during an outage, or redis lost its data): registering this node's clients again"
                    );
                    repair.resync_due.store(true, Ordering::Relaxed);
                }
                _ => self.timers.sure(),
            }
            first = false;
            if repair.resync_due.load(Ordering::Relaxed) || self.registry.pending_removals() > 0 {
                repair.wake.notify_one();
            }
        }
    }

    /// The resync and the retried removals, in a task of their own: with a slow Redis they
    /// may take longer than a lease, and the lease must not wait for them.
    async fn repair_loop(self: Arc<Self>, repair: Arc<Repair>) {
        loop {
            repair.wake.notified().await;
            if repair.resync_due.swap(false, Ordering::Relaxed) {
                if !self.resync().await {
                    repair.resync_due.store(true, Ordering::Relaxed);
                    continue;
                }
                // The other nodes write theirs back in the same second: give them a lease
                // period before the delayed `on-close`s below and the timers that fell due
                // meanwhile run, so that what a plugin does in them (a send to a group, to
                // a client of another node) finds the registry whole again.
                tokio::time::sleep(LEASE_EVERY).await;
                self.timers.sure();
            }
            for (system, client, left) in self.registry.retry_removals().await {
                self.local.removed_late(&system, &client, left);
            }
        }
    }

    /// Register this node's systems and live clients again; whether it all went in.
    async fn resync(&self) -> bool {
        let started = Instant::now();
        let mut systems: BTreeMap<String, Option<usize>> =
            self.local.systems_to_restore().into_iter().collect();
        for s in self.mirror.systems() {
            systems.entry(s).or_insert(None);
        }
        for (system, max) in &systems {
            if let Err(e) = self.registry.register_system(system, *max).await {
                warn!(system, cause = %e, "resync: system not registered again");
                if matches!(e, RegistryError::Unavailable(_)) {
                    return false;
                }
            }
        }
        let clients = self.mirror.all();
        // Only an unreachable Redis makes the resync due again; a refusal (a system
        // unregistered elsewhere meanwhile) would fail the same way every time.
        let failed = futures_util::stream::iter(clients.clone())
            .map(|(system, client, snapshot)| {
                let registry = self.registry.clone();
                async move {
                    matches!(
                        registry.restore(&system, &client, &snapshot).await,
                        Err(RegistryError::Unavailable(_))
                    )
                }
            })
            .buffer_unordered(RESTORE_CONCURRENCY)
            .fold(0usize, |n, failed| async move { n + usize::from(failed) })
            .await;
        // The plugin timers pending here, with their ids (the counter is kept past them).
        let timers = self.local.pending_timers();
        for (plugin, id, record) in &timers {
            if let Err(e) = self.timers.restore(plugin, *id, record).await {
                warn!(plugin, id, cause = %e, "resync: timer not written back");
                if matches!(e, RegistryError::Unavailable(_)) {
                    return false;
                }
            }
        }
        // A client that left while it was being restored must not stay listed; its groups
        // hear of it (its `on-close` was given when it left).
        for (system, client, _) in clients.iter().filter(|(_, c, _)| !self.mirror.holds(c)) {
            if let Ok(left) = self.registry.remove_once(system, client).await {
                self.local.removed_late(system, client, Some(left));
            }
        }
        self.mirror.kick();
        info!(
            systems = systems.len(),
            clients = clients.len(),
            timers = timers.len(),
            failed,
            ms = started.elapsed().as_millis() as u64,
            "resync: this node's clients are registered again"
        );
        failed == 0
    }

    /// Look for dead instances and reap those this node claims, forever.
    async fn reap_loop(self: Arc<Self>) {
        let claim = Script::new(CLAIM);
        let mut tick = tokio::time::interval(LEASE_EVERY);
        // After an outage (of Redis, or of this node's link to it), every lease may have
        // expired while its node was alive and unable to refresh it, as this one was: reap
        // nothing until the live nodes have had a whole lease period to refresh.
        // A node that starts may start right after an outage too.
        let mut hold_until = Instant::now() + LEASE_TTL;
        loop {
            tick.tick().await;
            if !self.stats.up() {
                hold_until = Instant::now() + LEASE_TTL;
                continue;
            }
            let me = self.local.instance();
            let mut conn = self.conn.clone();
            let mut members = redis::cmd("SMEMBERS");
            members.arg(format!("{}nodes", self.prefix));
            let Some(listed) = bounded::<Vec<String>>(members.query_async(&mut conn)).await else {
                hold_until = Instant::now() + LEASE_TTL;
                continue;
            };
            if Instant::now() < hold_until {
                continue;
            }
            for peer in listed.into_iter().filter(|p| *p != me) {
                let mut inv = claim.prepare_invoke();
                inv.arg(&self.prefix)
                    .arg(&peer)
                    .arg(&me)
                    .arg(REAP_LOCK.as_millis() as u64)
                    .arg(REAPED_MARK.as_millis() as u64);
                if bounded::<i64>(inv.invoke_async(&mut conn)).await == Some(1) {
                    self.reap(&peer).await;
                }
            }
        }
    }

    /// Remove every client of dead instance `peer`, then the instance itself.
    async fn reap(&self, peer: &str) {
        let started = Instant::now();
        let Ok(systems) = self.registry.systems().await else {
            return;
        };
        let mut reaped = 0u64;
        for system in systems {
            let Ok(clients) = self.registry.instance_clients(&system, peer).await else {
                return; // Redis failed: the lock expires and someone retries.
            };
            for client in clients {
                match self.registry.remove_once(&system, &client).await {
                    Ok(left) => {
                        // Announced before anything else is awaited: a reap cut short (the
                        // node stopping) must not leave a removed client unannounced.
                        self.local.reaped(&system, &client, left);
                        reaped += 1;
                        self.stats.reaped.inc();
                        if let Err(e) = self.timers.take_client(&client).await {
                            warn!(cause = %e, client, "bound timers of a reaped client kept");
                        }
                    }
                    Err(RegistryError::UnknownClient(_) | RegistryError::UnknownSystem(_)) => {}
                    Err(e) => {
                        warn!(cause = %e, peer, "reaping stopped; retried when the lock expires");
                        return;
                    }
                }
            }
        }
        // Its timers: those bound to its clients went with them (above); the rest run here.
        let me = self.local.instance();
        let adopted = match self.timers.take_over(peer, &me).await {
            Ok(adopted) => adopted,
            Err(e) => {
                warn!(cause = %e, peer, "its timers were not taken over; retried when the lock expires");
                return;
            }
        };
        let timers = adopted.len();
        for t in adopted {
            let (plugin, id) = (t.plugin.clone(), t.id);
            if !self.local.adopt_timer(t) {
                warn!(
                    plugin,
                    id, "a timer of a plugin that does not run here was dropped"
                );
                let _ = self.timers.take(&plugin, id).await;
            }
        }
        let mut srem = redis::cmd("SREM");
        srem.arg(format!("{}nodes", self.prefix)).arg(peer);
        let mut conn = self.conn.clone();
        let _: Option<()> = bounded(srem.query_async(&mut conn)).await;
        info!(
            peer,
            clients = reaped,
            timers,
            ms = started.elapsed().as_millis() as u64,
            "reaped a dead node instance"
        );
    }
}
