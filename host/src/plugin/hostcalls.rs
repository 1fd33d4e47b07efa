//! The `host` interface of contract 0.2.0, implemented on the store data (0.1.0's delegates to
//! it, see `compat.rs`).
//!
//! Every call acts on `self.system`, the system of the event being handled, so a plugin can never
//! reach a client of a system it does not serve. Host calls are `async`: the guest runs on a
//! wasmtime fiber on a runtime thread, and a call that has to wait (a registry doing I/O, the
//! key-value turn of a pooled plugin) suspends the guest without holding the thread. With the
//! local registry they complete without waiting.
//!
//! Spam guard: one event may make at most `sends_per_event` send calls (the per-client outbound
//! queue bound by default, so a single event can never by itself overflow the queue of a client
//! that keeps up); further sends fail with `quota-exceeded`. CPU is bounded by the call deadline.
//! Logging is budgeted the same way.
//!
//! Calls borrow the gateway handle (`let gw = &self.plugin.gateway`) rather than clone it: a
//! clone is two atomic updates, per host call, of one reference count that every instance of
//! every plugin on every core shares.

use tracing::{debug, error, info, trace, warn};

use crate::domain::close::{CloseCode, CloseReason};
use crate::domain::names::{GroupName, NameError, Uid};
use crate::gateway::GatewayError;
use crate::registry::Member;

use super::bindings::v0_2::wasmgate::plugin::types;
use super::bindings::{
    Host, Level, WitError, WitMember, WitMessage, from_info, to_info, to_wit_error, to_ws, wit_len,
};
use super::entry::now_ms;
use super::kv;
use super::metrics::QuotaLabels;
use super::rules;
use super::state::{HostState, KvHeld};
use crate::cluster::kv::{IncrOutcome, Measured, SetOutcome};
use crate::cluster::timers::TimerRecord;

type R<T> = Result<T, WitError>;

/// A shared store that Redis could not reach, as the guest sees it.
fn unavailable(e: crate::registry::RegistryError) -> WitError {
    WitError::Unavailable(e.to_string())
}

/// A change the shared store refused, worded by the single node's rule from what Redis measured.
fn refused(key: &str, value_len: usize, m: Measured) -> WitError {
    match rules::kv_set(key, value_len, m.keys, m.bytes, m.old) {
        Err(refusal) => refusal.into(),
        Ok(_) => WitError::QuotaExceeded("key-value store quota".into()),
    }
}

