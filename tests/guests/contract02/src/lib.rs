//! Test guest `contract02`: a plugin of contract `wasmgate:plugin@0.2.0` (`wit/0.2.0`) written
//! with plain `wit-bindgen`, exercising what 0.2 added. Commands are JSON text frames
//! `{"call","args","id"}`, answered `{"call","id","ok":…}` or `{"call","id","err","kind"}`
//! (the protocol of the `hostcalls` guest):
//! - `context`: the connect context `on-connect` got for the sender (`claims` parsed);
//! - `join-group {client, group, userId, extend}`, `leave-group {client, group}`;
//! - `get-all-client-ids`, `get-groups-by-client-id {client}`;
//! - `set-timer {ms, payload, client?}`, `cancel-timer {id}`. When a timer fires, the client
//!   named by its payload (a client id) gets `{"timer":id,"payload":…,"client":…}`.
//!
//! `on-connect` rejects with the code of the query parameter `reject` (reason `by query`).
//! Other text frames `<text>` are answered `0.2:<text>`.

// The generated lowering of `connect-context` (five fields, two lists) has many parameters.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    path: "../../../wit/0.2.0",
    world: "plugin",
});

use std::cell::RefCell;
use std::collections::HashMap;

use serde_json::{Value, json};
use wasmgate::plugin::host;
use wasmgate::plugin::types::{Error, Member};

thread_local! {
    /// The connect context of every client, as JSON.
    static CONTEXTS: RefCell<HashMap<String, Value>> = RefCell::new(HashMap::new());
}

struct Contract;

fn kind(e: &Error) -> (&'static str, String) {
    match e {
        Error::UnknownClient(s) => ("unknown-client", s.clone()),
        Error::InvalidArgument(s) => ("invalid-argument", s.clone()),
        Error::QuotaExceeded(s) => ("quota-exceeded", s.clone()),
        Error::Unavailable(s) => ("unavailable", s.clone()),
    }
}

fn pairs(list: &[(String, String)]) -> Value {
    Value::Array(list.iter().map(|(k, v)| json!([k, v])).collect())
}

fn context_json(ctx: &ConnectContext) -> Value {
    json!({
        "query": pairs(&ctx.query),
        "headers": pairs(&ctx.headers),
        "peer": ctx.peer,
        "uid": ctx.uid,
        "claims": ctx.claims.as_deref().map(|c| serde_json::from_str::<Value>(c).unwrap_or(Value::Null)),
    })
}

fn str_arg(args: &Value, name: &str) -> String {
    args[name].as_str().unwrap_or_default().to_owned()
}

fn run(client: &str, call: &str, args: &Value) -> Result<Value, Error> {
    match call {
        "context" => Ok(CONTEXTS.with(|c| c.borrow().get(client).cloned().unwrap_or(Value::Null))),
        "join-group" => {
            let member = Member {
                user_id: str_arg(args, "userId"),
                extend: str_arg(args, "extend"),
            };
            host::join_group(&str_arg(args, "client"), &str_arg(args, "group"), &member)?;
            Ok(Value::Null)
        }
        "leave-group" => {
            host::leave_group(&str_arg(args, "client"), &str_arg(args, "group"))?;
            Ok(Value::Null)
        }
        "get-all-client-ids" => {
            let mut ids = host::get_all_client_ids()?;
            ids.sort();
            Ok(json!(ids))
        }
        "get-groups-by-client-id" => Ok(json!(host::get_groups_by_client_id(&str_arg(
            args, "client"
        ))?)),
        "set-timer" => {
            let client = args["client"].as_str().map(str::to_owned);
            let id = host::set_timer(
                args["ms"].as_u64().unwrap_or(0),
                &str_arg(args, "payload"),
                client.as_deref(),
            )?;
            Ok(json!(id))
        }
        "cancel-timer" => Ok(json!(host::cancel_timer(args["id"].as_u64().unwrap_or(0)))),
        other => Err(Error::InvalidArgument(format!("unknown call {other}"))),
    }
}

impl Guest for Contract {
    fn init(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn on_connect(client: ClientId, context: ConnectContext) -> Result<(), Reject> {
        if let Some((_, code)) = context.query.iter().find(|(k, _)| k == "reject") {
            return Err(Reject {
                code: code.parse().unwrap_or(0),
                reason: "by query".into(),
            });
        }
        let ctx = context_json(&context);
        CONTEXTS.with(|c| c.borrow_mut().insert(client, ctx));
        Ok(())
    }

    fn on_message(client: ClientId, msg: Message) {
        let Message::Text(text) = msg else {
            return;
        };
        let Ok(req) = serde_json::from_str::<Value>(&text) else {
            let _ = host::send_to_client(&client, &Message::Text(format!("0.2:{text}")));
            return;
        };
        let call = req["call"].as_str().unwrap_or_default();
        let reply = match run(&client, call, &req["args"]) {
            Ok(v) => json!({"call": call, "id": req["id"], "ok": v}),
            Err(e) => {
                let (kind, msg) = kind(&e);
                json!({"call": call, "id": req["id"], "err": msg, "kind": kind})
            }
        };
        let _ = host::send_to_client(&client, &Message::Text(reply.to_string()));
    }

    fn on_close(client: ClientId, _reason: CloseReason) {
        CONTEXTS.with(|c| c.borrow_mut().remove(&client));
    }

    fn on_timer(timer: Timer) {
        let note = json!({"timer": timer.id, "payload": timer.payload, "client": timer.client});
        let _ = host::send_to_client(&timer.payload, &Message::Text(note.to_string()));
    }
}

export!(Contract);
