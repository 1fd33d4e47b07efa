//! Helpers of `lang_plugins`: a gateway serving one language's chat plugin, and the chat
//! protocol's requests and replies on the wire.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Client, TestGateway};
use crate::lang::{self, Lang};
use crate::plugin_support::{config, install, plugin};

/// How long a plugin may take to (re)load. A version the shared compile cache has not seen yet
/// is compiled first: ~12 s for Python's 18 MB in the test build here, far more on a loaded
/// machine. Only a deadline: the poll returns as soon as the plugin serves.
pub const LOAD_WAIT: Duration = Duration::from_secs(600);

/// Poll `/api/plugins` until `name`'s entry satisfies `f` (within [`LOAD_WAIT`]).
pub async fn wait_for(
    gw: &TestGateway,
    name: &str,
    what: &str,
    f: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + LOAD_WAIT;
    loop {
        let p = plugin(gw, name).await;
        if f(&p) {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for plugin {name}: {what}; last entry: {p}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A gateway serving `lang`'s chat plugin (version 1) from a fresh plugins folder, with the
/// shared compile cache; returned once the plugin serves.
pub async fn start(lang: Lang, dir: &Path) -> TestGateway {
    install(
        dir,
        lang.plugin(),
        lang::component(lang, 1).await.to_str().unwrap(),
    );
    let gw = TestGateway::start(config(dir)).await;
    let entry = wait_for(&gw, lang.plugin(), "serves", |p| p["version"].is_string()).await;
    assert_eq!(entry["lastError"], Value::Null, "{entry}");
    gw
}

pub async fn send(client: &mut Client, event: &str, data: Value) {
    client
        .send_text(&json!({"event": event, "data": data}).to_string())
        .await;
}

/// The next frame with `"event": event`, skipping others (group notices, other pushes).
pub async fn expect(client: &mut Client, event: &str) -> Value {
    loop {
        let v = client.recv_json().await;
        if v["event"] == event {
            return v;
        }
    }
}

/// The next frame, which must be a group notice (code 1001 online / 1002 offline) about `about`.
pub async fn expect_notice(client: &mut Client, code: u32, about: &str) {
    let v = client.recv_json().await;
    assert_eq!(v["code"], code, "expected notice {code}: {v}");
    assert_eq!(v["data"]["clientId"], about, "{v}");
}

/// The reply to `event`, which must be a success; its data.
pub async fn request(client: &mut Client, event: &str, data: Value) -> Value {
    send(client, event, data).await;
    let reply = expect(client, event).await;
    assert_eq!(reply["code"], 0, "{event}: {reply}");
    assert_eq!(reply["msg"], "success", "{event}: {reply}");
    reply["data"].clone()
}

/// The reply to `event`, which must fail with `code`.
pub async fn refused(client: &mut Client, event: &str, data: Value, code: u32) -> Value {
    send(client, event, data).await;
    let reply = expect(client, event).await;
    assert_eq!(reply["code"], code, "{event}: {reply}");
    assert_eq!(reply["data"], Value::Null, "{event}: {reply}");
    reply
}
