//! Cluster mode with plugins (issue 12): a host call of a plugin on one node acts on clients of
//! the other nodes. Three gateways in this process, each with its own Redis connections, node
//! id, socket and plugin runtime, on a `redis-server` of this test (free port, never 6379).
#![allow(clippy::unwrap_used)]

mod common;
mod plugin_support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Client, TestGateway};
use plugin_support::*;
use serde_json::{Value, json};

struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A host call from `client`; its `ok` answer.
async fn call(client: &mut Client, name: &str, args: Value) -> Value {
    client
        .send_text(&json!({"call": name, "args": args}).to_string())
        .await;
    let answer = client.recv_json().await;
    assert_eq!(answer["call"], name, "{answer}");
    assert!(answer.get("err").is_none(), "{name} failed: {answer}");
    answer["ok"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugins_send_to_group_reaches_members_on_every_node() {
    let redis = RedisServer::start();
    let prefix = format!("t-plugins-{}:", std::process::id());
    let dirs: Vec<_> = (0..3).map(|_| folder()).collect();
    let mut nodes = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        install(dir.path(), "hostcalls", HOSTCALLS);
        let mut cfg = config(dir.path());
        cfg.redis = Some(format!("redis://127.0.0.1:{}", redis.port));
        cfg.redis_prefix = prefix.clone();
        cfg.node_id = Some(i as u32 + 1);
        nodes.push(TestGateway::start(cfg).await);
    }
    let mut a = nodes[0].connect("hostcalls").await;
    let mut b = nodes[1].connect("hostcalls").await;
    let mut c = nodes[2].connect("hostcalls").await;

    call(&mut b, "join-group", json!({"group": "room"})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    call(&mut c, "join-group", json!({"group": "room"})).await;
    // b, on node 2, hears of c joining through node 3's plugin.
    let notice = b.recv_json().await;
    assert_eq!(notice["code"], 1001, "{notice}");
    assert_eq!(notice["data"]["clientId"], c.id.as_str());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Cluster-wide answers to the plugin on node 1.
    assert_eq!(call(&mut a, "get-all-client-count", json!({})).await, 3);
    assert_eq!(
        call(
            &mut a,
            "get-client-count-by-group",
            json!({"group": "room"})
        )
        .await,
        2
    );
    let sent = call(
        &mut a,
        "send-to-group",
        json!({"group": "room", "msg": "hi all"}),
    )
    .await;
    assert_eq!(sent, 2);
    assert_eq!(b.recv_text().await, "hi all");
    assert_eq!(c.recv_text().await, "hi all");

    // A send to one client of another node, and a close of one.
    call(
        &mut a,
        "send-to-client",
        json!({"client": b.id, "msg": "just b"}),
    )
    .await;
    assert_eq!(b.recv_text().await, "just b");
    call(
        &mut a,
        "close-client",
        json!({"client": c.id, "code": 4002, "reason": "bye"}),
    )
    .await;
    assert_eq!(c.recv_close().await, Some((4002, "bye".to_owned())));
    let notice = b.recv_json().await;
    assert_eq!(notice["code"], 1002, "{notice}");
    a.expect_silence(Duration::from_millis(200)).await;

    for n in nodes {
        n.stop().await;
    }
}

/// A host call from `client` expected to fail: its error text.
async fn call_err(client: &mut Client, name: &str, args: Value) -> String {
    client
        .send_text(&json!({"call": name, "args": args}).to_string())
        .await;
    let answer = client.recv_json().await;
    assert_eq!(answer["call"], name, "{answer}");
    answer["err"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} should fail: {answer}"))
        .to_owned()
}

/// In a cluster a plugin has one key-value store, in Redis, whatever node runs the handler:
/// a value set through one node is read through another, `incr` from three nodes at once loses
/// no increment, and refusals are the single node's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_value_store_is_one_store_across_nodes() {
    let redis = RedisServer::start();
    let prefix = format!("t-kv-{}:", std::process::id());
    let dirs: Vec<_> = (0..3).map(|_| folder()).collect();
    let mut nodes = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        install(dir.path(), "hostcalls", HOSTCALLS);
        let mut cfg = config(dir.path());
        cfg.redis = Some(format!("redis://127.0.0.1:{}", redis.port));
        cfg.redis_prefix = prefix.clone();
        cfg.node_id = Some(i as u32 + 1);
        nodes.push(TestGateway::start(cfg).await);
    }
    let mut clients = Vec::new();
    for n in &nodes {
        clients.push(n.connect("hostcalls").await);
    }

    call(
        &mut clients[0],
        "kv-set",
        json!({"key": "k1", "value": "text"}),
    )
    .await;
    assert_eq!(
        call(&mut clients[2], "kv-get", json!({"key": "k1"})).await,
        "text"
    );
    call(
        &mut clients[1],
        "kv-set",
        json!({"key": "k2", "value": [0, 255, 1]}),
    )
    .await;
    assert_eq!(
        call(&mut clients[0], "kv-get", json!({"key": "k2"})).await,
        json!([0, 255, 1])
    );

    // 3 nodes × 40 increments, at once.
    let mut tasks = Vec::new();
    for mut c in clients {
        tasks.push(tokio::spawn(async move {
            for _ in 0..40 {
                call(&mut c, "kv-incr", json!({"key": "hits", "delta": 1})).await;
            }
            c
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.unwrap());
    }
    assert_eq!(
        call(&mut clients[1], "kv-get", json!({"key": "hits"})).await,
        "120"
    );
    assert_eq!(
        call(
            &mut clients[2],
            "kv-incr",
            json!({"key": "hits", "delta": -20})
        )
        .await,
        100
    );
    assert_eq!(
        call(&mut clients[0], "kv-keys", json!({"prefix": "k"})).await,
        json!(["k1", "k2"])
    );
    assert_eq!(
        call(&mut clients[2], "kv-delete", json!({"key": "k1"})).await,
        true
    );
    assert_eq!(
        call(&mut clients[0], "kv-delete", json!({"key": "k1"})).await,
        false
    );
    assert_eq!(
        call(&mut clients[1], "kv-get", json!({"key": "k1"})).await,
        Value::Null
    );

    // Refusals worded as on one node.
    let e = call_err(&mut clients[0], "kv-incr", json!({"key": "k2", "delta": 1})).await;
    assert!(e.contains("not a decimal integer"), "{e}");
    let e = call_err(&mut clients[1], "kv-set", json!({"key": "", "value": "x"})).await;
    assert!(e.contains("empty key"), "{e}");

    for n in nodes {
        n.stop().await;
    }
}
