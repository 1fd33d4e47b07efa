//! Helpers of the plugin tests: the components `build.rs` built, a plugins folder, the
//! `hostcalls` command protocol and `/api/plugins`.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;
use tokio_tungstenite::tungstenite::Message;
use wasmgate::Config;

use crate::common::{Client, TestGateway};

/// Components built from source by `tests/build.rs`.
pub const HOSTCALLS: &str = env!("GUEST_HOSTCALLS");
/// Spins forever on `loop`.
pub const LOOPER: &str = env!("GUEST_LOOPER");
/// Allocates until the memory cap on `hog` / `hog-abort`.
pub const HOG: &str = env!("GUEST_HOG");
/// Panics on `panic`.
pub const PANICKER: &str = env!("GUEST_PANICKER");
/// Sends a million frames on `spam`.
pub const SPAMMER: &str = env!("GUEST_SPAMMER");
/// `init` always fails.
pub const BADINIT: &str = env!("GUEST_BADINIT");
/// Answers `v1:<text>`.
pub const VERSIONED_1: &str = env!("GUEST_VERSIONED_1");
/// Answers `v2:<text>`.
pub const VERSIONED_2: &str = env!("GUEST_VERSIONED_2");
/// The chat example plugin.
pub const CHAT: &str = env!("GUEST_CHAT");
/// The quiz example plugin.
pub const QUIZ: &str = env!("GUEST_QUIZ");
/// `init` panics.
pub const INIT_TRAP: &str = env!("GUEST_RT_INITTRAP");
/// `on-connect` panics.
pub const CONNECT_TRAP: &str = env!("GUEST_RT_CONNECTTRAP");
/// A `wasmgate:plugin@0.1.0` guest written with plain wit-bindgen, frozen (`tests/guests/legacy01`).
pub const LEGACY01: &str = env!("GUEST_LEGACY01");
/// A `wasmgate:plugin@0.2.0` guest exercising what 0.2 added (`tests/guests/contract02`).
pub const CONTRACT02: &str = env!("GUEST_CONTRACT02");
/// The smallest valid component, `(component)`: it exports nothing, so it is the wrong world.
pub const EMPTY_COMPONENT: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

/// The component `src` with a custom section carrying `tag` appended: the same code, other
/// bytes, so another version (a new hash) for hot-reload tests.
pub fn variant(src: &str, tag: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"wasmgate-test-variant";
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name);
    body.extend_from_slice(tag.as_bytes());
    let mut bytes = std::fs::read(src).expect("read component");
    bytes.push(0); // custom section
    leb(body.len(), &mut bytes);
    bytes.extend_from_slice(&body);
    bytes
}

/// Write `bytes` as `<dir>/<name>.wasm` atomically.
pub fn install_bytes(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.wasm.tmp"));
    std::fs::write(&tmp, bytes).expect("write component");
    std::fs::rename(&tmp, dir.join(format!("{name}.wasm"))).expect("rename component");
}

/// A compile cache shared by the tests of a run, so each component is compiled once (the
/// wasmtime compiler is slow in unoptimized test builds). Tests about the cache use their own.
pub fn shared_cache() -> PathBuf {
    PathBuf::from(env!("OUT_DIR")).join("compile-cache")
}

/// A fresh plugins folder.
pub fn folder() -> TempDir {
    tempfile::tempdir().expect("plugins folder")
}

/// Put the component `src` in `dir` as `<name>.wasm`, atomically (copy beside, rename), the way
/// a deployment should.
pub fn install(dir: &Path, name: &str, src: &str) {
    let tmp = dir.join(format!(".{name}.wasm.tmp"));
    std::fs::copy(src, &tmp).expect("copy component");
    std::fs::rename(&tmp, dir.join(format!("{name}.wasm"))).expect("rename component");
}

/// A gateway config loading plugins from `dir`, with a short reload debounce.
pub fn config(dir: &Path) -> Config {
    let mut config = Config {
        plugins_dir: Some(dir.to_path_buf()),
        cache_dir: Some(shared_cache()),
        ..Config::default()
    };
    config.plugin.reload_debounce = Duration::from_millis(50);
    // `scripts/test.sh` runs the plugin tests a second time with every plugin pooled.
    if let Some(n) = std::env::var("WASMGATE_TEST_PLUGIN_INSTANCES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        config.plugin.instances = wasmgate::config::Instances::Count(n);
    }
    config
}

