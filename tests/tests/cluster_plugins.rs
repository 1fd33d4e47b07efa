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

impl RedisServer {
    /// Kill it and start it again, empty, on the same port (a restart without persistence).
    fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.child = Command::new("redis-server")
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts");
            let up = Instant::now() + Duration::from_secs(2);
            while Instant::now() < up {
                if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
            assert!(Instant::now() < deadline, "redis-server did not restart");
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugins_send_to_group_reaches_members_on_every_node() {
    let redis = RedisServer::start();
    let (_dirs, nodes) = three_nodes(&redis, "plugins", "hostcalls", HOSTCALLS, None).await;
    let mut a = nodes[0].connect("hostcalls").await;
    let mut b = nodes[1].connect("hostcalls").await;
    let mut c = nodes[2].connect("hostcalls").await;

    ok(&mut b, "join-group", json!({"group": "room"})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ok(&mut c, "join-group", json!({"group": "room"})).await;
    // b, on node 2, hears of c joining through node 3's plugin.
    let notice = b.recv_json().await;
    assert_eq!(notice["code"], 1001, "{notice}");
    assert_eq!(notice["data"]["clientId"], c.id.as_str());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Cluster-wide answers to the plugin on node 1.
    assert_eq!(ok(&mut a, "get-all-client-count", json!({})).await, 3);
    assert_eq!(
        ok(
            &mut a,
            "get-client-count-by-group",
            json!({"group": "room"})
        )
        .await,
        2
    );
    let sent = ok(
        &mut a,
        "send-to-group",
        json!({"group": "room", "msg": "hi all"}),
    )
    .await;
    assert_eq!(sent, 2);
    assert_eq!(b.recv_text().await, "hi all");
    assert_eq!(c.recv_text().await, "hi all");

    // A send to one client of another node, and a close of one.
    ok(
        &mut a,
        "send-to-client",
        json!({"client": b.id, "msg": "just b"}),
    )
    .await;
    assert_eq!(b.recv_text().await, "just b");
    ok(
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

/// Three nodes (ids 1-3) of one cluster on `redis`, keys under a prefix of `test`'s own, each
/// serving plugin `name` built from `src`, with `init` as its init config when given.
async fn three_nodes(
    redis: &RedisServer,
    test: &str,
    name: &str,
    src: &str,
    init: Option<&str>,
) -> (Vec<tempfile::TempDir>, Vec<TestGateway>) {
    let prefix = format!("t-{test}-{}:", std::process::id());
    let dirs: Vec<_> = (0..3).map(|_| folder()).collect();
    let mut nodes = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        install(dir.path(), name, src);
        let mut cfg = config(dir.path());
        cfg.redis = Some(format!("redis://127.0.0.1:{}", redis.port));
        cfg.redis_prefix = prefix.clone();
        cfg.node_id = Some(i as u32 + 1);
        if let Some(init) = init {
            cfg.plugins.insert(
                name.into(),
                wasmgate::config::PluginConfig {
                    config: init.to_owned(),
                    ..Default::default()
                },
            );
        }
        nodes.push(TestGateway::start(cfg).await);
    }
    (dirs, nodes)
}

/// A host call from `client` expected to fail: its error text.
async fn call_err(client: &mut Client, name: &str, args: Value) -> String {
    let (reply, _) = call_collect(client, name, args).await;
    reply["err"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} should fail: {reply}"))
        .to_owned()
}

/// In a cluster a plugin has one key-value store, in Redis, whatever node runs the handler:
/// a value set through one node is read through another, `incr` from three nodes at once loses
/// no increment, and refusals are the single node's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_value_store_is_one_store_across_nodes() {
    let redis = RedisServer::start();
    let (_dirs, nodes) = three_nodes(&redis, "kv", "hostcalls", HOSTCALLS, None).await;
    let mut clients = Vec::new();
    for n in &nodes {
        clients.push(n.connect("hostcalls").await);
    }

    ok(
        &mut clients[0],
        "kv-set",
        json!({"key": "k1", "value": "text"}),
    )
    .await;
    assert_eq!(
        ok(&mut clients[2], "kv-get", json!({"key": "k1"})).await,
        "text"
    );
    ok(
        &mut clients[1],
        "kv-set",
        json!({"key": "k2", "value": [0, 255, 1]}),
    )
    .await;
    assert_eq!(
        ok(&mut clients[0], "kv-get", json!({"key": "k2"})).await,
        json!([0, 255, 1])
    );

    // 3 nodes × 40 increments, at once.
    let mut tasks = Vec::new();
    for mut c in clients {
        tasks.push(tokio::spawn(async move {
            for _ in 0..40 {
                ok(&mut c, "kv-incr", json!({"key": "hits", "delta": 1})).await;
            }
            c
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.unwrap());
    }
    assert_eq!(
        ok(&mut clients[1], "kv-get", json!({"key": "hits"})).await,
        "120"
    );
    assert_eq!(
        ok(
            &mut clients[2],
            "kv-incr",
            json!({"key": "hits", "delta": -20})
        )
        .await,
        100
    );
    assert_eq!(
        ok(&mut clients[0], "kv-keys", json!({"prefix": "k"})).await,
        json!(["k1", "k2"])
    );
    assert_eq!(
        ok(&mut clients[2], "kv-delete", json!({"key": "k1"})).await,
        true
    );
    assert_eq!(
        ok(&mut clients[0], "kv-delete", json!({"key": "k1"})).await,
        false
    );
    assert_eq!(
        ok(&mut clients[1], "kv-get", json!({"key": "k1"})).await,
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

/// A timer fires once in the cluster: on the node that set it, not at all when cancelled
/// through another node, and on another node when the one that set it stops first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_fires_once_in_the_cluster_even_when_its_node_stops() {
    let redis = RedisServer::start();
    let (_dirs, mut nodes) = three_nodes(&redis, "timers", "hostcalls", HOSTCALLS, None).await;
    let mut a = nodes[0].connect("hostcalls").await;
    let mut b = nodes[1].connect("hostcalls").await;
    let mut c = nodes[2].connect("hostcalls").await;

    // Set on node 1, for b on node 2: its on-timer (on node 1) reaches b once.
    let id = ok(
        &mut a,
        "set-timer",
        json!({"delay-ms": 200, "payload": b.id}),
    )
    .await;
    let fired = b.recv_json().await;
    assert_eq!(fired["timer"], id, "{fired}");
    // Ids are the cluster's: another node's next timer has another id.
    let other = ok(
        &mut c,
        "set-timer",
        json!({"delay-ms": 100, "payload": b.id}),
    )
    .await;
    assert_ne!(other, id);
    assert_eq!(b.recv_json().await["timer"], other);

    // Set on node 1, cancelled through node 3: it never fires.
    let id = ok(
        &mut a,
        "set-timer",
        json!({"delay-ms": 700, "payload": b.id}),
    )
    .await;
    assert_eq!(ok(&mut c, "cancel-timer", json!({"id": id})).await, true);
    assert_eq!(ok(&mut a, "cancel-timer", json!({"id": id})).await, false);
    b.expect_silence(Duration::from_millis(1200)).await;

    // Set on node 1, which then stops: another node takes it over and fires it, once.
    let id = ok(
        &mut a,
        "set-timer",
        json!({"delay-ms": 3000, "payload": b.id}),
    )
    .await;
    let set_at = Instant::now();
    drop(a);
    nodes.remove(0).stop().await;
    let fired = b.recv_json_within(Duration::from_secs(10)).await;
    assert_eq!(fired["timer"], id, "{fired}");
    assert!(
        set_at.elapsed() >= Duration::from_millis(2900),
        "fired early: {:?}",
        set_at.elapsed()
    );
    b.expect_silence(Duration::from_secs(1)).await;
    drop(c);
    for n in nodes {
        n.stop().await;
    }
}

/// The quiz with its players on three nodes: one game (its state in the shared store, its
/// countdowns in the shared timers), answers through any node, and a hot reload of `quiz.wasm`
/// on every node mid-question loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiz_runs_across_three_nodes_through_hot_reloads() {
    let redis = RedisServer::start();
    let init = json!({
        "questions": [
            {"text": "Q1", "choices": ["a", "b"], "answer": 0},
            {"text": "Q2", "choices": ["c", "d"], "answer": 1},
        ],
        "questionMs": 5000,
        "pauseMs": 0,
    })
    .to_string();
    let (dirs, nodes) = three_nodes(&redis, "quiz", "quiz", QUIZ, Some(&init)).await;
    // Compile the reload builds once first (slow in test builds), so the reloads are quick.
    for (dir, n) in dirs.iter().zip(&nodes) {
        install_bytes(dir.path(), "quiz-2", &variant(QUIZ, "quiz-2"));
        wait_plugin(n, "quiz-2", "compiled", |p| p["version"].is_string()).await;
        std::fs::remove_file(dir.path().join("quiz-2.wasm")).expect("remove");
        wait_plugin(n, "quiz-2", "unloaded", Value::is_null).await;
    }
    let mut ann = nodes[0].connect("quiz").await;
    let mut bob = nodes[1].connect("quiz").await;
    let mut cid = nodes[2].connect("quiz").await;
    request(&mut bob, "join", json!({"room": "r", "name": "bob"})).await;
    request(&mut cid, "join", json!({"room": "r", "name": "cid"})).await;
    // A name is taken cluster-wide.
    send(&mut ann, "join", json!({"room": "r", "name": "bob"})).await;
    assert_eq!(expect(&mut ann, "join").await["code"], 409);
    let started = request(
        &mut ann,
        "start",
        json!({"room": "r", "name": "ann", "questionMs": 2500}),
    )
    .await;
    assert_eq!(started["questions"], 2);
    for p in [&mut ann, &mut bob, &mut cid] {
        assert_eq!(expect(p, "question").await["data"]["text"], "Q1");
    }
    request(&mut ann, "answer", json!({"choice": 0})).await;
    request(&mut bob, "answer", json!({"choice": 1})).await;

    // Every node reloads the quiz while cid's answer is pending.
    for (dir, n) in dirs.iter().zip(&nodes) {
        hot_reload(n, dir.path(), "quiz", QUIZ, "quiz-2").await;
    }
    request(&mut cid, "answer", json!({"choice": 0})).await;
    // All three answered (through three nodes): the question closes at once.
    let result = expect(&mut bob, "result").await["data"].clone();
    assert_eq!(result["index"], 0, "{result}");
    let (ann1, cid1) = (
        result["scores"]["ann"].as_u64().expect("ann"),
        result["scores"]["cid"].as_u64().expect("cid"),
    );
    assert!(ann1 >= 500 && cid1 >= 500, "{result}");
    assert_eq!(result["scores"]["bob"], 0, "{result}");
    for p in [&mut ann, &mut bob, &mut cid] {
        assert_eq!(expect(p, "question").await["data"]["text"], "Q2");
    }
    // Only bob answers Q2: the deadline timer (set on whichever node closed Q1) ends it.
    request(&mut bob, "answer", json!({"choice": 1})).await;
    let over = expect(&mut cid, "gameover").await["data"].clone();
    let board = over["leaderboard"].as_array().expect("leaderboard").clone();
    let score = |name: &str| {
        board
            .iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["score"].as_u64())
            .unwrap_or_else(|| panic!("{name} on the board: {over}"))
    };
    assert_eq!(score("ann"), ann1);
    assert_eq!(score("cid"), cid1);
    assert!(score("bob") >= 500, "{over}");
    for p in [&mut ann, &mut bob] {
        let other = expect(p, "gameover").await["data"].clone();
        assert_eq!(other, over, "one game, one board");
    }
    for n in &nodes {
        assert_eq!(n.gateway.local_connection_count(), 1, "nobody reconnected");
        let entry = plugin(n, "quiz").await;
        assert_eq!(entry["traps"], 0, "{entry}");
    }
    drop((ann, bob, cid));
    for n in nodes {
        n.stop().await;
    }
}

/// A node that stops gives up its lease at once; it closes its clients but leaves them in the
/// registry, and the node that reaps it announces them: the plugin's `on-close` runs once in
/// the cluster for every client of the stopped node, in a plugin that keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_close_runs_once_in_the_cluster_for_the_clients_of_a_stopping_node() {
    let redis = RedisServer::start();
    let (_dirs, mut nodes) = three_nodes(&redis, "onclose", "hostcalls", HOSTCALLS, None).await;
    let mut watcher = nodes[1].connect("hostcalls").await;
    ok(
        &mut watcher,
        "join-group",
        json!({"group": "close-watchers"}),
    )
    .await;
    let mut leaving = Vec::new();
    for _ in 0..5 {
        leaving.push(nodes[0].connect("hostcalls").await);
    }
    let mut want: Vec<String> = leaving.iter().map(|c| c.id.clone()).collect();
    want.sort();
    // Let the watcher's node subscribe to the group's channel.
    tokio::time::sleep(Duration::from_millis(300)).await;

    nodes.remove(0).stop().await;
    let mut got = Vec::new();
    while got.len() < want.len() {
        let v = watcher.recv_json_within(Duration::from_secs(10)).await;
        if let Some(c) = v["closed"].as_str() {
            got.push(c.to_owned());
        }
    }
    got.sort();
    assert_eq!(got, want, "each client announced once");
    // No second on-close, from either node.
    watcher.expect_silence(Duration::from_secs(3)).await;
    drop(leaving);
    for n in nodes {
        n.stop().await;
    }
}

/// Redis restarts empty while a timer sleeps: its node writes it back (and keeps the id
/// counter past it), so it still fires, once, and a new timer gets a new id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_survives_a_redis_that_lost_its_data() {
    let mut redis = RedisServer::start();
    let (_dirs, nodes) = three_nodes(&redis, "tmrloss", "hostcalls", HOSTCALLS, None).await;
    let mut a = nodes[0].connect("hostcalls").await;
    let mut b = nodes[1].connect("hostcalls").await;
    let id = ok(
        &mut a,
        "set-timer",
        json!({"delay-ms": 4000, "payload": b.id}),
    )
    .await;
    redis.restart();
    // The nodes notice within a ping (1 s) and write back what they hold.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let next = ok(
        &mut a,
        "set-timer",
        json!({"delay-ms": 100, "payload": b.id}),
    )
    .await;
    assert!(
        next.as_u64() > id.as_u64(),
        "ids go on past the timers written back: {next} after {id}"
    );
    assert_eq!(b.recv_json().await["timer"], next);
    let fired = b.recv_json_within(Duration::from_secs(5)).await;
    assert_eq!(fired["timer"], id, "{fired}");
    b.expect_silence(Duration::from_secs(1)).await;
    drop((a, b));
    for n in nodes {
        n.stop().await;
    }
}

/// A client that leaves while Redis is down gets its `on-close` once Redis is back and the
/// client is out of the registry (here Redis came back empty): once, after the outage, so
/// that what the plugin does in it (a send to a group whose members are on other nodes)
/// reaches them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_close_of_a_client_that_left_during_an_outage_waits_for_redis() {
    let mut redis = RedisServer::start();
    let (_dirs, nodes) = three_nodes(&redis, "outclose", "hostcalls", HOSTCALLS, None).await;
    let mut watcher = nodes[1].connect("hostcalls").await;
    ok(
        &mut watcher,
        "join-group",
        json!({"group": "close-watchers"}),
    )
    .await;
    let leaving = nodes[0].connect("hostcalls").await;
    let id = leaving.id.clone();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let _ = redis.child.kill();
    let _ = redis.child.wait();
    // Past the nodes' reconnect attempts, so that the removal fails (it is not held until
    // Redis is back).
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(leaving);
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.restart();

