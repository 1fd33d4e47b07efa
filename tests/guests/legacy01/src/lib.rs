//! Test guest `legacy01`: a plugin of contract `wasmgate:plugin@0.1.0` (`wit/0.1.0`), written
//! the way an outside author would, with plain `wit-bindgen` and no SDK. It must keep loading
//! and working unchanged while the SDK and the examples move on: do not port it.
//!
//! Text frames:
//! - `join:<group>` joins the sender to `<group>` (0.1 has no member data) and answers
//!   `0.1:joined:<group>`;
//! - `timer:<ms>` sets a timer whose payload is the sender; when it fires the sender gets
//!   `0.1:timer:<id>`;
//! - anything else `<text>` is answered `0.1:<text>`.
//!
//! `on-connect` rejects a client with 4001 when `init` was given the config `reject-all`.

wit_bindgen::generate!({
    path: "../../../wit/0.1.0",
    world: "plugin",
});

use std::cell::Cell;

use wasmgate::plugin::host;

thread_local! {
    static REJECT_ALL: Cell<bool> = const { Cell::new(false) };
}

struct Legacy;

fn say(client: &str, text: &str) {
    let _ = host::send_to_client(client, &Message::Text(format!("0.1:{text}")));
}

impl Guest for Legacy {
    fn init(config: String) -> Result<(), String> {
        REJECT_ALL.with(|r| r.set(config == "reject-all"));
        Ok(())
    }

    fn on_connect(_client: ClientId) -> Result<(), Reject> {
        if REJECT_ALL.with(Cell::get) {
            return Err(Reject {
                code: 4001,
                reason: "legacy says no".into(),
            });
        }
        Ok(())
    }

    fn on_message(client: ClientId, msg: Message) {
        let Message::Text(text) = msg else {
            return;
        };
        if let Some(group) = text.strip_prefix("join:") {
            match host::join_group(&client, group) {
                Ok(()) => say(&client, &format!("joined:{group}")),
                Err(e) => say(&client, &format!("error:{e:?}")),
            }
        } else if let Some(ms) = text.strip_prefix("timer:") {
            let ms = ms.parse().unwrap_or(0);
            match host::set_timer(ms, &client) {
                Ok(id) => say(&client, &format!("timer-set:{id}")),
                Err(e) => say(&client, &format!("error:{e:?}")),
            }
        } else {
            say(&client, &text);
        }
    }

    fn on_close(_client: ClientId, _reason: CloseReason) {}

    fn on_timer(id: u64, payload: String) {
        say(&payload, &format!("timer:{id}"));
    }
}

export!(Legacy);
