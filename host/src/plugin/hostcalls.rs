//! The `host` interface a plugin imports, implemented on the store data.
//!
//! Every call acts on `self.system`, the system of the event being handled, so a plugin can never
//! reach a client of a system it does not serve. Gateway operations are async (a cluster registry
//! does I/O); the actor thread is not a runtime thread, so it blocks on them with the runtime's
//! handle. With the local registry they complete without waiting.
//!
//! Spam guard: one event may make at most `sends_per_event` send calls (the per-client outbound
//! queue bound by default, so a single event can never by itself overflow the queue of a client
//! that keeps up); further sends fail with `quota-exceeded`. CPU is bounded by the call deadline.
//! Logging is budgeted the same way.

use std::future::Future;

use tracing::{debug, error, info, trace, warn};

use crate::domain::close::{CloseCode, CloseReason};
use crate::domain::names::{GroupName, NameError, Uid};
use crate::gateway::GatewayError;
use crate::registry::Member;

use super::bindings::wasmgate::plugin::types;
use super::bindings::{
    Host, Level, WitError, WitMessage, from_info, to_info, to_wit_error, to_ws, wit_len,
};
use super::entry::now_ms;
use super::metrics::QuotaLabels;
use super::state::HostState;

type R<T> = Result<T, WitError>;

/// A name that broke the name rule: `invalid-argument` with the API's 400 message.
fn invalid(err: NameError) -> WitError {
    to_wit_error(GatewayError::Name(err))
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl HostState {
    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.plugin.rt.block_on(f)
    }

    /// `group` checked with the API's rule (`limits.max_name_bytes`).
    fn group(&self, group: String) -> R<GroupName> {
        GroupName::parse(group, &self.plugin.gateway.config().limits).map_err(invalid)
    }

    /// `uid` checked with the API's rule.
    fn uid(&self, uid: String) -> R<Uid> {
        Uid::parse(uid, &self.plugin.gateway.config().limits).map_err(invalid)
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
            return Err(WitError::QuotaExceeded(format!(
                "at most {} sends per event",
                self.plugin.limits.sends_per_event
            )));
        }
        self.budget.sends -= 1;
        trace!(plugin = %self.plugin.name, bytes = wit_len(msg), "plugin send");
        Ok(())
    }
}

impl types::Host for HostState {}

impl Host for HostState {
    fn send_to_client(&mut self, client: String, msg: WitMessage) -> R<()> {
        self.charge_send(&msg)?;
        let gw = self.plugin.gateway.clone();
        self.block_on(gw.send_to_client(&self.system, &client, to_ws(msg)))
            .map(|_queued| ())
            .map_err(to_wit_error)
    }

    fn send_to_clients(&mut self, clients: Vec<String>, msg: WitMessage) -> R<u32> {
        self.charge_send(&msg)?;
        let gw = self.plugin.gateway.clone();
        self.block_on(gw.send_to_clients(&self.system, &clients, to_ws(msg)))
            .map(count)
            .map_err(to_wit_error)
    }

    fn send_to_group(&mut self, group: String, msg: WitMessage, exclude: Vec<String>) -> R<u32> {
        let group = self.group(group)?;
        self.charge_send(&msg)?;
        let gw = self.plugin.gateway.clone();
        self.block_on(gw.send_to_group(&self.system, &group, to_ws(msg), &exclude))
            .map(count)
            .map_err(to_wit_error)
    }

    fn send_to_system(&mut self, msg: WitMessage, exclude: Vec<String>) -> R<u32> {
        self.charge_send(&msg)?;
        let gw = self.plugin.gateway.clone();
        self.block_on(gw.send_to_system(&self.system, to_ws(msg), &exclude))
            .map(count)
            .map_err(to_wit_error)
    }

    fn send_to_uid(&mut self, uid: String, msg: WitMessage) -> R<u32> {
        let uid = self.uid(uid)?;
        self.charge_send(&msg)?;
        let gw = self.plugin.gateway.clone();
        self.block_on(gw.send_to_uid(&self.system, &uid, to_ws(msg)))
            .map(count)
            .map_err(to_wit_error)
    }

    fn bind_uid(&mut self, client: String, uid: String) -> R<()> {
        let uid = self.uid(uid)?;
        let gw = self.plugin.gateway.clone();
        self.block_on(gw.bind_uid(&self.system, &client, &uid))
            .map_err(to_wit_error)
    }

    fn unbind_uid(&mut self, client: String) -> R<()> {
        let gw = self.plugin.gateway.clone();
        self.block_on(gw.unbind_uid(&self.system, &client))
            .map_err(to_wit_error)
    }

    fn is_uid_online(&mut self, uid: String) -> bool {
        let gw = self.plugin.gateway.clone();
        self.block_on(gw.registry().clients_by_uid(&self.system, &uid))
            .is_ok_and(|c| !c.is_empty())
    }

