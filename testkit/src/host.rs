//! The `host` interface of contract 0.2.0 against the simulated state, with the gateway's
//! answers: unknown clients are `unknown-client`, and every limit (names, member data, close
//! codes and reasons, info maps, groups per client and per system, the key-value quotas, timer
//! caps, the send and log budgets of an event) is checked by the gateway's own rules
//! (`wasmgate::plugin::rules`) against the configured limits, so a refusal reads exactly as the
//! gateway's.

use std::collections::BTreeMap;

use wasmgate::plugin::rules::{self, Refusal};

use crate::bindings::wasmgate::plugin::host::Host;
use crate::bindings::wasmgate::plugin::types::{self, Error, Level, Member, Message};
use crate::state::{Followup, Frame, LogLine, Pending, SimState};

type R<T> = Result<T, Error>;

/// A refusal of the gateway's rules as the kit's WIT error.
fn refused(r: Refusal) -> Error {
    match r {
        Refusal::InvalidArgument(m) => Error::InvalidArgument(m),
        Refusal::QuotaExceeded(m) => Error::QuotaExceeded(m),
    }
}

fn frame(msg: Message) -> Frame {
    match msg {
        Message::Text(t) => Frame::Text(t),
        Message::Binary(b) => Frame::Binary(b),
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl SimState {
    fn group(&self, group: &str) -> R<()> {
        rules::group(group, &self.world.config.limits)
            .map(drop)
            .map_err(refused)
    }

    fn uid(&self, uid: &str) -> R<()> {
        rules::uid(uid, &self.world.config.limits)
            .map(drop)
            .map_err(refused)
    }

    /// Take one send from the event's budget.
    fn charge_send(&mut self) -> R<()> {
        match self.world.sends_left.checked_sub(1) {
            Some(left) => {
                self.world.sends_left = left;
                Ok(())
            }
            None => Err(refused(rules::too_many_sends(rules::sends_per_event(
                &self.world.config,
            )))),
        }
    }

    /// `info` as the client's map, if the gateway's info limits allow it.
    fn set_info_checked(&mut self, client: &str, info: BTreeMap<String, String>) -> R<()> {
        rules::info(&info, &self.world.config.limits).map_err(refused)?;
        match self.world.client(client) {
            Some(c) => {
                c.info = info;
                Ok(())
            }
            None => Err(Error::UnknownClient(client.to_owned())),
        }
    }

    /// Store `value` at `key` within the gateway's key-value quotas.
    fn kv_put(&mut self, key: String, value: Vec<u8>) -> R<()> {
        let kv = &self.world.kv;
        let bytes: usize = kv.iter().map(|(k, v)| k.len() + v.len()).sum();
        let old = kv.get(&key).map_or(0, |v| key.len() + v.len());
        rules::kv_set(&key, value.len(), kv.len(), bytes, old).map_err(refused)?;
        self.world.kv.insert(key, value);
        Ok(())
    }

    /// Deliver `msg` to every connected client of `to`; how many got it.
    fn deliver_all(&mut self, to: &[String], msg: Message) -> u32 {
        let f = frame(msg);
        count(
            to.iter()
                .filter(|c| self.world.deliver(c, f.clone()))
                .count(),
        )
    }

    fn known(&mut self, client: &str) -> R<()> {
        match self.world.client(client) {
            Some(_) => Ok(()),
            None => Err(Error::UnknownClient(client.to_owned())),
        }
    }
}

impl types::Host for SimState {}

impl Host for SimState {
    fn send_to_client(&mut self, client: String, msg: Message) -> R<()> {
        self.charge_send()?;
        if self.world.deliver(&client, frame(msg)) {
            Ok(())
        } else {
            Err(Error::UnknownClient(client))
        }
    }

    fn send_to_clients(&mut self, clients: Vec<String>, msg: Message) -> R<u32> {
        self.charge_send()?;
        Ok(self.deliver_all(&clients, msg))
    }

    fn send_to_group(&mut self, group: String, msg: Message, exclude: Vec<String>) -> R<u32> {
        self.group(&group)?;
        self.charge_send()?;
        let to: Vec<String> = self
            .world
            .members(&group)
            .into_iter()
            .filter(|c| !exclude.contains(c))
            .collect();
        Ok(self.deliver_all(&to, msg))
    }

    fn send_to_system(&mut self, msg: Message, exclude: Vec<String>) -> R<u32> {
        self.charge_send()?;
        let to: Vec<String> = self
            .world
            .connected()
            .map(|(id, _)| id.clone())
            .filter(|c| !exclude.contains(c))
            .collect();
        Ok(self.deliver_all(&to, msg))
    }

    fn send_to_uid(&mut self, uid: String, msg: Message) -> R<u32> {
        self.uid(&uid)?;
        self.charge_send()?;
        let to = self.world.by_uid(&uid);
        Ok(self.deliver_all(&to, msg))
    }

    fn bind_uid(&mut self, client: String, uid: String) -> R<()> {
        self.uid(&uid)?;
        self.known(&client)?;
        if let Some(c) = self.world.client(&client) {
            c.uid = Some(uid);
        }
        Ok(())
    }

    fn unbind_uid(&mut self, client: String) -> R<()> {
        self.known(&client)?;
        if let Some(c) = self.world.client(&client) {
            c.uid = None;
        }
        Ok(())
    }

    fn is_uid_online(&mut self, uid: String) -> bool {
        !self.world.by_uid(&uid).is_empty()
    }

    fn get_client_ids_by_uid(&mut self, uid: String) -> Vec<String> {
        self.world.by_uid(&uid)
    }

    fn get_uid_by_client_id(&mut self, client: String) -> R<Option<String>> {
        match self.world.client(&client) {
            Some(c) => Ok(c.uid.clone()),
            None => Err(Error::UnknownClient(client)),
        }
    }

    fn get_all_uid(&mut self) -> Vec<String> {
        let uids: std::collections::BTreeSet<String> = self
            .world
            .connected()
            .filter_map(|(_, c)| c.uid.clone())
            .collect();
        uids.into_iter().collect()
    }

    fn join_group(&mut self, client: String, group: String, member: Member) -> R<()> {
        self.group(&group)?;
        rules::member(&member.user_id, &member.extend, &self.world.config.limits)
            .map_err(refused)?;
        self.known(&client)?;
        let (already, mine) = self.world.clients.get(&client).map_or((false, 0), |c| {
            (c.groups.contains_key(&group), c.groups.len())
        });
        if !already {
            let exists = !self.world.members(&group).is_empty();
            let system_groups = self.world.groups().len();
            let (system, limits) = (&self.world.system, &self.world.config.limits);
            rules::join(&client, system, mine, system_groups, exists, limits).map_err(refused)?;
        }
        let others: Vec<String> = self
            .world
            .members(&group)
            .into_iter()
            .filter(|c| *c != client)
            .collect();
        let new = self
            .world
            .client(&client)
            .map(|c| c.groups.insert(group, member.clone()).is_none())
            .unwrap_or(false);
        if new {
            self.world.notify(&others, 1001, &client, &member);
        }
        Ok(())
    }

    fn leave_group(&mut self, client: String, group: String) -> R<()> {
        self.group(&group)?;
        self.known(&client)?;
        let member = self
            .world
            .client(&client)
            .and_then(|c| c.groups.remove(&group))
            .ok_or_else(|| Error::InvalidArgument(format!("{client} is not in group {group}")))?;
        let others = self.world.members(&group);
        self.world.notify(&others, 1002, &client, &member);
        Ok(())
    }

    fn get_client_count_by_group(&mut self, group: String) -> u32 {
        count(self.world.members(&group).len())
    }

    fn get_client_ids_by_group(&mut self, group: String) -> Vec<String> {
        self.world.members(&group)
    }

    fn get_uids_by_group(&mut self, group: String) -> Vec<String> {
        let members = self.world.members(&group);
        let uids: std::collections::BTreeSet<String> = members
            .iter()
            .filter_map(|c| self.world.clients.get(c).and_then(|s| s.uid.clone()))
            .collect();
        uids.into_iter().collect()
    }

    fn get_uid_count_by_group(&mut self, group: String) -> u32 {
        count(self.get_uids_by_group(group).len())
    }

    fn get_all_groups(&mut self) -> Vec<String> {
        self.world.groups().into_iter().collect()
    }

    fn get_groups_by_client_id(&mut self, client: String) -> R<Vec<String>> {
        match self.world.client(&client) {
            Some(c) => Ok(c.groups.keys().cloned().collect()),
            None => Err(Error::UnknownClient(client)),
        }
    }

    fn close_client(&mut self, client: String, code: u16, reason: String) -> R<()> {
        rules::close(code, &reason).map_err(refused)?;
        self.known(&client)?;
        self.world
            .followups
            .push(Followup::Close(client, code, reason));
        Ok(())
    }

    fn is_online(&mut self, client: String) -> bool {
        self.world.client(&client).is_some()
    }

    fn get_all_client_count(&mut self) -> u32 {
        count(self.world.connected().count())
    }

    fn get_all_client_ids(&mut self) -> R<Vec<String>> {
        Ok(self.world.connected().map(|(id, _)| id.clone()).collect())
    }

    fn get_info(&mut self, client: String) -> R<Vec<(String, String)>> {
        match self.world.client(&client) {
            Some(c) => Ok(c.info.clone().into_iter().collect()),
            None => Err(Error::UnknownClient(client)),
        }
    }

    fn set_info(&mut self, client: String, info: Vec<(String, String)>) -> R<()> {
        self.set_info_checked(&client, info.into_iter().collect())
    }

    fn update_info(&mut self, client: String, info: Vec<(String, String)>) -> R<()> {
        // As the gateway's registry: the incoming map is checked first, then the merge.
        let info: BTreeMap<String, String> = info.into_iter().collect();
        rules::info(&info, &self.world.config.limits).map_err(refused)?;
        let mut merged = match self.world.client(&client) {
            Some(c) => c.info.clone(),
            None => return Err(Error::UnknownClient(client)),
        };
        merged.extend(info);
        self.set_info_checked(&client, merged)
    }

    fn kv_get(&mut self, key: String) -> R<Option<Vec<u8>>> {
        rules::kv_key(&key).map_err(refused)?;
        Ok(self.world.kv.get(&key).cloned())
    }

    fn kv_set(&mut self, key: String, value: Vec<u8>) -> R<()> {
        self.kv_put(key, value)
    }

    fn kv_delete(&mut self, key: String) -> R<bool> {
        rules::kv_key(&key).map_err(refused)?;
        Ok(self.world.kv.remove(&key).is_some())
    }

    fn kv_incr(&mut self, key: String, delta: i64) -> R<i64> {
        let raw = self.world.kv.get(&key).map(Vec::as_slice);
        let next = rules::kv_incr(&key, raw, delta).map_err(refused)?;
        self.kv_put(key, next.to_string().into_bytes())?;
        Ok(next)
    }

    fn kv_keys(&mut self, prefix: String) -> R<Vec<String>> {
        Ok(self
            .world
            .kv
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .cloned()
            .collect())
    }

    fn set_timer(&mut self, delay_ms: u64, payload: String, client: Option<String>) -> R<u64> {
        if let Some(c) = &client {
            self.known(c)?;
        }
        rules::timer(delay_ms, payload.len(), self.world.timers.len()).map_err(refused)?;
        self.world.next_timer += 1;
        let id = self.world.next_timer;
        let due_ms = self.world.now_ms.saturating_add(delay_ms);
        self.world.timers.insert(
            id,
            Pending {
                due_ms,
                payload,
                client,
            },
        );
        Ok(id)
    }

    fn cancel_timer(&mut self, id: u64) -> bool {
        self.world.timers.remove(&id).is_some()
    }

    fn log(&mut self, level: Level, message: String) {
        if !self.world.take_log_line() {
            return;
        }
        let level = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        self.world.logs.push(LogLine {
            level: level.to_owned(),
            message,
        });
    }

    fn now_ms(&mut self) -> u64 {
        self.world.now_ms
    }

    fn system_id(&mut self) -> String {
        self.world.system.clone()
    }
}
