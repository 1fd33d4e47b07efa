//! Test guest `hostcalls`: every host function of `wasmgate:plugin/host`, callable over JSON.
//!
//! Frames from a client:
//! - a text frame starting with `{` is a command
//!   `{"call":"<wit-name>","args":{...},"id":<any>?}`. The guest calls that host function and
//!   replies `{"call":"<name>","id":<id>,"ok":<result as JSON>}` or
//!   `{"call":"<name>","id":<id>,"err":"<kind>: <detail>","kind":"<kind>"}` (`id` only when the
//!   request had one). Kinds are the WIT error cases (`unknown-client`, `invalid-argument`,
//!   `quota-exceeded`, `unavailable`) plus `bad-json`, `bad-args` and `unknown-call`;
//! - `spin:<ms>[:<anything>]` keeps the plugin busy for `ms` milliseconds, then answers `spun`;
//! - `spin-kv:<ms>` first reads the key-value store (taking a pooled plugin's key-value turn for
//!   the rest of the event), then spins like `spin`;
//! - `work:<n>:<anything>` runs `n` rounds of an FNV-1a style hash (CPU work without host calls,
//!   the benchmark's scaling row), then answers `echo:<text>` like any other text;
//! - any other text frame is answered `echo:<text>`;
//! - a binary frame is answered with the same bytes.
//!
//! Arguments use the WIT parameter names. `client` defaults to the sender, `exclude` to `[]`,
//! `delta` to 1, `prefix` to `""`, `reason` to `""`. A `msg` is a string (text frame),
//! `{"text":"..."}` or `{"binary":[bytes]}`. A kv `value` is a string or an array of bytes;
//! `kv-get` answers a string when the value is UTF-8, else an array of bytes, `null` when unset.
//! `get-info` answers an object; `set-info`/`update-info` take `info` as an object.
//!
//! | call | args | ok |
//! |---|---|---|
//! | `send-to-client` | `client?, msg` | `null` |
//! | `send-to-clients` | `clients, msg` | count |
//! | `send-to-group` | `group, msg, exclude?` | count |
//! | `send-to-system` | `msg, exclude?` | count |
//! | `send-to-uid` | `uid, msg` | count |
//! | `bind-uid` / `unbind-uid` | `client?, uid` / `client?` | `null` |
//! | `is-uid-online`, `get-client-ids-by-uid` | `uid` | bool, list |
//! | `get-uid-by-client-id` | `client?` | string or `null` |
//! | `get-all-uid`, `get-all-groups`, `get-all-client-count` | — | list, list, count |
//! | `join-group` / `leave-group` | `client?, group` | `null` |
//! | `get-client-count-by-group`, `get-client-ids-by-group`, `get-uids-by-group`, `get-uid-count-by-group` | `group` | count or list |
//! | `close-client` | `client?, code, reason?` | `null` |
//! | `is-online` | `client?` | bool |
//! | `get-info` / `set-info` / `update-info` | `client?` / `client?, info` | object / `null` |
//! | `kv-get`, `kv-set`, `kv-delete`, `kv-incr`, `kv-keys` | `key` / `key, value` / `key` / `key, delta?` / `prefix?` | see above, `null`, bool, number, list |
//! | `set-timer` | `delay-ms, payload?` | timer id |
//! | `cancel-timer` | `id` | bool |
//! | `log` | `level` (`trace`…`error`), `message` | `null` |
//! | `now-ms`, `system-id`, `config` | — | number, string, the init config string |
//!
//! Other events:
//! - `on-timer(id, payload)` sends `{"timer":id,"payload":"<payload>"}` to a client: the
//!   `client` field of the payload if it is a JSON object with one, else the payload itself
//!   taken as a client id. `set-timer` without `payload` uses the sender's id, so
//!   `{"call":"set-timer","args":{"delay-ms":10}}` comes back to the sender.
//! - `on-connect` rejects the client when the kv key `reject-connect` holds
//!   `{"code":4xxx,"reason":"..."}`; it sends `{"connected":"<id>"}` to the group
//!   `connect-watchers`.
//! - `on-close` sends `{"closed":"<id>","code":n,"reason":"..."}` to the group `close-watchers`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use wasmgate_guest::{
    CloseReason, ConnectContext, Error, Level, Message, Plugin, Reject, Timer, export_plugin, host,
};

/// A failed command: `kind` is machine-readable, `detail` for humans.
struct Failure {
    /// WIT error case or `bad-json` / `bad-args` / `unknown-call`.
    kind: &'static str,
    /// What went wrong.
    detail: String,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure {
            kind: e.kind(),
            detail: e.detail().to_owned(),
        }
    }
}

