//! Contract 0.1.0, served by delegation: every 0.1 host call is the 0.2 call of the same name
//! (0.1's `join-group` joins with empty member data, its `set-timer` binds no client), with the
//! types converted. One implementation of the rules, so 0.1 guests get every fix of 0.2's.

use super::bindings::v0_1::wasmgate::plugin::{host as v1, types as t1};
use super::bindings::v0_2::wasmgate::plugin::{host as v2, types as t2};
use super::state::HostState;

type R<T> = Result<T, t1::Error>;

impl From<t1::Message> for t2::Message {
    fn from(m: t1::Message) -> Self {
        match m {
            t1::Message::Text(t) => t2::Message::Text(t),
            t1::Message::Binary(b) => t2::Message::Binary(b),
        }
    }
}

impl From<t2::Message> for t1::Message {
    fn from(m: t2::Message) -> Self {
        match m {
            t2::Message::Text(t) => t1::Message::Text(t),
            t2::Message::Binary(b) => t1::Message::Binary(b),
        }
    }
}

impl From<t2::Error> for t1::Error {
    fn from(e: t2::Error) -> Self {
        match e {
            t2::Error::UnknownClient(s) => t1::Error::UnknownClient(s),
            t2::Error::InvalidArgument(s) => t1::Error::InvalidArgument(s),
            t2::Error::QuotaExceeded(s) => t1::Error::QuotaExceeded(s),
            t2::Error::Unavailable(s) => t1::Error::Unavailable(s),
        }
    }
}

impl From<t1::Level> for t2::Level {
    fn from(l: t1::Level) -> Self {
        match l {
            t1::Level::Trace => t2::Level::Trace,
            t1::Level::Debug => t2::Level::Debug,
            t1::Level::Info => t2::Level::Info,
            t1::Level::Warn => t2::Level::Warn,
            t1::Level::Error => t2::Level::Error,
        }
    }
}

impl From<t1::CloseReason> for t2::CloseReason {
    fn from(r: t1::CloseReason) -> Self {
        t2::CloseReason {
            code: r.code,
            reason: r.reason,
        }
    }
}

impl From<t2::CloseReason> for t1::CloseReason {
    fn from(r: t2::CloseReason) -> Self {
        t1::CloseReason {
            code: r.code,
            reason: r.reason,
        }
    }
}

impl From<t1::Reject> for t2::Reject {
    fn from(r: t1::Reject) -> Self {
        t2::Reject {
            code: r.code,
            reason: r.reason,
        }
    }
}

impl t1::Host for HostState {}

/// `$call` of 0.2 with the arguments, its error converted.
macro_rules! fallible {
    ($self:ident . $call:ident ( $($arg:expr),* )) => {
        v2::Host::$call($self, $($arg),*).await.map_err(t1::Error::from)
    };
}

impl v1::Host for HostState {
    async fn send_to_client(&mut self, client: String, msg: t1::Message) -> R<()> {
        fallible!(self.send_to_client(client, msg.into()))
    }

    async fn send_to_clients(&mut self, clients: Vec<String>, msg: t1::Message) -> R<u32> {
        fallible!(self.send_to_clients(clients, msg.into()))
    }

    async fn send_to_group(
        &mut self,
        group: String,
        msg: t1::Message,
        exclude: Vec<String>,
    ) -> R<u32> {
        fallible!(self.send_to_group(group, msg.into(), exclude))
    }

    async fn send_to_system(&mut self, msg: t1::Message, exclude: Vec<String>) -> R<u32> {
        fallible!(self.send_to_system(msg.into(), exclude))
    }

    async fn send_to_uid(&mut self, uid: String, msg: t1::Message) -> R<u32> {
        fallible!(self.send_to_uid(uid, msg.into()))
    }

    async fn bind_uid(&mut self, client: String, uid: String) -> R<()> {
        fallible!(self.bind_uid(client, uid))
    }

    async fn unbind_uid(&mut self, client: String) -> R<()> {
        fallible!(self.unbind_uid(client))
    }

    async fn is_uid_online(&mut self, uid: String) -> bool {
        v2::Host::is_uid_online(self, uid).await
    }

    async fn get_client_ids_by_uid(&mut self, uid: String) -> Vec<String> {
        v2::Host::get_client_ids_by_uid(self, uid).await
    }

    async fn get_uid_by_client_id(&mut self, client: String) -> R<Option<String>> {
        fallible!(self.get_uid_by_client_id(client))
    }

    async fn get_all_uid(&mut self) -> Vec<String> {
        v2::Host::get_all_uid(self).await
    }

    async fn join_group(&mut self, client: String, group: String) -> R<()> {
        let member = t2::Member {
            user_id: String::new(),
            extend: String::new(),
        };
        fallible!(self.join_group(client, group, member))
    }

    async fn leave_group(&mut self, client: String, group: String) -> R<()> {
        fallible!(self.leave_group(client, group))
    }

    async fn get_client_count_by_group(&mut self, group: String) -> u32 {
        v2::Host::get_client_count_by_group(self, group).await
    }

    async fn get_client_ids_by_group(&mut self, group: String) -> Vec<String> {
        v2::Host::get_client_ids_by_group(self, group).await
    }

    async fn get_uids_by_group(&mut self, group: String) -> Vec<String> {
        v2::Host::get_uids_by_group(self, group).await
    }

    async fn get_uid_count_by_group(&mut self, group: String) -> u32 {
        v2::Host::get_uid_count_by_group(self, group).await
    }

    async fn get_all_groups(&mut self) -> Vec<String> {
        v2::Host::get_all_groups(self).await
    }

    async fn close_client(&mut self, client: String, code: u16, reason: String) -> R<()> {
        fallible!(self.close_client(client, code, reason))
    }

    async fn is_online(&mut self, client: String) -> bool {
        v2::Host::is_online(self, client).await
    }

    async fn get_all_client_count(&mut self) -> u32 {
        v2::Host::get_all_client_count(self).await
    }

    async fn get_info(&mut self, client: String) -> R<Vec<(String, String)>> {
        fallible!(self.get_info(client))
    }

    async fn set_info(&mut self, client: String, info: Vec<(String, String)>) -> R<()> {
        fallible!(self.set_info(client, info))
    }

    async fn update_info(&mut self, client: String, info: Vec<(String, String)>) -> R<()> {
        fallible!(self.update_info(client, info))
    }

    async fn kv_get(&mut self, key: String) -> R<Option<Vec<u8>>> {
        fallible!(self.kv_get(key))
    }

    async fn kv_set(&mut self, key: String, value: Vec<u8>) -> R<()> {
        fallible!(self.kv_set(key, value))
    }

    async fn kv_delete(&mut self, key: String) -> R<bool> {
        fallible!(self.kv_delete(key))
    }

    async fn kv_incr(&mut self, key: String, delta: i64) -> R<i64> {
        fallible!(self.kv_incr(key, delta))
    }

    async fn kv_keys(&mut self, prefix: String) -> R<Vec<String>> {
        fallible!(self.kv_keys(prefix))
    }

    async fn set_timer(&mut self, delay_ms: u64, payload: String) -> R<u64> {
        fallible!(self.set_timer(delay_ms, payload, None))
    }

    async fn cancel_timer(&mut self, id: u64) -> bool {
        v2::Host::cancel_timer(self, id).await
    }

    async fn log(&mut self, level: t1::Level, message: String) {
        v2::Host::log(self, level.into(), message).await;
    }

    async fn now_ms(&mut self) -> u64 {
        v2::Host::now_ms(self).await
    }

    async fn system_id(&mut self) -> String {
        v2::Host::system_id(self).await
    }
}