    fn get_client_ids_by_uid(&mut self, uid: String) -> Vec<String> {
        let gw = self.plugin.gateway.clone();
        self.block_on(gw.registry().clients_by_uid(&self.system, &uid))
            .unwrap_or_default()
    }

    fn get_uid_by_client_id(&mut self, client: String) -> R<Option<String>> {
        let gw = self.plugin.gateway.clone();
        self.block_on(gw.registry().uid_of(&self.system, &client))
            .map_err(|e| to_wit_error(e.into()))
    }

    fn get_all_uid(&mut self) -> Vec<String> {
        let gw = self.plugin.gateway.clone();
        self.block_on(gw.registry().uids(&self.system))
            .unwrap_or_default()
    }

    fn join_group(&mut self, client: String, group: String) -> R<()> {
        let group = self.group(group)?;
        let gw = self.plugin.gateway.clone();
        self.block_on(gw.join_group(&self.system, &client, &group, Member::default()))
            .map_err(to_wit_error)
    }

    fn leave_group(&mut self, client: String, group: String) -> R<()> {
        let group = self.group(group)?;
        let gw = self.plugin.gateway.clone();
        self.block_on(gw.leave_group(&self.system, &client, &group))
            .map_err(to_wit_error)
    }

    fn get_client_count_by_group(&mut self, group: String) -> u32 {
        count(self.get_client_ids_by_group(group).len())
    }

    fn get_client_ids_by_group(&mut self, group: String) -> Vec<String> {
        let gw = self.plugin.gateway.clone();
        self.block_on(gw.registry().group_clients(&self.system, &group))
            .unwrap_or_default()
    }

    fn get_uids_by_group(&mut self, group: String) -> Vec<String> {
        let gw = self.plugin.gateway.clone();
        self.block_on(gw.registry().group_uids(&self.system, &group))
            .unwrap_or_default()
    }

    fn get_uid_count_by_group(&mut self, group: String) -> u32 {
        count(self.get_uids_by_group(group).len())
    }

    fn get_all_groups(&mut self) -> Vec<String> {
        let gw = self.plugin.gateway.clone();
        self.block_on(gw.registry().groups(&self.system))
            .unwrap_or_default()
    }

    fn close_client(&mut self, client: String, code: u16, reason: String) -> R<()> {
        let checked = CloseCode::application(code)
            .and_then(|code| Ok((code, CloseReason::parse(&reason)?)))
            .map_err(|e| to_wit_error(e.into()))?;
        let gw = self.plugin.gateway.clone();
        self.block_on(gw.close_client(&self.system, &client, checked.0, &checked.1))
            .map_err(to_wit_error)
    }

    fn is_online(&mut self, client: String) -> bool {
        let gw = self.plugin.gateway.clone();
        self.block_on(gw.registry().client_exists(&self.system, &client))
    }

    fn get_all_client_count(&mut self) -> u32 {
        let gw = self.plugin.gateway.clone();
        self.block_on(gw.registry().client_count(&self.system))
            .map(count)
            .unwrap_or(0)
    }

    fn get_info(&mut self, client: String) -> R<Vec<(String, String)>> {
        let gw = self.plugin.gateway.clone();
        self.block_on(gw.registry().info(&self.system, &client))
            .map(from_info)
            .map_err(|e| to_wit_error(e.into()))
    }

    fn set_info(&mut self, client: String, info: Vec<(String, String)>) -> R<()> {
        let gw = self.plugin.gateway.clone();
        self.block_on(gw.set_info(&self.system, &client, to_info(info)))
            .map_err(to_wit_error)
    }

    fn update_info(&mut self, client: String, info: Vec<(String, String)>) -> R<()> {
        let gw = self.plugin.gateway.clone();
        self.block_on(gw.update_info(&self.system, &client, to_info(info)))
            .map_err(to_wit_error)
    }

    fn kv_get(&mut self, key: String) -> R<Option<Vec<u8>>> {
        self.plugin.kv.get(&key)
    }

    fn kv_set(&mut self, key: String, value: Vec<u8>) -> R<()> {
        self.plugin.kv.set(&key, value)
    }

    fn kv_delete(&mut self, key: String) -> R<bool> {
        self.plugin.kv.delete(&key)
    }

    fn kv_incr(&mut self, key: String, delta: i64) -> R<i64> {
        self.plugin.kv.incr(&key, delta)
    }

    fn kv_keys(&mut self, prefix: String) -> R<Vec<String>> {
        Ok(self.plugin.kv.keys(&prefix))
    }

    fn set_timer(&mut self, delay_ms: u64, payload: String) -> R<u64> {
        let plugin = self.plugin.clone();
        plugin
            .timers
            .set(&plugin, &plugin.rt, self.system.clone(), delay_ms, payload)
    }

    fn cancel_timer(&mut self, id: u64) -> bool {
        self.plugin.timers.cancel(id)
    }

    fn log(&mut self, level: Level, message: String) {
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

    fn now_ms(&mut self) -> u64 {
        now_ms()
    }

    fn system_id(&mut self) -> String {
        self.system.to_string()
    }
}
