//! The JavaScript, Python and C chat plugins (`plugins/{js,py,c}-chat`), built from source, run
//! through a real gateway with real WebSocket clients: every event of the chat protocol checked
//! on the wire and through the HTTP API, a hot reload of each language's plugin under continuous
//! traffic (every request answered exactly once, nobody disconnected, the new version serving
//! afterwards), and Python's 18 MB component loaded from the compile cache on a second start.
//!
//! The components are built once per test binary and kept between runs (see `lang`); every
//! gateway shares one compile cache, so only a run after a source change compiles them.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;
mod lang;
mod plugin_support;
#[path = "lang/wire.rs"]
mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Client, TestGateway, metric_sum, sorted};
use futures_util::{SinkExt, StreamExt};
use lang::Lang;
use plugin_support::{folder, install, plugin};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use wire::{expect_notice, refused, request, send, start, wait_for};

/// Every event of the chat protocol, through the gateway.
async fn chat_protocol(lang: Lang) {
    let dir = folder();
    let gw = start(lang, dir.path()).await;
    let name = lang.plugin();
    let system = name;
    let mut a = gw.connect(system).await;
    let mut b = gw.connect(system).await;

    a.send_text("hello").await;
    assert_eq!(a.recv_text().await, lang.hello());

    // nick: the uid is bound in the gateway.
    assert_eq!(
        request(&mut a, "nick", json!({"name": "ann"})).await,
        json!({"name": "ann"})
    );
    assert_eq!(
        gw.ok("get_uid_by_client_id", system, json!({"clientId": a.id}))
            .await,
        json!({"uid": "ann"})
    );
    request(&mut b, "nick", json!({"name": "bob"})).await;
    refused(&mut b, "nick", json!({"name": "ann"}), 409).await;
    assert_eq!(
        gw.ok("get_uid_by_client_id", system, json!({"clientId": b.id}))
            .await,
        json!({"uid": "bob"}),
        "a refused nick changes nothing"
    );

    // join: the group exists in the gateway, and its members get the gateway's notices.
    assert_eq!(
        request(&mut a, "join", json!({"room": "lobby"})).await,
        json!({"room": "lobby"})
    );
    request(&mut b, "join", json!({"room": "lobby"})).await;
    expect_notice(&mut a, 1001, &b.id).await;
    let members = gw
        .ok(
            "get_client_ids_by_group",
            system,
            json!({"groupName": "lobby"}),
        )
        .await;
    assert_eq!(members["count"], 2, "{members}");
    let mut both = vec![a.id.clone(), b.id.clone()];
    both.sort();
    assert_eq!(sorted(&members["list"]), both);

    // say: delivered to the other member (and echoed to the sender).
    send(&mut a, "say", json!({"room": "lobby", "text": "hi all"})).await;
    let said = b.recv_json().await;
    assert_eq!(
        said,
        json!({"event": "said", "data": {"room": "lobby", "from": "ann", "text": "hi all"}})
    );
    assert_eq!(a.recv_json().await["event"], "said");
    let reply = a.recv_json().await;
    assert_eq!(
        reply,
        json!({"event": "say", "code": 0, "msg": "success", "data": {"room": "lobby", "delivered": 2}})
    );
    refused(
        &mut a,
        "say",
        json!({"room": "elsewhere", "text": "x"}),
        403,
    )
    .await;

    // whisper, to a uid.
    send(&mut b, "whisper", json!({"to": "ann", "text": "psst"})).await;
    assert_eq!(
        a.recv_json().await,
        json!({"event": "whisper", "data": {"from": "bob", "text": "psst"}})
    );
    assert_eq!(
        b.recv_json().await,
        json!({"event": "whisper", "code": 0, "msg": "success", "data": {"to": "ann", "delivered": 1}})
    );
    refused(&mut b, "whisper", json!({"to": "nobody", "text": "x"}), 404).await;

    // who.
    let who = request(&mut a, "who", json!({"room": "lobby"})).await;
    assert_eq!(who["room"], "lobby");
    assert_eq!(sorted(&who["uids"]), ["ann", "bob"]);

    // info-set / info-get, and the same info through the HTTP API.
    assert_eq!(
        request(&mut a, "info-set", json!({"key": "lang", "value": name})).await,
        json!({"key": "lang", "value": name})
    );
    request(&mut a, "info-set", json!({"key": "mood", "value": "ok"})).await;
    assert_eq!(
        request(&mut a, "info-get", json!({})).await,
        json!({"lang": name, "mood": "ok"})
    );
    assert_eq!(
        gw.ok("get_info", system, json!({"clientId": a.id})).await,
        json!({"info": {"lang": name, "mood": "ok"}})
    );
    assert_eq!(request(&mut b, "info-get", json!({})).await, json!({}));

    // kv-incr: the plugin's key-value store counts.
    assert_eq!(
        request(&mut a, "kv-incr", json!({"key": "hits"})).await,
        json!({"value": 1})
    );
    assert_eq!(
        request(&mut b, "kv-incr", json!({"key": "hits"})).await,
        json!({"value": 2})
    );

    // timer: set, then fired into the plugin, which pushes to the requester.
    let set = request(&mut a, "timer", json!({"ms": 50, "payload": {"n": 7}})).await;
    assert!(set["id"].is_u64(), "{set}");
    assert_eq!(
        a.recv_json().await,
        json!({"event": "timer", "data": {"payload": {"n": 7}}})
    );

    // version, from the source (no init config).
    assert_eq!(
        request(&mut a, "version", json!({})).await,
        json!({"version": "1"})
    );

    // Malformed frames and unknown events are answered, not fatal.
    a.send_text("{not json").await;
    let bad = a.recv_json().await;
    assert_eq!(
        (bad["event"].clone(), bad["code"].clone()),
        (json!("error"), json!(400)),
        "{bad}"
    );
    refused(&mut a, "dance", json!({}), 404).await;
    a.send_binary(&[0, 1, 2, 255]).await;
    assert_eq!(a.recv().await, Message::binary(vec![0u8, 1, 2, 255]));

    // leave: the group loses the member (notice to the other), saying there is refused.
    assert_eq!(
        request(&mut b, "leave", json!({"room": "lobby"})).await,
        json!({"room": "lobby"})
    );
    expect_notice(&mut a, 1002, &b.id).await;
    refused(&mut b, "say", json!({"room": "lobby", "text": "x"}), 403).await;
    assert_eq!(
        gw.ok(
            "get_client_ids_by_group",
            system,
            json!({"groupName": "lobby"})
        )
        .await,
        json!({"count": 1, "list": [a.id]})
    );

    // Disconnect: the gateway tells the room (1002), unbinds the uid, and the plugin gets
    // on-close (it only logs it: nicknames and rooms live in the gateway).
    request(&mut b, "join", json!({"room": "lobby"})).await;
    expect_notice(&mut a, 1001, &b.id).await;
    let b_id = b.id.clone();
    b.close().await;
    expect_notice(&mut a, 1002, &b_id).await;
    let closes = format!("wasmgate_plugin_events_total{{plugin=\"{name}\",kind=\"close\"");
    common::eventually("the plugin handled on-close", || {
        let exposition = gw.gateway.metrics().render();
        let closes = closes.clone();
        async move { metric_sum(&exposition, &closes) >= 1.0 }
    })
    .await;
    refused(&mut a, "whisper", json!({"to": "bob", "text": "x"}), 404).await;
    assert_eq!(
        request(&mut a, "who", json!({"room": "lobby"})).await["uids"],
        json!(["ann"])
    );

    let entry = plugin(&gw, name).await;
    assert_eq!(entry["traps"], 0, "{entry}");
    assert_eq!(entry["lastError"], Value::Null, "{entry}");
    gw.stop().await;
}