fn bad_args(detail: impl Into<String>) -> Failure {
    Failure {
        kind: "bad-args",
        detail: detail.into(),
    }
}

/// The parsed `args` object of a command, with the sender for defaults.
struct Args<'a> {
    /// The `args` object (empty when absent).
    map: Map<String, Value>,
    /// The client that sent the command.
    sender: &'a str,
}

impl Args<'_> {
    fn str(&self, name: &str) -> Result<String, Failure> {
        match self.map.get(name) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(bad_args(format!("`{name}` must be a string"))),
            None => Err(bad_args(format!("missing `{name}`"))),
        }
    }

    fn str_or(&self, name: &str, default: &str) -> Result<String, Failure> {
        if self.map.contains_key(name) {
            self.str(name)
        } else {
            Ok(default.to_owned())
        }
    }

    fn client(&self) -> Result<String, Failure> {
        self.str_or("client", self.sender)
    }

    fn u64(&self, name: &str) -> Result<u64, Failure> {
        self.map
            .get(name)
            .and_then(Value::as_u64)
            .ok_or_else(|| bad_args(format!("`{name}` must be a non-negative integer")))
    }

    fn list(&self, name: &str) -> Result<Vec<String>, Failure> {
        match self.map.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad_args(format!("`{name}` must be a list of strings"))),
            Some(_) => Err(bad_args(format!("`{name}` must be a list of strings"))),
        }
    }

    fn msg(&self) -> Result<Message, Failure> {
        match self.map.get("msg") {
            Some(Value::String(s)) => Ok(Message::text(s.as_str())),
            Some(Value::Object(o)) => match (o.get("text"), o.get("binary")) {
                (Some(Value::String(s)), None) => Ok(Message::text(s.as_str())),
                (None, Some(b)) => bytes(b).map(Message::Binary),
                _ => Err(bad_args("`msg` must be {\"text\":..} or {\"binary\":[..]}")),
            },
            _ => Err(bad_args("missing `msg`")),
        }
    }

    fn info(&self) -> Result<Vec<(String, String)>, Failure> {
        let Some(Value::Object(o)) = self.map.get("info") else {
            return Err(bad_args("`info` must be an object of strings"));
        };
        o.iter()
            .map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad_args("`info` values must be strings"))
    }
}

fn bytes(v: &Value) -> Result<Vec<u8>, Failure> {
    let Value::Array(items) = v else {
        return Err(bad_args("bytes must be an array of 0..=255"));
    };
    items
        .iter()
        .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| bad_args("bytes must be an array of 0..=255"))
}

fn level(name: &str) -> Result<Level, Failure> {
    Ok(match name {
        "trace" => Level::Trace,
        "debug" => Level::Debug,
        "info" => Level::Info,
        "warn" => Level::Warn,
        "error" => Level::Error,
        other => return Err(bad_args(format!("unknown level `{other}`"))),
    })
}