/// A name that broke the name rule: `invalid-argument` with the API's 400 message.
fn invalid(err: NameError) -> WitError {
    to_wit_error(GatewayError::Name(err))
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl HostState {
    /// Take the plugin's key-value turn for the rest of this event (first KV call of the
    /// event only): with several instances, a read-modify-write inside one handler must not
    /// interleave with another instance's. Released by `end_event` (or with the store, when
    /// the event traps). One instance never waits: the turn is only taken when pooled.
    ///
    /// In a cluster the store is shared by every node, and so is the turn: taken after this
    /// node's (so one node's instances do not all wait on Redis), it answers `unavailable`
    /// when Redis does or when another node holds it for too long.
    async fn kv_turn(&mut self) -> R<()> {
        if let Some(held) = &mut self.kv_held {
            if let Some(turn) = &mut held.cluster {
                turn.keep().await.map_err(unavailable)?;
            }
            return Ok(());
        }
        let local = match self.plugin.pooled() {
            true => Some(self.plugin.kv_turn.clone().lock_owned().await),
            false => None,
        };
        let cluster = match self.plugin.gateway.shared_kv() {
            Some(kv) => Some(kv.turn(&self.plugin.name).await.map_err(unavailable)?),
            None => None,
        };
        if local.is_some() || cluster.is_some() {
            self.kv_held = Some(KvHeld {
                _local: local,
                cluster,
            });
        }
        Ok(())
    }

    /// `group` checked with the API's rule (`limits.max_name_bytes`).
    fn group(&self, group: String) -> R<GroupName> {
        GroupName::parse(group, &self.plugin.gateway.config().limits).map_err(invalid)
    }

    /// `uid` checked with the API's rule.
    fn uid(&self, uid: String) -> R<Uid> {
        Uid::parse(uid, &self.plugin.gateway.config().limits).map_err(invalid)
    }

    /// Member data checked with the API's rule (`bind_to_group`): `user-id` like a name (it
    /// may be empty), `extend` at most `limits.max_info_bytes`.
    fn member(&self, member: WitMember) -> R<Member> {
        let limits = &self.plugin.gateway.config().limits;
        rules::member(&member.user_id, &member.extend, limits)?;
        Ok(Member {
            user_id: member.user_id,
            extend: member.extend,
        })
    }

    /// Take one send from the event's budget.
    fn charge_send(&mut self, msg: &WitMessage) -> R<()> {
        if self.budget.sends == 0 {
            self.plugin
                .metrics
                .budget_exceeded
                .get_or_create(&QuotaLabels {
                    plugin: self.plugin.name.to_string(),
                    budget: "sends".into(),
                })
                .inc();
            return Err(rules::too_many_sends(self.plugin.limits.sends_per_event).into());
        }
        self.budget.sends -= 1;
        trace!(plugin = %self.plugin.name, bytes = wit_len(msg), "plugin send");
        Ok(())
    }
}

impl types::Host for HostState {}

impl Host for HostState {
    async fn send_to_client(&mut self, client: String, msg: WitMessage) -> R<()> {
        self.charge_send(&msg)?;
        let gw = &self.plugin.gateway;
        let msg = to_ws(msg);
        // A reply to the client whose message this is goes to its own queue.
        if let Some(own) = self.caller.queue_for(&client)
            && let Some(sent) = gw.send_to_own(&self.system, own, &msg)
        {
            return sent.map(|_queued| ()).map_err(to_wit_error);
        }
        gw.send_to_client(&self.system, &client, msg)
            .await
            .map(|_queued| ())
            .map_err(to_wit_error)
    }

    async fn send_to_clients(&mut self, clients: Vec<String>, msg: WitMessage) -> R<u32> {
        self.charge_send(&msg)?;
        let gw = &self.plugin.gateway;
        gw.send_to_clients(&self.system, &clients, to_ws(msg))
            .await
            .map(count)
            .map_err(to_wit_error)
    }

    async fn send_to_group(
        &mut self,
        group: String,
        msg: WitMessage,
        exclude: Vec<String>,
    ) -> R<u32> {
        let group = self.group(group)?;
        self.charge_send(&msg)?;
        let gw = &self.plugin.gateway;
        gw.send_to_group(&self.system, &group, to_ws(msg), &exclude)
            .await
            .map(count)
            .map_err(to_wit_error)
    }

    async fn send_to_system(&mut self, msg: WitMessage, exclude: Vec<String>) -> R<u32> {
        self.charge_send(&msg)?;
        let gw = &self.plugin.gateway;
        gw.send_to_system(&self.system, to_ws(msg), &exclude)
            .await
            .map(count)
            .map_err(to_wit_error)
    }

    async fn send_to_uid(&mut self, uid: String, msg: WitMessage) -> R<u32> {
        let uid = self.uid(uid)?;
        self.charge_send(&msg)?;
        let gw = &self.plugin.gateway;
        gw.send_to_uid(&self.system, &uid, to_ws(msg))
            .await
            .map(count)
            .map_err(to_wit_error)
    }

    async fn bind_uid(&mut self, client: String, uid: String) -> R<()> {
        let uid = self.uid(uid)?;
        let gw = &self.plugin.gateway;
        gw.bind_uid(&self.system, &client, &uid)
            .await
            .map_err(to_wit_error)
    }

    async fn unbind_uid(&mut self, client: String) -> R<()> {
        let gw = &self.plugin.gateway;
        gw.unbind_uid(&self.system, &client)
            .await
            .map_err(to_wit_error)
    }

    async fn is_uid_online(&mut self, uid: String) -> bool {
        let gw = &self.plugin.gateway;
        gw.registry()
            .clients_by_uid(&self.system, &uid)
            .await
            .is_ok_and(|c| !c.is_empty())
    }

    async fn get_client_ids_by_uid(&mut self, uid: String) -> Vec<String> {
        let gw = &self.plugin.gateway;
        gw.registry()
            .clients_by_uid(&self.system, &uid)
            .await
            .unwrap_or_default()
    }

    async fn get_uid_by_client_id(&mut self, client: String) -> R<Option<String>> {
        let gw = &self.plugin.gateway;
        gw.registry()
            .uid_of(&self.system, &client)
            .await
            .map_err(|e| to_wit_error(e.into()))
    }

    async fn get_all_uid(&mut self) -> Vec<String> {
        let gw = &self.plugin.gateway;
        gw.registry().uids(&self.system).await.unwrap_or_default()
    }

    async fn join_group(&mut self, client: String, group: String, member: WitMember) -> R<()> {
        let group = self.group(group)?;
        let member = self.member(member)?;
        let gw = &self.plugin.gateway;
        gw.join_group(&self.system, &client, &group, member)
            .await
            .map_err(to_wit_error)
    }

    async fn leave_group(&mut self, client: String, group: String) -> R<()> {
        let group = self.group(group)?;
        let gw = &self.plugin.gateway;
        gw.leave_group(&self.system, &client, &group)
            .await
            .map_err(to_wit_error)
    }

    async fn get_client_count_by_group(&mut self, group: String) -> u32 {
        count(self.get_client_ids_by_group(group).await.len())
    }

    async fn get_client_ids_by_group(&mut self, group: String) -> Vec<String> {
        let gw = &self.plugin.gateway;
        gw.registry()
            .group_clients(&self.system, &group)
            .await
            .unwrap_or_default()
    }

    async fn get_uids_by_group(&mut self, group: String) -> Vec<String> {
        let gw = &self.plugin.gateway;
        gw.registry()
            .group_uids(&self.system, &group)
            .await
            .unwrap_or_default()
    }

    async fn get_uid_count_by_group(&mut self, group: String) -> u32 {
        count(self.get_uids_by_group(group).await.len())
    }

    async fn get_all_groups(&mut self) -> Vec<String> {
        let gw = &self.plugin.gateway;
        gw.registry().groups(&self.system).await.unwrap_or_default()
    }

    async fn get_groups_by_client_id(&mut self, client: String) -> R<Vec<String>> {
        let gw = &self.plugin.gateway;
        let mut groups = gw
            .registry()
            .client_groups(&self.system, &client)
            .await
            .map_err(|e| to_wit_error(e.into()))?;
        groups.sort();
        Ok(groups)
    }

    async fn close_client(&mut self, client: String, code: u16, reason: String) -> R<()> {
        let checked = CloseCode::application(code)
            .and_then(|code| Ok((code, CloseReason::parse(&reason)?)))
            .map_err(|e| to_wit_error(e.into()))?;
        let gw = &self.plugin.gateway;
        gw.close_client(&self.system, &client, checked.0, &checked.1)
            .await
            .map_err(to_wit_error)
    }

    /// The WIT answers a bare bool here, so a registry that cannot answer reads as "not
    /// online" (logged); calls that can fail say `unavailable`.
    async fn is_online(&mut self, client: String) -> bool {
        let gw = &self.plugin.gateway;
        gw.registry()
            .client_exists(&self.system, &client)
            .await
            .unwrap_or_else(|err| {
                tracing::warn!(system = %self.system, cause = %err, "is-online: registry unavailable");
                false
            })
    }

    async fn get_all_client_count(&mut self) -> u32 {
        let gw = &self.plugin.gateway;
        gw.registry()
            .client_count(&self.system)
            .await
            .map(count)
            .unwrap_or(0)
    }

    async fn get_all_client_ids(&mut self) -> R<Vec<String>> {
        let gw = &self.plugin.gateway;
        gw.registry()
            .clients(&self.system)
            .await
            .map_err(|e| to_wit_error(e.into()))
    }

    async fn get_info(&mut self, client: String) -> R<Vec<(String, String)>> {
        let gw = &self.plugin.gateway;
        gw.registry()
            .info(&self.system, &client)
            .await
            .map(from_info)
            .map_err(|e| to_wit_error(e.into()))
    }

    async fn set_info(&mut self, client: String, info: Vec<(String, String)>) -> R<()> {
        let gw = &self.plugin.gateway;
        gw.set_info(&self.system, &client, to_info(info))
            .await
            .map_err(to_wit_error)
    }

    async fn update_info(&mut self, client: String, info: Vec<(String, String)>) -> R<()> {
        let gw = &self.plugin.gateway;
        gw.update_info(&self.system, &client, to_info(info))
            .await
            .map_err(to_wit_error)
    }

    async fn kv_get(&mut self, key: String) -> R<Option<Vec<u8>>> {
        self.kv_turn().await?;
        match self.plugin.gateway.shared_kv() {
            Some(kv) => {
                rules::kv_key(&key)?;
                kv.get(&self.plugin.name, &key).await.map_err(unavailable)
            }
            None => self.plugin.kv.get(&key),
        }
    }

    async fn kv_set(&mut self, key: String, value: Vec<u8>) -> R<()> {
        self.kv_turn().await?;
        let Some(kv) = self.plugin.gateway.shared_kv() else {
            return self.plugin.kv.set(&key, value);
        };
        // The rule's own checks first (key, value size): refused without a round trip.
        rules::kv_set(&key, value.len(), 0, 0, 0)?;
        let (max_keys, max_bytes) = (kv::MAX_KEYS, kv::MAX_TOTAL_BYTES);
        match kv
            .set(&self.plugin.name, &key, &value, max_keys, max_bytes)
            .await
            .map_err(unavailable)?
        {
            SetOutcome::Done => Ok(()),
            SetOutcome::Refused(m) => Err(refused(&key, value.len(), m)),
        }
    }

    async fn kv_delete(&mut self, key: String) -> R<bool> {
        self.kv_turn().await?;
        match self.plugin.gateway.shared_kv() {
            Some(kv) => {
                rules::kv_key(&key)?;
                kv.delete(&self.plugin.name, &key)
                    .await
                    .map_err(unavailable)
            }
            None => self.plugin.kv.delete(&key),
        }
    }

    async fn kv_incr(&mut self, key: String, delta: i64) -> R<i64> {
        self.kv_turn().await?;
        let Some(shared) = self.plugin.gateway.shared_kv() else {
            return self.plugin.kv.incr(&key, delta);
        };
        rules::kv_key(&key)?;
        let (max_keys, max_bytes) = (kv::MAX_KEYS, kv::MAX_TOTAL_BYTES);
        match shared
            .incr(&self.plugin.name, &key, delta, max_keys, max_bytes)
            .await
            .map_err(unavailable)?
        {
            IncrOutcome::Done(n) => Ok(n),
            // Redis adds only to canonical integers; the single node's rule also takes " 7"
            // or "+3", and words the refusal of the rest. The turn is held: write the sum.
            IncrOutcome::NotInteger(raw) => {
                let n = rules::kv_incr(&key, Some(&raw), delta)?;
                let text = n.to_string();
                match shared
                    .set(
                        &self.plugin.name,
                        &key,
                        text.as_bytes(),
                        max_keys,
                        max_bytes,
                    )
                    .await
                    .map_err(unavailable)?
                {
                    SetOutcome::Done => Ok(n),
                    SetOutcome::Refused(m) => Err(refused(&key, text.len(), m)),
                }
            }
            IncrOutcome::Refused(m) => Err(refused(&key, 20, m)),
        }
    }

    async fn kv_keys(&mut self, prefix: String) -> R<Vec<String>> {
        self.kv_turn().await?;
        match self.plugin.gateway.shared_kv() {
            Some(kv) => kv
                .keys(&self.plugin.name, &prefix)
                .await
                .map_err(unavailable),
            None => Ok(self.plugin.kv.keys(&prefix)),
        }
    }

    async fn set_timer(
        &mut self,
        delay_ms: u64,
        payload: String,
        client: Option<String>,
    ) -> R<u64> {
        let plugin = self.plugin.clone();
        let gw = plugin.gateway.clone();
        let bound = client.clone();
        if let Some(c) = &bound
            && !gw
                .registry()
                .client_exists(&self.system, c)
                .await
                .map_err(|e| to_wit_error(e.into()))?
        {
            return Err(WitError::UnknownClient(c.clone()));
        }
        // In a cluster the timer is recorded in Redis first, which gives its id (see
        // `crate::cluster::timers`); the rule is checked before, so a refused timer costs
        // no round trip.
        let shared_id = match gw.shared_timers() {
            Some(shared) => {
                rules::timer(delay_ms, payload.len(), plugin.timers.len())?;
                let record = TimerRecord {
                    system: self.system.to_string(),
                    payload: payload.clone(),
                    client: client.clone(),
                    due_ms: now_ms().saturating_add(delay_ms),
                    instance: gw.instance(),
                };
                Some(
                    shared
                        .create(&plugin.name, &record)
                        .await
                        .map_err(unavailable)?,
                )
            }
            None => None,
        };
        let id = match plugin.timers.set(
            &plugin,
            &plugin.rt,
            self.system.clone(),
            self.lane,
            delay_ms,
            payload,
            client,
            self.held_timers.is_some(),
            shared_id,
        ) {
            Ok(id) => id,
            Err(e) => {
                if let (Some(shared), Some(id)) = (gw.shared_timers(), shared_id) {
                    let _ = shared.take(&plugin.name, id).await;
                }
                return Err(e);
            }
        };
        if let Some(held) = &mut self.held_timers {
            held.push(id);
        }
        // The client may have left between the check and the insert, after its timers were
        // cancelled: look again now that the timer is in the table (a leave from now on
        // cancels it), so no bound timer outlives its client.
        if let Some(c) = bound {
            let gone = match gw.registry().client_exists(&self.system, &c).await {
                Ok(true) => None,
                Ok(false) => Some(WitError::UnknownClient(c)),
                Err(e) => Some(to_wit_error(e.into())),
            };
            if let Some(err) = gone {
                plugin.timers.cancel(id);
                return Err(err);
            }
        }
        Ok(id)
    }

    async fn cancel_timer(&mut self, id: u64) -> bool {
        let here = self.plugin.timers.cancel(id);
        match self.plugin.gateway.shared_timers() {
            // Wherever it sleeps: a timer set through another node is cancelled too. Redis
            // says whether it was pending (a copy here may outlive a cancel made elsewhere);
            // when it cannot say, this node's table does.
            Some(shared) => shared.take(&self.plugin.name, id).await.unwrap_or(here),
            None => here,
        }
    }

    async fn log(&mut self, level: Level, message: String) {
        if !self.log.take_line() {
            return;
        }
        let plugin = &*self.plugin.name;
        let system = &*self.system;
        match level {
            Level::Trace => trace!(target: "wasmgate::plugin::guest", plugin, system, "{message}"),
            Level::Debug => debug!(target: "wasmgate::plugin::guest", plugin, system, "{message}"),
            Level::Info => info!(target: "wasmgate::plugin::guest", plugin, system, "{message}"),
            Level::Warn => warn!(target: "wasmgate::plugin::guest", plugin, system, "{message}"),
            Level::Error => error!(target: "wasmgate::plugin::guest", plugin, system, "{message}"),
        }
    }

    async fn now_ms(&mut self) -> u64 {
        now_ms()
    }

    async fn system_id(&mut self) -> String {
        self.system.to_string()
    }
}
