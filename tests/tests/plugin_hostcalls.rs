//! Every host call from a real guest (`tests/guests/hostcalls`), scoped to the event's system;
//! on-connect verdicts; on-close; timers; the key-value store across a restart; the compile
//! cache on a second start; `/api/plugins`.
#![allow(clippy::unwrap_used)]

mod common;
mod plugin_support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{TestGateway, sorted};
use plugin_support::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use wasmgate::config::PluginConfig;

/// `hostcalls` serving systems `hc1` and `hc2`, with an init config.
async fn hostcalls_gateway(dir: &std::path::Path) -> TestGateway {
    install(dir, "hostcalls", HOSTCALLS);
    let mut config = config(dir);
    config.plugins.insert(
        "hostcalls".into(),
        PluginConfig {
            systems: vec!["hc1".into(), "hc2".into()],
            config: "cfg-x".into(),
            ..Default::default()
        },
    );
    TestGateway::start(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_host_call_works_and_is_scoped_to_the_events_system() {
    let dir = folder();
    let gw = hostcalls_gateway(dir.path()).await;
    let mut a = gw.connect("hc1").await;
    let mut b = gw.connect("hc1").await;
    let mut c = gw.connect("hc2").await;
    let a_id = a.id.clone();

    // misc
    assert_eq!(ok(&mut a, "system-id", json!({})).await, "hc1");
    assert_eq!(ok(&mut c, "system-id", json!({})).await, "hc2");
    assert_eq!(ok(&mut a, "config", json!({})).await, "cfg-x");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let guest_now = ok(&mut a, "now-ms", json!({})).await.as_i64().unwrap();
    assert!(
        (guest_now - now).abs() < 5_000,
        "now-ms {guest_now} vs {now}"
    );
    assert_eq!(
        ok(&mut a, "log", json!({"level":"info","message":"hello log"})).await,
        Value::Null
    );
    a.send_text("plain").await;
    assert_eq!(a.recv_text().await, "echo:plain");
    a.send_binary(&[7, 8, 9]).await;
    assert_eq!(a.recv().await, Message::binary(vec![7, 8, 9]));

    // sending
    assert_eq!(
        ok(
            &mut a,
            "send-to-client",
            json!({"client": b.id, "msg": "hi b"})
        )
        .await,
        Value::Null
    );
    assert_eq!(b.recv_text().await, "hi b");
    ok(
        &mut a,
        "send-to-client",
        json!({"client": b.id, "msg": {"binary": [1, 2, 255]}}),
    )
    .await;
    assert_eq!(b.recv().await, Message::binary(vec![1, 2, 255]));
    assert_eq!(
        err(
            &mut a,
            "send-to-client",
            json!({"client": "nobody", "msg": "x"})
        )
        .await,
        "unknown-client"
    );
    // Scoped: a client of hc2 is unknown to an event of hc1, and the other way round.
    assert_eq!(
        err(
            &mut a,
            "send-to-client",
            json!({"client": c.id, "msg": "x"})
        )
        .await,
        "unknown-client"
    );
    assert_eq!(
        err(
            &mut c,
            "send-to-client",
            json!({"client": a.id, "msg": "x"})
        )
        .await,
        "unknown-client"
    );
    assert_eq!(
        ok(&mut a, "is-online", json!({"client": c.id})).await,
        false
    );
    assert_eq!(
        ok(
            &mut a,
            "send-to-clients",
            json!({"clients": [b.id, "nobody", c.id], "msg": "many"})
        )
        .await,
        1
    );
    assert_eq!(b.recv_text().await, "many");
    assert_eq!(
        ok(
            &mut a,
            "send-to-system",
            json!({"msg": "all", "exclude": [a_id]})
        )
        .await,
        1
    );
    assert_eq!(b.recv_text().await, "all");
    assert_eq!(ok(&mut c, "get-all-client-count", json!({})).await, 1);
    assert_eq!(ok(&mut a, "get-all-client-count", json!({})).await, 2);

    // groups
    assert_eq!(
        ok(&mut a, "join-group", json!({"group": "room"})).await,
        Value::Null
    );
    ok(&mut b, "join-group", json!({"group": "room"})).await;
    let notice = a.recv_json().await;
    assert_eq!(notice["code"], 1001, "{notice}");
    assert_eq!(notice["data"]["clientId"], b.id.as_str());
    assert_eq!(
        err(&mut a, "join-group", json!({"group": ""})).await,
        "invalid-argument"
    );
    assert_eq!(
        ok(
            &mut a,
            "get-client-count-by-group",
            json!({"group": "room"})
        )
        .await,
        2
    );
    let mut both = vec![a.id.clone(), b.id.clone()];
    both.sort();
    assert_eq!(
        sorted(&ok(&mut a, "get-client-ids-by-group", json!({"group": "room"})).await),
        both
    );
    assert_eq!(
        ok(&mut a, "get-all-groups", json!({})).await,
        json!(["room"])
    );
    assert_eq!(ok(&mut c, "get-all-groups", json!({})).await, json!([]));
    assert_eq!(
        ok(
            &mut a,
            "send-to-group",
            json!({"group": "room", "msg": "to room", "exclude": [a_id]})
        )
        .await,
        1
    );
    assert_eq!(b.recv_text().await, "to room");

    // uids
    ok(&mut a, "bind-uid", json!({"uid": "alice"})).await;
    ok(&mut a, "bind-uid", json!({"client": b.id, "uid": "bob"})).await;
    assert_eq!(
        ok(&mut a, "is-uid-online", json!({"uid": "alice"})).await,
        true
    );
    assert_eq!(
        ok(&mut a, "is-uid-online", json!({"uid": "nobody"})).await,
        false
    );
    assert_eq!(
        ok(&mut c, "is-uid-online", json!({"uid": "alice"})).await,
        false
    );
    assert_eq!(
        ok(&mut a, "get-client-ids-by-uid", json!({"uid": "alice"})).await,
        json!([a.id])
    );
    assert_eq!(ok(&mut b, "get-uid-by-client-id", json!({})).await, "bob");
    assert_eq!(
        sorted(&ok(&mut a, "get-all-uid", json!({})).await),
        ["alice", "bob"]
    );
    assert_eq!(
        sorted(&ok(&mut a, "get-uids-by-group", json!({"group": "room"})).await),
        ["alice", "bob"]
    );
    assert_eq!(
        ok(&mut a, "get-uid-count-by-group", json!({"group": "room"})).await,
        2
    );
    assert_eq!(
        ok(
            &mut a,
            "send-to-uid",
            json!({"uid": "bob", "msg": "for bob"})
        )
        .await,
        1
    );
    assert_eq!(b.recv_text().await, "for bob");
    ok(&mut b, "unbind-uid", json!({})).await;
    assert_eq!(
        ok(&mut b, "get-uid-by-client-id", json!({})).await,
        Value::Null
    );
    assert_eq!(
        err(&mut a, "get-uid-by-client-id", json!({"client": "nobody"})).await,
        "unknown-client"
    );
    ok(&mut b, "leave-group", json!({"group": "room"})).await;
    let notice = a.recv_json().await;
    assert_eq!(notice["code"], 1002, "{notice}");
    assert_eq!(
        ok(
            &mut a,
            "get-client-count-by-group",
            json!({"group": "room"})
        )
        .await,
        1
    );

    // info
    ok(&mut a, "set-info", json!({"info": {"k": "v"}})).await;
    assert_eq!(ok(&mut a, "get-info", json!({})).await, json!({"k": "v"}));
    ok(&mut a, "update-info", json!({"info": {"k2": "v2"}})).await;
    assert_eq!(
        ok(&mut a, "get-info", json!({})).await,
        json!({"k": "v", "k2": "v2"})
    );
    ok(&mut a, "set-info", json!({"info": {"only": "1"}})).await;
    assert_eq!(
        ok(&mut a, "get-info", json!({})).await,
        json!({"only": "1"})
    );
    assert_eq!(
        err(&mut a, "get-info", json!({"client": c.id})).await,
        "unknown-client"
    );

    // key-value store (one per plugin, whatever the system)
    ok(&mut a, "kv-set", json!({"key": "k1", "value": "text"})).await;
    assert_eq!(ok(&mut c, "kv-get", json!({"key": "k1"})).await, "text");
    ok(&mut a, "kv-set", json!({"key": "k2", "value": [0, 255, 1]})).await;
    assert_eq!(
        ok(&mut a, "kv-get", json!({"key": "k2"})).await,
        json!([0, 255, 1])
    );
    assert_eq!(
        ok(&mut a, "kv-incr", json!({"key": "n", "delta": 5})).await,
        5
    );
    assert_eq!(
        ok(&mut a, "kv-incr", json!({"key": "n", "delta": -2})).await,
        3
    );
    assert_eq!(
        err(&mut a, "kv-incr", json!({"key": "k1"})).await,
        "invalid-argument"
    );
    assert_eq!(
        ok(&mut a, "kv-keys", json!({"prefix": "k"})).await,
        json!(["k1", "k2"])
    );
    assert_eq!(
        ok(&mut a, "kv-keys", json!({})).await,
        json!(["k1", "k2", "n"])
    );
    assert_eq!(ok(&mut a, "kv-delete", json!({"key": "k1"})).await, true);
    assert_eq!(ok(&mut a, "kv-delete", json!({"key": "k1"})).await, false);
    assert_eq!(
        ok(&mut a, "kv-get", json!({"key": "k1"})).await,
        Value::Null
    );
    assert_eq!(
        err(&mut a, "kv-set", json!({"key": "", "value": "x"})).await,
        "invalid-argument"
    );

    // timers carry their system: c's timer fires in hc2 and reaches c
    let id = ok(&mut c, "set-timer", json!({"delay-ms": 20})).await;
    let fired = c.recv_json().await;
    assert_eq!(fired, json!({"timer": id, "payload": c.id}));
    let id = ok(&mut a, "set-timer", json!({"delay-ms": 300})).await;
    assert_eq!(ok(&mut a, "cancel-timer", json!({"id": id})).await, true);
    assert_eq!(ok(&mut a, "cancel-timer", json!({"id": id})).await, false);
    a.expect_silence(Duration::from_millis(500)).await;

    // closing, and on-close reaching the plugin
    assert_eq!(
        err(
            &mut a,
            "close-client",
            json!({"client": b.id, "code": 1006})
        )
        .await,
        "invalid-argument"
    );
    ok(&mut a, "join-group", json!({"group": "close-watchers"})).await;
    ok(
        &mut a,
        "close-client",
        json!({"client": b.id, "code": 4001, "reason": "bye"}),
    )
    .await;
    assert_eq!(b.recv_close().await, Some((4001, "bye".to_owned())));
    let closed = recv_non_notice(&mut a).await;
    assert_eq!(closed["closed"], b.id.as_str(), "{closed}");
    assert_eq!(
        ok(&mut a, "is-online", json!({"client": b.id})).await,
        false
    );

    // the API shows the work
    let entry = plugin(&gw, "hostcalls").await;
    assert_eq!(entry["systems"], json!(["hc1", "hc2"]));
    assert!(entry["eventsHandled"].as_u64().unwrap() > 60, "{entry}");
    assert_eq!(entry["traps"], 0);
    assert!(
        entry["p50Us"].as_u64().is_some() && entry["p99Us"].as_u64().is_some(),
        "{entry}"
    );
    assert_eq!(entry["lastError"], Value::Null);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_connect_verdicts_reach_the_connection() {
    let dir = folder();
    let gw = hostcalls_gateway(dir.path()).await;
    let mut watcher = gw.connect("hc1").await;
    ok(
        &mut watcher,
        "join-group",
        json!({"group": "connect-watchers"}),
    )
    .await;

    let newcomer = gw.connect("hc1").await;
    assert_eq!(
        recv_non_notice(&mut watcher).await,
        json!({"connected": newcomer.id})
    );

    ok(
        &mut watcher,
        "kv-set",
        json!({"key": "reject-connect", "value": r#"{"code":4003,"reason":"go away"}"#}),
    )
    .await;
    let mut refused = gw.connect("hc1").await;
    assert_eq!(
        refused.recv_close().await,
        Some((4003, "go away".to_owned()))
    );
    ok(&mut watcher, "kv-delete", json!({"key": "reject-connect"})).await;
    let mut welcome = gw.connect("hc1").await;
    welcome.send_text("still here").await;
    assert_eq!(welcome.recv_text().await, "echo:still here");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_survives_a_restart() {
    let dir = folder();
    install(dir.path(), "hostcalls", HOSTCALLS);
    let cfg = config(dir.path());
    let gw = TestGateway::start(cfg.clone()).await;
    let mut a = gw.connect("hostcalls").await;
    ok(&mut a, "kv-set", json!({"key": "persist", "value": "yes"})).await;
    ok(&mut a, "kv-incr", json!({"key": "boots"})).await;
    gw.stop().await;
    assert!(
        dir.path().join(".kv/hostcalls.json").is_file(),
        "store written on shutdown"
    );

    let gw = TestGateway::start(cfg).await;
    let mut a = gw.connect("hostcalls").await;
    assert_eq!(ok(&mut a, "kv-get", json!({"key": "persist"})).await, "yes");
    assert_eq!(ok(&mut a, "kv-incr", json!({"key": "boots"})).await, 2);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_start_uses_the_compile_cache() {
    let dir = folder();
    let cache = tempfile::tempdir().expect("cache folder");
    install(dir.path(), "looper", LOOPER);
    let mut cfg = config(dir.path());
    cfg.cache_dir = Some(cache.path().to_path_buf());

    let gw = TestGateway::start(cfg.clone()).await;
    assert_eq!(plugin(&gw, "looper").await["code"], "compiler");
    gw.stop().await;
    let gw = TestGateway::start(cfg).await;
    let entry = plugin(&gw, "looper").await;
    assert_eq!(entry["code"], "disk-cache", "{entry}");
    assert!(
        metric(
            &gw,
            "wasmgate_plugin_reloads_total{plugin=\"looper\",result=\"ok\",code=\"disk-cache\"}"
        ) == 1.0,
        "{}",
        metrics(&gw)
    );
    let mut c = gw.connect("looper").await;
    c.send_text("works").await;
    assert_eq!(c.recv_text().await, "works");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugins_api_lists_and_reloads() {
    let dir = folder();
    install(dir.path(), "hostcalls", HOSTCALLS);
    let gw = TestGateway::start(config(dir.path())).await;
    let list = plugins(&gw).await;
    assert_eq!(list.len(), 1);
    let p = &list[0];
    for field in [
        "name",
        "systems",
        "version",
        "loadedAt",
        "eventsHandled",
        "traps",
        "lastError",
        "p50Us",
        "p99Us",
    ] {
        assert!(p.get(field).is_some(), "field {field} in {p}");
    }
    assert_eq!(p["systems"], json!(["hostcalls"]));
    assert_eq!(p["version"].as_str().map(str::len), Some(64));

    let (status, body) = gw.post("/api/plugins/nope/reload", json!({})).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], 404);
    // A name that cannot name a plugin file is a malformed call (400), never a lookup on disk.
    let (status, body) = gw.post("/api/plugins/..%2Fx/reload", json!({})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], 400, "{body}");

    let mut a = gw.connect("hostcalls").await;
    ok(&mut a, "kv-set", json!({"key": "kept", "value": "1"})).await;
    let (status, body) = gw.post("/api/plugins/hostcalls/reload", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["outcome"], "loaded", "{body}");
    assert_eq!(body["data"]["version"], p["version"]);
    assert_eq!(body["data"]["code"], "memory", "{body}");
    let after = plugin(&gw, "hostcalls").await;
    assert_eq!(after["reloads"], 2, "{after}");
    // The connection and the store outlive the reload.
    assert_eq!(ok(&mut a, "kv-get", json!({"key": "kept"})).await, "1");
    gw.stop().await;
}