/// Run one host call and give its result as JSON.
fn run(call: &str, a: &Args<'_>, config: &str) -> Result<Value, Failure> {
    Ok(match call {
        "send-to-client" => json!(host::send_to_client(&a.client()?, a.msg()?)?),
        "send-to-clients" => json!(host::send_to_clients(&a.list("clients")?, a.msg()?)?),
        "send-to-group" => {
            json!(host::send_to_group(
                &a.str("group")?,
                a.msg()?,
                &a.list("exclude")?
            )?)
        }
        "send-to-system" => json!(host::send_to_system(a.msg()?, &a.list("exclude")?)?),
        "send-to-uid" => json!(host::send_to_uid(&a.str("uid")?, a.msg()?)?),
        "bind-uid" => json!(host::bind_uid(&a.client()?, &a.str("uid")?)?),
        "unbind-uid" => json!(host::unbind_uid(&a.client()?)?),
        "is-uid-online" => json!(host::is_uid_online(&a.str("uid")?)),
        "get-client-ids-by-uid" => json!(host::get_client_ids_by_uid(&a.str("uid")?)),
        "get-uid-by-client-id" => json!(host::get_uid_by_client_id(&a.client()?)?),
        "get-all-uid" => json!(host::get_all_uid()),
        "join-group" => json!(host::join_group(&a.client()?, &a.str("group")?)?),
        "leave-group" => json!(host::leave_group(&a.client()?, &a.str("group")?)?),
        "get-client-count-by-group" => json!(host::get_client_count_by_group(&a.str("group")?)),
        "get-client-ids-by-group" => json!(host::get_client_ids_by_group(&a.str("group")?)),
        "get-uids-by-group" => json!(host::get_uids_by_group(&a.str("group")?)),
        "get-uid-count-by-group" => json!(host::get_uid_count_by_group(&a.str("group")?)),
        "get-all-groups" => json!(host::get_all_groups()),
        "close-client" => {
            let code = u16::try_from(a.u64("code")?).map_err(|_| bad_args("`code` too big"))?;
            json!(host::close_client(
                &a.client()?,
                code,
                &a.str_or("reason", "")?
            )?)
        }
        "is-online" => json!(host::is_online(&a.client()?)),
        "get-all-client-count" => json!(host::get_all_client_count()),
        "get-info" => json!(host::get_info(&a.client()?)?),
        "set-info" => json!(host::set_info(&a.client()?, a.info()?)?),
        "update-info" => json!(host::update_info(&a.client()?, a.info()?)?),
        "kv-get" => match host::kv_get(&a.str("key")?)? {
            None => Value::Null,
            Some(raw) => match String::from_utf8(raw) {
                Ok(text) => json!(text),
                Err(e) => json!(e.into_bytes()),
            },
        },
        "kv-set" => {
            let value = match a.map.get("value") {
                Some(Value::String(s)) => s.clone().into_bytes(),
                Some(v) => bytes(v)?,
                None => return Err(bad_args("missing `value`")),
            };
            json!(host::kv_set(&a.str("key")?, value)?)
        }
        "kv-delete" => json!(host::kv_delete(&a.str("key")?)?),
        "kv-incr" => {
            let delta = match a.map.get("delta") {
                None => 1,
                Some(v) => v
                    .as_i64()
                    .ok_or_else(|| bad_args("`delta` must be an integer"))?,
            };
            json!(host::kv_incr(&a.str("key")?, delta)?)
        }
        "kv-keys" => json!(host::kv_keys(&a.str_or("prefix", "")?)?),
        "set-timer" => {
            let payload = a.str_or("payload", a.sender)?;
            json!(host::set_timer(a.u64("delay-ms")?, &payload)?)
        }
        "cancel-timer" => json!(host::cancel_timer(a.u64("id")?)),
        "log" => {
            host::log(level(&a.str("level")?)?, &a.str("message")?);
            Value::Null
        }
        "now-ms" => json!(host::now_ms()),
        "system-id" => json!(host::system_id()),
        "config" => json!(config),
        other => {
            return Err(Failure {
                kind: "unknown-call",
                detail: other.to_owned(),
            });
        }
    })
}

/// Parse a command frame and run it; the reply object.
fn command(sender: &str, text: &str, config: &str) -> Value {
    let mut reply = Map::new();
    let outcome = match serde_json::from_str::<Value>(text) {
        Err(e) => Err(Failure {
            kind: "bad-json",
            detail: e.to_string(),
        }),
        Ok(Value::Object(mut req)) => {
            if let Some(id) = req.remove("id") {
                reply.insert("id".into(), id);
            }
            let call = match req.remove("call") {
                Some(Value::String(c)) => c,
                _ => String::new(),
            };
            reply.insert("call".into(), json!(call));
            let map = match req.remove("args") {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            run(&call, &Args { map, sender }, config)
        }
        Ok(_) => Err(Failure {
            kind: "bad-json",
            detail: "not an object".into(),
        }),
    };
    match outcome {
        Ok(v) => {
            reply.insert("ok".into(), v);
        }
        Err(f) => {
            reply.insert("err".into(), json!(format!("{}: {}", f.kind, f.detail)));
            reply.insert("kind".into(), json!(f.kind));
        }
    }
    Value::Object(reply)
}

/// `spin:<ms>[:<padding>]`: keep the plugin busy for `ms` milliseconds (a slow plugin for the
/// fairness tests), then answer `spun`.
fn spin(text: &str) -> &'static str {
    let ms: u64 = text
        .split(':')
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let until = host::now_ms().saturating_add(ms);
    while host::now_ms() < until {
        std::hint::spin_loop();
    }
    "spun"
}

/// `n` rounds of a multiply-xor hash: the same loop as the Node `ws` peer's `work:` handler
/// (`work()` in bench/peers/api.js), so both servers do equal handler work per message.
fn work(text: &str) -> u32 {
    let n: u32 = text
        .split(':')
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let mut h: u32 = 0x811c_9dc5;
    for i in 0..n {
        h = (h ^ i).wrapping_mul(0x0100_0193);
    }
    std::hint::black_box(h)
}

/// The guest: only the init config lives in memory.
#[derive(Default)]
struct HostCalls {
    /// The config string given to `init`, answered by the `config` call.
    config: String,
}

impl Plugin for HostCalls {
    fn init(&mut self, config: &str) -> Result<(), String> {
        self.config = config.to_owned();
        Ok(())
    }