/// Clients of the hot-reload test.
const CLIENTS: usize = 10;
/// Each client sends one request per this interval: 10 clients → ~200 requests/s.
const SEND_EVERY: Duration = Duration::from_millis(50);
/// Longest wait for one reply while a reload compiles beside the traffic.
const REPLY_WAIT: Duration = Duration::from_secs(30);

/// Send `kv-incr` on the client's own key every [`SEND_EVERY`] until `stop`, then wait for the
/// outstanding replies. The n-th reply must be exactly `n`: a request handled twice skips a
/// number, a lost one leaves the count short. Returns how many were sent, and the client (still
/// connected: a close frame from the server fails the test).
async fn kv_load(client: Client, key: String, stop: Arc<AtomicBool>) -> (u64, Client) {
    let Client { id, ws } = client;
    let (mut tx, mut rx) = ws.split();
    let request = json!({"event": "kv-incr", "data": {"key": key}}).to_string();
    let (mut sent, mut answered) = (0u64, 0u64);
    let mut tick = tokio::time::interval(SEND_EVERY);
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if stopping && answered == sent {
            let ws = tx.reunite(rx).expect("halves of one socket");
            return (sent, Client { id, ws });
        }
        tokio::select! {
            _ = tick.tick(), if !stopping => {
                tx.send(Message::text(request.clone())).await.expect("send");
                sent += 1;
            }
            msg = tokio::time::timeout(REPLY_WAIT, rx.next()) => {
                let msg = msg.unwrap_or_else(|_| panic!("client {id}: no reply within {REPLY_WAIT:?}"));
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    other => panic!("client {id}: unexpected {other:?}"),
                };
                let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
                answered += 1;
                assert_eq!(
                    v,
                    json!({"event": "kv-incr", "code": 0, "msg": "success", "data": {"value": answered}}),
                    "client {id}: reply {answered} lost, doubled or wrong"
                );
            }
        }
    }
}

