//! `chat`: chat rooms with nicknames, as a wasmgate plugin.
//!
//! Nicknames are uids bound to clients and rooms are groups, so every piece of state lives in
//! the gateway's registry: the plugin keeps nothing in memory (except the version from its
//! config) and a hot reload loses nothing. Joining and leaving rooms also triggers the
//! gateway's own group notices (codes 1001/1002) to the room's other members.
//!
//! Pooled (`instances = N`): every instance sees the same registry, so rooms, nicknames and
//! whispers work across instances with no change. The one check-then-act, `nick` (is the name
//! free? then bind it), would race between two instances handling two clients at once: it
//! first takes the plugin's key-value lock (`NICK_LOCK`), which serializes every `nick` of
//! every instance.
//!
//! # Protocol
//!
//! A client sends JSON text frames `{"event":"<name>","data":{...}}`. Every request is answered
//! with `{"event":"<name>","code":0,"msg":"success","data":{...}}`, or on failure
//! `{"event":"<name>","code":<n>,"msg":"<why>","data":null}` with
//! 400 (bad JSON, missing or invalid field), 403 (not in that room), 404 (unknown event,
//! nobody to whisper to), 409 (nickname taken) or 500 (a host call failed; `msg` says why).
//! A frame that is not a JSON event is answered with event `"error"`, code 400.
//!
//! | event | data | reply data | effect |
//! |---|---|---|---|
//! | `nick` | `{name}` | `{name}` | binds `name` as this client's uid; 409 if another online client has it |
//! | `join` | `{room}` | `{room}` | joins the group `room` |
//! | `leave` | `{room}` | `{room}` | leaves the group `room` |
//! | `say` | `{room, text}` | `{room, delivered}` | pushes `{"event":"said","data":{room, from, text}}` to every member of `room` (sender included); 403 unless a member |
//! | `whisper` | `{to, text}` | `{to, delivered}` | pushes `{"event":"whisper","data":{from, text}}` to every client of uid `to`; 404 if none |
//! | `who` | `{room}` | `{room, uids}` | the distinct uids in `room` |
//!
//! `from` is the sender's nickname, or its client id when it has none. Limits: names 1–32
//! characters, rooms 1–64, texts 1–2000.
//!
//! Diagnostic events, shared with the JavaScript, Python and C chat examples:
//! `info-set {key, value}` → `{key, value}` (merged into the client's info map),
//! `info-get` → the info map as an object, `kv-incr {key}` → `{value}`,
//! `timer {ms, payload?}` → `{id}` and later a push `{"event":"timer","data":{payload}}` to the
//! requester, `version` → `{version}` (from the init config `{"version":...}`, default `"1"`).
//! The plain text frame `hello` is answered `hello from rust`; binary frames are echoed.

use serde::Deserialize;
use serde_json::{Value, json};
use wasmgate_guest::prelude::*;
use wasmgate_guest::reply::CODE_BAD_REQUEST;

/// Bad JSON, or a missing or invalid field.
const BAD_REQUEST: i32 = CODE_BAD_REQUEST;
/// Saying something in a room the sender did not join.
const FORBIDDEN: i32 = 403;
/// Nobody to whisper to.
const NOT_FOUND: i32 = 404;
/// Nickname already taken by another client.
const CONFLICT: i32 = 409;

/// Longest nickname, in characters.
const MAX_NAME: usize = 32;
/// Longest room name, in characters.
const MAX_ROOM: usize = 64;
/// Longest chat line, in characters.
const MAX_TEXT: usize = 2000;

/// The key `nick` reads to take the plugin's key-value lock. The first kv call of an event holds
/// that lock until the event returns, across all instances of a pool, so the name check and the
/// bind below cannot interleave with another instance's `nick`. The key is never written: the
/// read only serves as a lock, and the registry stays the one place names live.
const NICK_LOCK: &str = "lock:nick";

/// The plugin. Only the configured version lives in memory; the rest is in the registry.
struct Chat {
    /// Reported by the `version` event, so a hot reload can be observed.
    version: String,
}

impl Default for Chat {
    fn default() -> Self {
        Chat {
            version: "1".to_owned(),
        }
    }
}