/// Run plugin `name` as `n` instances, whatever `WASMGATE_TEST_PLUGIN_INSTANCES` says.
pub fn instances(config: &mut Config, name: &str, n: usize) {
    config.plugins.insert(
        name.into(),
        wasmgate::config::PluginConfig {
            instances: Some(wasmgate::config::Instances::Count(n)),
            ..Default::default()
        },
    );
}

/// `GET /api/plugins`'s list.
pub async fn plugins(gw: &TestGateway) -> Vec<Value> {
    let (status, body) = gw.get("/api/plugins").await;
    assert_eq!(status, 200, "GET /api/plugins: {body}");
    let body: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["msg"], "success", "{body}");
    let list = body["data"]["list"].as_array().cloned().expect("list");
    assert_eq!(body["data"]["count"], list.len(), "{body}");
    list
}

/// One plugin's entry in `GET /api/plugins` (`Null` if not listed).
pub async fn plugin(gw: &TestGateway, name: &str) -> Value {
    plugins(gw)
        .await
        .into_iter()
        .find(|p| p["name"] == name)
        .unwrap_or(Value::Null)
}

/// How long a test waits for a plugin to change state: long, because a reload may compile, and
/// the compiler is slow in unoptimized test builds (only a deadline: the poll returns at once).
pub const RELOAD_WAIT: Duration = Duration::from_secs(60);

/// Poll `/api/plugins` until `name`'s entry satisfies `f` (within [`RELOAD_WAIT`]); the entry.
pub async fn wait_plugin(
    gw: &TestGateway,
    name: &str,
    what: &str,
    f: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + RELOAD_WAIT;
    loop {
        let p = plugin(gw, name).await;
        if f(&p) {
            return p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for plugin {name}: {what}; last entry: {p}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Run a `hostcalls` command from `client`; the reply object (`ok` or `err`/`kind`). Frames that
/// are not the reply (notices, pushes) are skipped and returned in the second element.
pub async fn call_collect(client: &mut Client, call: &str, args: Value) -> (Value, Vec<Message>) {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let req = json!({"call": call, "args": args, "id": id});
    client.send_text(&req.to_string()).await;
    let mut others = Vec::new();
    loop {
        let msg = client.recv().await;
        if let Message::Text(t) = &msg
            && let Ok(v) = serde_json::from_str::<Value>(t)
            && v["id"] == id
            && v["call"] == call
        {
            return (v, others);
        }
        others.push(msg);
    }
}

/// Run a command that must succeed; its `ok` value.
pub async fn ok(client: &mut Client, call: &str, args: Value) -> Value {
    let (reply, _) = call_collect(client, call, args).await;
    assert!(reply.get("ok").is_some(), "{call} failed: {reply}");
    reply["ok"].clone()
}

/// Run a command that must fail; its error kind.
pub async fn err(client: &mut Client, call: &str, args: Value) -> String {
    let (reply, _) = call_collect(client, call, args).await;
    assert!(reply.get("err").is_some(), "{call} should fail: {reply}");
    reply["kind"].as_str().unwrap_or_default().to_owned()
}

/// The next text frame parsed as JSON, skipping group notices (codes 1001/1002).
pub async fn recv_non_notice(client: &mut Client) -> Value {
    loop {
        let v = client.recv_json().await;
        if v["code"] != 1001 && v["code"] != 1002 {
            return v;
        }
    }
}

/// The gateway's metrics text.
pub fn metrics(gw: &TestGateway) -> String {
    gw.gateway.metrics().render()
}

/// The value of the first metric line starting with `prefix` (0 when absent).
pub fn metric(gw: &TestGateway, prefix: &str) -> f64 {
    metrics(gw)
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

// ---- app plugins (chat, quiz): `{"event", "data"}` frames ----------------------------------

/// Send the app event `event` with `data`.
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

/// The reply to `event`, which must be a success; its data.
pub async fn request(client: &mut Client, event: &str, data: Value) -> Value {
    send(client, event, data).await;
    let reply = expect(client, event).await;
    assert_eq!(reply["code"], 0, "{event}: {reply}");
    reply["data"].clone()
}

/// Replace `name`'s file with another build of `src` and wait until it serves.
pub async fn hot_reload(
    gw: &TestGateway,
    dir: &std::path::Path,
    name: &str,
    src: &str,
    tag: &str,
) -> Value {
    let old = plugin(gw, name).await["version"].clone();
    install_bytes(dir, name, &variant(src, tag));
    let entry = wait_plugin(gw, name, "the new build serves", |p| {
        p["version"] != old && p["version"].is_string()
    })
    .await;
    assert_eq!(entry["lastError"], Value::Null, "{entry}");
    entry
}
