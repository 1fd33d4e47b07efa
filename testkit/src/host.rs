//! The `host` interface of contract 0.2.0 against the simulated state, with the gateway's
//! answers: unknown clients are `unknown-client`, names follow the gateway's default rule
//! (1–128 bytes), close codes must be 1000 or 3000–4999, a timer's client must be connected.

use crate::bindings::wasmgate::plugin::host::Host;
use crate::bindings::wasmgate::plugin::types::{self, Error, Level, Member, Message};
use crate::state::{Followup, Frame, LogLine, Pending, SimState};

type R<T> = Result<T, Error>;

/// The gateway's default `limits.max_name_bytes`.
const MAX_NAME: usize = 128;

fn frame(msg: Message) -> Frame {
    match msg {
        Message::Text(t) => Frame::Text(t),
        Message::Binary(b) => Frame::Binary(b),
    }
}

fn name(what: &str, value: &str) -> R<()> {
    if value.is_empty() || value.len() > MAX_NAME {
        return Err(Error::InvalidArgument(format!(
            "{what} must be 1 to {MAX_NAME} bytes"
        )));
    }
    Ok(())
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl SimState {
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
        if self.world.deliver(&client, frame(msg)) {
            Ok(())
        } else {
            Err(Error::UnknownClient(client))
        }
    }

    fn send_to_clients(&mut self, clients: Vec<String>, msg: Message) -> R<u32> {
        let f = frame(msg);
        let n = clients
            .iter()
            .filter(|c| self.world.deliver(c, f.clone()))
            .count();
        Ok(count(n))
    }

    fn send_to_group(&mut self, group: String, msg: Message, exclude: Vec<String>) -> R<u32> {
        name("group", &group)?;
        let to: Vec<String> = self
            .world
            .members(&group)
            .into_iter()
            .filter(|c| !exclude.contains(c))
            .collect();
        self.send_to_clients(to, msg)
    }

    fn send_to_system(&mut self, msg: Message, exclude: Vec<String>) -> R<u32> {
        let to: Vec<String> = self
            .world
            .connected()
            .map(|(id, _)| id.clone())
            .filter(|c| !exclude.contains(c))
            .collect();
        self.send_to_clients(to, msg)
    }

    fn send_to_uid(&mut self, uid: String, msg: Message) -> R<u32> {
        name("uid", &uid)?;
        let to = self.world.by_uid(&uid);
        self.send_to_clients(to, msg)
    }

    fn bind_uid(&mut self, client: String, uid: String) -> R<()> {
        name("uid", &uid)?;
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
        name("group", &group)?;
        if member.user_id.len() > MAX_NAME {
            return Err(Error::InvalidArgument("user-id too long".into()));
        }
        self.known(&client)?;
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
        name("group", &group)?;
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
        if !(code == 1000 || (3000..=4999).contains(&code)) {
            return Err(Error::InvalidArgument(format!(
                "close code {code}: use 1000 or 3000-4999"
            )));
        }
        if reason.len() > 123 {
            return Err(Error::InvalidArgument("close reason over 123 bytes".into()));
        }
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
        match self.world.client(&client) {
            Some(c) => {
                c.info = info.into_iter().collect();
                Ok(())
            }
            None => Err(Error::UnknownClient(client)),
        }
    }

    fn update_info(&mut self, client: String, info: Vec<(String, String)>) -> R<()> {
        match self.world.client(&client) {
            Some(c) => {
                c.info.extend(info);
                Ok(())
            }
            None => Err(Error::UnknownClient(client)),
        }
    }

    fn kv_get(&mut self, key: String) -> R<Option<Vec<u8>>> {
        Ok(self.world.kv.get(&key).cloned())
    }

    fn kv_set(&mut self, key: String, value: Vec<u8>) -> R<()> {
        self.world.kv.insert(key, value);
        Ok(())
    }

    fn kv_delete(&mut self, key: String) -> R<bool> {
        Ok(self.world.kv.remove(&key).is_some())
    }

    fn kv_incr(&mut self, key: String, delta: i64) -> R<i64> {
        let current = match self.world.kv.get(&key) {
            None => 0,
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| Error::InvalidArgument(format!("{key} is not an integer")))?,
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| Error::InvalidArgument(format!("{key} would overflow")))?;
        self.world.kv.insert(key, next.to_string().into_bytes());
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