    let v = watcher.recv_json_within(Duration::from_secs(10)).await;
    assert_eq!(v["closed"], id.as_str(), "{v}");
    watcher.expect_silence(Duration::from_secs(2)).await;
    drop(watcher);
    for n in nodes {
        n.stop().await;
    }
}

/// A timer that falls due while Redis is down fires once Redis is back, once: not at once
/// into an outage (where its `on-timer` could not reach a client of another node), and not
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_due_during_an_outage_fires_once_when_redis_is_back() {
    let mut redis = RedisServer::start();
    let (_dirs, nodes) = three_nodes(&redis, "tmrout", "hostcalls", HOSTCALLS, None).await;
    let mut a = nodes[0].connect("hostcalls").await;
    let mut b = nodes[1].connect("hostcalls").await;
    let id = ok(
        &mut a,
        "set-timer",
        json!({"delay-ms": 1000, "payload": b.id}),
    )
    .await;
    let _ = redis.child.kill();
    let _ = redis.child.wait();
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.restart();
    let fired = b.recv_json_within(Duration::from_secs(10)).await;
    assert_eq!(fired["timer"], id, "{fired}");
    b.expect_silence(Duration::from_secs(2)).await;
    drop((a, b));
    for n in nodes {
        n.stop().await;
    }
}