/// A required string field of `data`: present, non-empty, at most `max` characters.
fn field(data: &Value, name: &str, max: usize) -> Result<String, EventError> {
    match data.get(name).and_then(Value::as_str) {
        Some(v) if !v.trim().is_empty() && v.chars().count() <= max => Ok(v.to_owned()),
        Some(v) if !v.trim().is_empty() => Err(EventError::with_code(
            BAD_REQUEST,
            format!("field '{name}' is longer than {max} characters"),
        )),
        _ => Err(EventError::with_code(
            BAD_REQUEST,
            format!("missing field '{name}'"),
        )),
    }
}

/// The nickname of a client, or its id when it has none.
fn name_of(client: &str) -> Result<String, EventError> {
    Ok(host::get_uid_by_client_id(client)?.unwrap_or_else(|| client.to_owned()))
}

/// The payload of a diagnostic timer: who asked, and what to hand back.
#[derive(serde::Serialize, Deserialize)]
struct TimerPayload {
    /// The client to push the `timer` event to.
    client: String,
    /// What the client asked to get back.
    payload: Value,
}

impl Chat {
    fn nick(&mut self, client: &str, data: Value) -> HandlerResult {
        let name = field(&data, "name", MAX_NAME)?;
        host::kv_get(NICK_LOCK)?;
        let owners = host::get_client_ids_by_uid(&name);
        if owners.iter().any(|c| c != client) {
            return Err(EventError::with_code(
                CONFLICT,
                format!("nick '{name}' is taken"),
            ));
        }
        if host::get_uid_by_client_id(client)?.is_some_and(|old| old != name) {
            host::unbind_uid(client)?;
        }
        host::bind_uid(client, &name)?;
        reply_ok(client, "nick", &json!({ "name": name }))?;
        Ok(())
    }

    fn join(&mut self, client: &str, data: Value) -> HandlerResult {
        let room = field(&data, "room", MAX_ROOM)?;
        host::join_group(client, &room)?;
        reply_ok(client, "join", &json!({ "room": room }))?;
        Ok(())
    }

    fn leave(&mut self, client: &str, data: Value) -> HandlerResult {
        let room = field(&data, "room", MAX_ROOM)?;
        host::leave_group(client, &room)?;
        reply_ok(client, "leave", &json!({ "room": room }))?;
        Ok(())
    }

    fn say(&mut self, client: &str, data: Value) -> HandlerResult {
        let room = field(&data, "room", MAX_ROOM)?;
        let text = field(&data, "text", MAX_TEXT)?;
        if !host::get_client_ids_by_group(&room)
            .iter()
            .any(|c| c == client)
        {
            return Err(EventError::with_code(
                FORBIDDEN,
                format!("not in room '{room}'"),
            ));
        }
        let from = name_of(client)?;
        let said = json!({ "room": room, "from": from, "text": text });
        let delivered = push_to_group(&room, "said", &said, &[])?;
        reply_ok(
            client,
            "say",
            &json!({ "room": room, "delivered": delivered }),
        )?;
        Ok(())
    }

    fn whisper(&mut self, client: &str, data: Value) -> HandlerResult {
        let to = field(&data, "to", MAX_NAME)?;
        let text = field(&data, "text", MAX_TEXT)?;
        let from = name_of(client)?;
        let delivered = push_to_uid(&to, "whisper", &json!({ "from": from, "text": text }))?;
        if delivered == 0 {
            return Err(EventError::with_code(
                NOT_FOUND,
                format!("'{to}' is not online"),
            ));
        }
        reply_ok(
            client,
            "whisper",
            &json!({ "to": to, "delivered": delivered }),
        )?;
        Ok(())
    }

    fn who(&mut self, client: &str, data: Value) -> HandlerResult {
        let room = field(&data, "room", MAX_ROOM)?;
        let uids = host::get_uids_by_group(&room);
        reply_ok(client, "who", &json!({ "room": room, "uids": uids }))?;
        Ok(())
    }

    fn info_set(&mut self, client: &str, data: Value) -> HandlerResult {
        let key = field(&data, "key", MAX_ROOM)?;
        let Some(value) = data.get("value").and_then(Value::as_str) else {
            return Err(EventError::with_code(BAD_REQUEST, "missing field 'value'"));
        };
        host::update_info(client, [(key.as_str(), value)])?;
        reply_ok(client, "info-set", &json!({ "key": key, "value": value }))?;
        Ok(())
    }

    fn info_get(&mut self, client: &str, _data: Value) -> HandlerResult {
        let info = host::get_info(client)?;
        reply_ok(client, "info-get", &info)?;
        Ok(())
    }