    fn on_connect(&mut self, client: &str, _ctx: &ConnectContext) -> Result<(), Reject> {
        if let Ok(Some(rule)) = host::kv_get_json::<BTreeMap<String, Value>>("reject-connect") {
            let code = rule.get("code").and_then(Value::as_u64).unwrap_or(4000);
            let reason = rule
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("rejected");
            return Err(Reject::new(u16::try_from(code).unwrap_or(4000), reason));
        }
        let _ = host::send_json_to_group("connect-watchers", &json!({"connected": client}), &[]);
        Ok(())
    }

    fn on_message(&mut self, client: &str, msg: Message) {
        let reply = match msg {
            Message::Binary(bytes) => Message::Binary(bytes),
            Message::Text(text) if text.starts_with("spin:") => Message::text(spin(&text)),
            Message::Text(text) if text.starts_with("spin-kv:") => {
                let _ = host::kv_get("spin");
                Message::text(spin(&text))
            }
            Message::Text(text) if text.starts_with("work:") => {
                work(&text);
                Message::Text(format!("echo:{text}"))
            }
            Message::Text(text) if text.starts_with('{') => {
                command(client, &text, &self.config).into()
            }
            Message::Text(text) => Message::Text(format!("echo:{text}")),
        };
        if let Err(e) = host::send_to_client(client, reply) {
            wasmgate_guest::log_warn!("reply to {client} failed: {e}");
        }
    }

    fn on_close(&mut self, client: &str, reason: CloseReason) {
        let notice = json!({"closed": client, "code": reason.code, "reason": reason.reason});
        let _ = host::send_json_to_group("close-watchers", &notice, &[]);
    }

    fn on_timer(&mut self, timer: &Timer) {
        let (id, payload) = (timer.id, timer.payload.as_str());
        let target = serde_json::from_str::<Value>(payload)
            .ok()
            .and_then(|v| v.get("client").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| payload.to_owned());
        let _ = host::send_json_to_client(&target, &json!({"timer": id, "payload": payload}));
    }
}

export_plugin!(HostCalls);

#[cfg(test)]
mod tests {
    use super::*;

    /// Paths of `command` that never reach a host call, so they run natively.
    #[test]
    fn command_errors_and_pure_calls() {
        let cases = [
            (
                "{bad",
                json!({"err": "bad-json: key must be a string at line 1 column 2", "kind": "bad-json"}),
            ),
            (
                "{\"call\":\"nope\"}",
                json!({"call": "nope", "err": "unknown-call: nope", "kind": "unknown-call"}),
            ),
            (
                "{\"call\":\"kv-get\",\"id\":3}",
                json!({"call": "kv-get", "id": 3, "err": "bad-args: missing `key`", "kind": "bad-args"}),
            ),
            (
                "{\"call\":\"set-timer\",\"args\":{\"delay-ms\":-1}}",
                json!({"call": "set-timer", "err": "bad-args: `delay-ms` must be a non-negative integer", "kind": "bad-args"}),
            ),
            (
                "{\"call\":\"config\",\"id\":\"x\"}",
                json!({"call": "config", "id": "x", "ok": "cfg"}),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(command("c1", text, "cfg"), want, "{text}");
        }
    }

    #[test]
    fn argument_decoding() {
        let args = |v: Value| Args {
            map: v.as_object().cloned().unwrap_or_default(),
            sender: "me",
        };
        assert_eq!(args(json!({})).client().ok(), Some("me".to_owned()));
        assert_eq!(
            args(json!({"client": "c9"})).client().ok(),
            Some("c9".to_owned())
        );
        assert!(args(json!({"client": 5})).client().is_err());
        assert_eq!(
            args(json!({"msg": "t"})).msg().ok(),
            Some(Message::text("t"))
        );
        assert_eq!(
            args(json!({"msg": {"text": "t"}})).msg().ok(),
            Some(Message::text("t"))
        );
        assert_eq!(
            args(json!({"msg": {"binary": [0, 255]}})).msg().ok(),
            Some(Message::binary(vec![0, 255]))
        );
        assert!(args(json!({"msg": {"binary": [256]}})).msg().is_err());
        assert!(args(json!({"msg": 1})).msg().is_err());
        assert_eq!(
            args(json!({"exclude": ["a"]})).list("exclude").ok(),
            Some(vec!["a".to_owned()])
        );
        assert_eq!(args(json!({})).list("exclude").ok(), Some(Vec::new()));
        assert!(args(json!({"exclude": [1]})).list("exclude").is_err());
        let info = args(json!({"info": {"k": "v"}})).info().ok();
        assert_eq!(info, Some(vec![("k".to_owned(), "v".to_owned())]));
        assert!(args(json!({"info": {"k": 1}})).info().is_err());
        assert!(matches!(level("warn"), Ok(Level::Warn)));
        assert!(level("loud").is_err());
    }
}