/// Replace the plugin's file with version 2 while clients send continuously.
async fn hot_reload_under_traffic(lang: Lang) {
    let name = lang.plugin();
    let v2 = lang::component(lang, 2).await;
    let dir = folder();
    let gw = start(lang, dir.path()).await;
    let v1 = plugin(&gw, name).await["version"].clone();

    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut c = gw.connect(name).await;
        assert_eq!(
            request(&mut c, "version", json!({})).await,
            json!({"version": "1"})
        );
        clients.push(c);
    }
    let base = events(&gw, name);
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| tokio::spawn(kv_load(c, format!("seq-{i}"), stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = events(&gw, name);

    let written = Instant::now();
    install(dir.path(), name, v2.to_str().unwrap());
    let entry = wait_for(&gw, name, "version 2 serves", |p| {
        p["version"].is_string() && p["version"] != v1
    })
    .await;
    let swap = written.elapsed();
    assert_eq!(entry["lastError"], Value::Null, "{entry}");
    assert_eq!(entry["reloads"], 2, "{entry}");
    let at_swap = events(&gw, name);
    // Traffic goes on into the new version.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = 0;
    let mut still = Vec::new();
    for l in load {
        let (n, client) = l.await.expect("load client");
        sent += n;
        still.push(client);
    }
    let after = events(&gw, name);
    assert!(
        before > base && after > at_swap,
        "traffic before ({base} → {before}) and after ({at_swap} → {after}) the swap"
    );
    assert_eq!(
        gw.gateway.local_connection_count(),
        CLIENTS,
        "no client disconnected"
    );
    assert_eq!(
        metric_sum(
            &gw.gateway.metrics().render(),
            &format!("wasmgate_messages_dropped_total{{system=\"{name}\"")
        ),
        0.0,
        "nothing dropped"
    );
    let entry = plugin(&gw, name).await;
    assert_eq!(entry["traps"], 0, "{entry}");

    // Every client now talks to version 2, and the counters went on from where they were.
    for c in &mut still {
        assert_eq!(
            request(c, "version", json!({})).await,
            json!({"version": "2"})
        );
    }
    let mut c = gw.connect(name).await;
    let mut total = 0;
    for i in 0..CLIENTS {
        let v = request(&mut c, "kv-incr", json!({"key": format!("seq-{i}")})).await;
        total += v["value"].as_u64().unwrap() - 1;
    }
    assert_eq!(total, sent, "the store counted every request exactly once");
    eprintln!(
        "{name}: hot reload under traffic: {CLIENTS} clients, {sent} requests, file written → \
         version 2 serving in {swap:.1?} (code from {})",
        entry["code"]
    );
    gw.stop().await;
    drop(still);
}

/// Messages the plugin handled so far (`on-message` events).
fn events(gw: &TestGateway, name: &str) -> f64 {
    metric_sum(
        &gw.gateway.metrics().render(),
        &format!("wasmgate_plugin_events_total{{plugin=\"{name}\",kind=\"message\""),
    )
}

macro_rules! per_language {
    ($($lang:ident: $protocol:ident, $reload:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $protocol() {
            chat_protocol(Lang::$lang).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $reload() {
            hot_reload_under_traffic(Lang::$lang).await;
        }
    )*};
}

per_language! {
    Js: js_chat_speaks_the_protocol_through_the_gateway, js_chat_hot_reloads_under_traffic;
    Python: py_chat_speaks_the_protocol_through_the_gateway, py_chat_hot_reloads_under_traffic;
    C: c_chat_speaks_the_protocol_through_the_gateway, c_chat_hot_reloads_under_traffic;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn py_chat_loads_from_the_compile_cache_on_a_second_start() {
    let lang = Lang::Python;
    let name = lang.plugin();
    // First start: compiles, or reads an earlier run's entry; either way the disk cache holds
    // this version's code afterwards.
    let first_dir = folder();
    let first = start(lang, first_dir.path()).await;
    let entry = plugin(&first, name).await;
    let code = entry["code"].as_str().unwrap_or_default().to_owned();
    assert!(
        code == "compiler" || code == "disk-cache",
        "a fresh gateway has nothing in memory: {entry}"
    );
    let version = entry["version"].clone();
    first.stop().await;

    // Second start, same cache folder: the code comes from disk, not from Cranelift.
    let second_dir = folder();
    let loading = Instant::now();
    let gw = start(lang, second_dir.path()).await;
    let load_time = loading.elapsed();
    let entry = plugin(&gw, name).await;
    assert_eq!(entry["version"], version, "{entry}");
    assert_eq!(entry["code"], "disk-cache", "{entry}");
    assert_eq!(
        metric_sum(
            &gw.gateway.metrics().render(),
            &format!(
                "wasmgate_plugin_reloads_total{{plugin=\"{name}\",result=\"ok\",code=\"disk-cache\""
            )
        ),
        1.0
    );
    let mut c = gw.connect(name).await;
    c.send_text("hello").await;
    assert_eq!(c.recv_text().await, lang.hello());

    // A forced reload of the same bytes reuses this gateway's code in memory.
    let (status, body) = gw
        .post(&format!("/api/plugins/{name}/reload"), Value::Null)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["outcome"], "loaded", "{body}");
    assert_eq!(body["data"]["code"], "memory", "{body}");
    c.send_text("hello").await;
    assert_eq!(c.recv_text().await, lang.hello());
    eprintln!(
        "{name}: first start's code from {code}; second start (disk cache) in {load_time:.1?}"
    );
    gw.stop().await;
}

/// A JavaScript plugin's handlers as `plugin.js` exports them: one declared with `export let`
/// and set later (here in `init`, from nothing) is called, since the entry module looks each
/// handler up on every event; the handlers left out (`onConnect`, `onClose`, `onTimer`) do
/// nothing. Handlers bound once at build time instead (tried: no faster, BENCHMARKS.md) left
/// `onMessage` a no-op, and this client never got an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_handlers_set_after_the_build_are_called() {
    let name = "js-late";
    let wasm = tokio::task::spawn_blocking(move || {
        let src = tempfile::tempdir().expect("source folder");
        std::fs::write(
            src.path().join("plugin.js"),
            r#"import * as host from "wasmgate:plugin/host@0.2.0";
export let onMessage;
export function init(config) {
  onMessage = (client, msg) => host.sendToClient(client, { tag: "text", val: "late:" + msg.val });
}
"#,
        )
        .expect("write plugin.js");
        lang::build_source(Lang::Js, src.path(), name, &lang::build_root())
    })
    .await
    .expect("build task")
    .unwrap_or_else(|e| panic!("building the plugin: {e}"));
    let dir = folder();
    install(dir.path(), name, wasm.to_str().unwrap());
    let gw = TestGateway::start(plugin_support::config(dir.path())).await;
    let entry = wait_for(&gw, name, "serves", |p| p["version"].is_string()).await;
    assert_eq!(entry["lastError"], Value::Null, "{entry}");
    let mut c = gw.connect(name).await;
    c.send_text("x").await;
    assert_eq!(c.recv_text().await, "late:x");
    c.send_text("y").await;
    assert_eq!(c.recv_text().await, "late:y");
}