    fn kv_incr(&mut self, client: &str, data: Value) -> HandlerResult {
        let key = field(&data, "key", MAX_ROOM)?;
        let value = host::kv_incr(&key, 1)?;
        reply_ok(client, "kv-incr", &json!({ "value": value }))?;
        Ok(())
    }

    fn timer(&mut self, client: &str, data: Value) -> HandlerResult {
        let Some(ms) = data.get("ms").and_then(Value::as_u64) else {
            return Err(EventError::with_code(BAD_REQUEST, "missing field 'ms'"));
        };
        let payload = TimerPayload {
            client: client.to_owned(),
            payload: data.get("payload").cloned().unwrap_or(Value::Null),
        };
        let id = host::set_timer_json(ms, &payload)?;
        reply_ok(client, "timer", &json!({ "id": id }))?;
        Ok(())
    }

    fn version(&mut self, client: &str, _data: Value) -> HandlerResult {
        reply_ok(client, "version", &json!({ "version": self.version }))?;
        Ok(())
    }

    fn router() -> Router<Self> {
        Router::new()
            .on("nick", Self::nick)
            .on("join", Self::join)
            .on("leave", Self::leave)
            .on("say", Self::say)
            .on("whisper", Self::whisper)
            .on("who", Self::who)
            .on("info-set", Self::info_set)
            .on("info-get", Self::info_get)
            .on("kv-incr", Self::kv_incr)
            .on("timer", Self::timer)
            .on("version", Self::version)
    }
}

/// The version named by the init config `{"version": ...}`, if any.
fn configured_version(config: &str) -> Option<String> {
    let parsed: Value = serde_json::from_str(config).ok()?;
    match parsed.get("version")? {
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

impl Plugin for Chat {
    fn init(&mut self, config: &str) -> Result<(), String> {
        if let Some(v) = configured_version(config) {
            self.version = v;
        }
        log_info!("rust chat ready, version {}", self.version);
        Ok(())
    }

    fn on_message(&mut self, client: &str, msg: Message) {
        match msg {
            Message::Binary(_) => {
                if let Err(e) = host::send_to_client(client, msg) {
                    log_warn!("echo to {client} failed: {e}");
                }
            }
            Message::Text(ref text) if text == "hello" => {
                if let Err(e) = host::send_to_client(client, "hello from rust") {
                    log_warn!("hello to {client} failed: {e}");
                }
            }
            Message::Text(_) => {
                Self::router().dispatch(self, client, &msg);
            }
        }
    }

    fn on_close(&mut self, client: &str, reason: CloseReason) {
        log_debug!("{client} left ({})", reason.code);
    }

    fn on_timer(&mut self, timer: &Timer) {
        let payload = timer.payload.as_str();
        match serde_json::from_str::<TimerPayload>(payload) {
            Ok(t) => {
                if let Err(e) = push(&t.client, "timer", &json!({ "payload": t.payload })) {
                    log_warn!("timer push to {} failed: {e}", t.client);
                }
            }
            Err(e) => log_warn!("bad timer payload {payload}: {e}"),
        }
    }
}

export_plugin!(Chat);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_required_non_empty_and_bounded() {
        let data = json!({"name": "ann", "blank": "  ", "long": "x".repeat(33), "num": 5});
        assert_eq!(field(&data, "name", MAX_NAME), Ok("ann".to_owned()));
        for missing in ["blank", "num", "absent"] {
            let err = field(&data, missing, MAX_NAME).map_err(|e| (e.code, e.msg));
            assert_eq!(err, Err((400, format!("missing field '{missing}'"))));
        }
        let long = field(&data, "long", MAX_NAME).map_err(|e| e.code);
        assert_eq!(long, Err(400));
        assert_eq!(
            field(&Value::Null, "name", MAX_NAME).map_err(|e| e.code),
            Err(400)
        );
    }

    #[test]
    fn version_comes_from_json_config() {
        assert_eq!(
            configured_version(r#"{"version":"2"}"#).as_deref(),
            Some("2")
        );
        assert_eq!(configured_version(r#"{"version":3}"#).as_deref(), Some("3"));
        assert_eq!(configured_version(""), None);
        assert_eq!(configured_version("v9"), None);
    }

    #[test]
    fn every_event_is_routed() {
        let events: Vec<_> = Chat::router().events().collect();
        assert_eq!(
            events,
            [
                "nick", "join", "leave", "say", "whisper", "who", "info-set", "info-get",
                "kv-incr", "timer", "version"
            ]
        );
    }
}
