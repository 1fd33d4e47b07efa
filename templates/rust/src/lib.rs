//! A minimal wasmgate plugin: every client joins the group `lobby`; `{"event":"hello","data":
//! {"name":"ann"}}` is answered with a greeting and a visit counter kept in the key-value store
//! (it survives hot reloads); `{"event":"shout","data":{"text":"hi"}}` goes to the whole lobby.
//!
//! The plugin keeps nothing in memory, so it runs unchanged as a pool (`instances = N`): the
//! counter is a `kv_incr`, atomic across instances, and the lobby is a group of the registry,
//! which every instance shares.

use serde_json::{Value, json};
use wasmgate_guest::prelude::*;

#[derive(Default)]
struct Template;

impl Template {
    fn hello(&mut self, client: &str, data: Value) -> HandlerResult {
        let name = data["name"].as_str().unwrap_or("stranger");
        let visits = host::kv_incr(&format!("visits:{name}"), 1)?;
        reply_ok(
            client,
            "hello",
            &json!({ "greeting": format!("hello {name}"), "visits": visits }),
        )?;
        Ok(())
    }

    fn shout(&mut self, client: &str, data: Value) -> HandlerResult {
        let text = data["text"].as_str().unwrap_or_default();
        push_to_group(
            "lobby",
            "shout",
            &json!({ "from": client, "text": text }),
            &[],
        )?;
        Ok(())
    }
}

impl Plugin for Template {
    /// `ctx` says how the client connected: `?nick=ann` in its URL becomes the `userId` of the
    /// lobby's join notices.
    fn on_connect(&mut self, client: &str, ctx: &ConnectContext) -> Result<(), Reject> {
        let nick = ctx.query_param("nick").unwrap_or_default();
        host::join_group_as(client, "lobby", nick, "").map_err(|e| Reject::new(4000, e.to_string()))
    }

    fn on_message(&mut self, client: &str, msg: Message) {
        Router::new()
            .on("hello", Template::hello)
            .on("shout", Template::shout)
            .dispatch(self, client, &msg);
    }
}

export_plugin!(Template);
