//! Cluster faults (issue 12): a node stopped with SIGSTOP past its lease, and a Redis restart
//! (without persistence: it comes back empty) under continuous traffic. Real `wasmgate`
//! processes on a `redis-server` of the test's own (free port, never 6379).
#![allow(clippy::unwrap_used, clippy::print_stderr)] // the recovery times are printed for the closing note

mod cluster_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cluster_support::{
    Client, Node, RedisServer, WAIT, eventually, metric_sum, sorted, unique_prefix,
};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn three_nodes(redis: &RedisServer, prefix: &str) -> Vec<Node> {
    (1..=3).map(|id| Node::start(redis, prefix, id)).collect()
}

/// Wait until `node` answers `count` for the group (joins subscribe asynchronously).
async fn room_count(node: &Node, group: &str, count: u64) {
    eventually(&format!("{group} has {count} members"), WAIT, || async {
        node.ok(
            "get_client_count_by_group",
            "app",
            json!({"groupName": group}),
        )
        .await["count"]
            == count
    })
    .await;
}

/// A node stopped for a moment (under its lease) loses nothing. Stopped past it, it is
/// reaped: its client leaves every list within 10 s and the group hears 1002 once. When it
/// wakes, it finds its instance reaped, closes its clients with 1012 (they were announced gone;
/// they reconnect), announces nothing twice, and serves new clients under a new instance that
/// no reaper touches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_is_reaped_and_closes_its_clients_when_it_wakes() {
    let redis = RedisServer::start();
    let nodes = three_nodes(&redis, &unique_prefix("stop"));
    let (n1, n3) = (&nodes[0], &nodes[2]);
    let mut a = n1.connect("app").await;
    let mut c = n3.connect("app").await;
    for x in [&a, &c] {
        n1.ok(
            "join_group",
            "app",
            json!({"clientId": x.id, "groupName": "room"}),
        )
        .await;
    }
    assert_eq!(a.recv_json().await["code"], 1001);
    room_count(n1, "room", 2).await;

    // A short stop, well under the 6 s lease: nothing is reaped, nothing is closed.
    n3.signal("STOP");
    tokio::time::sleep(Duration::from_secs(2)).await;
    n3.signal("CONT");
    n1.ok(
        "send_to_client",
        "app",
        json!({"clientId": c.id, "data": "still here"}),
    )
    .await;
    assert_eq!(c.recv_json().await["data"], "still here");

    // A long stop: reaped by another node.
    let stopped = Instant::now();
    n3.signal("STOP");
    let notice = a.recv_json_within(Duration::from_secs(12)).await;
    let reaped_after = stopped.elapsed();
    assert_eq!(notice["code"], 1002, "{notice}");
    assert_eq!(notice["data"]["clientId"], c.id.as_str());
    assert!(
        reaped_after < Duration::from_secs(10),
        "reaped after {reaped_after:?}"
    );
    assert_eq!(
        n1.ok("get_all_client_count", "app", json!({})).await["count"],
        1
    );

    // It wakes: its client is closed with 1012 (after at most one lease period).
    let woke = Instant::now();
    n3.signal("CONT");
    let close = c.recv_close().await;
    let closed_after = woke.elapsed();
    assert_eq!(close.map(|(code, _)| code), Some(1012));
    eprintln!(
        "stopped node: reaped after {reaped_after:?}, its client closed {closed_after:?} after it woke"
    );
    // Nobody is told twice that c left.
    a.expect_silence(Duration::from_secs(1)).await;

    // New clients of the woken node live under a new instance and are not reaped with the old.
    let mut d = n3.connect("app").await;
    assert_eq!(d.id[..8], c.id[..8], "same node");
    assert_ne!(d.id[..16], c.id[..16], "a new instance");
    n1.ok(
        "join_group",
        "app",
        json!({"clientId": d.id, "groupName": "room"}),
    )
    .await;
    assert_eq!(a.recv_json().await["code"], 1001);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = n1.ok("get_online_list", "app", json!({})).await;
    assert_eq!(sorted(&all["list"]), {
        let mut v = vec![a.id.clone(), d.id.clone()];
        v.sort();
        v
    });
    let mut reaped = 0.0;
    for n in &nodes {
        reaped += metric_sum(
            &n.get("/metrics").await,
            "wasmgate_cluster_reaped_clients_total",
        );
    }
    assert_eq!(reaped, 1.0, "one client reaped, once");
    n1.ok(
        "send_to_client",
        "app",
        json!({"clientId": d.id, "data": "welcome back"}),
    )
    .await;
    assert_eq!(d.recv_json().await["data"], "welcome back");
}

/// What one client saw during the Redis restart test.
#[derive(Debug, Default)]
struct Seen {
    /// The sequence numbers of the group messages, in arrival order.
    seq: Vec<u64>,
    /// Set when the connection closed or failed (it must not).
    ended: Option<String>,
}

/// Read `client` until `until`, noting group messages `m<n>`.
async fn watch(mut client: Client, until: tokio::time::Instant) -> (Client, Seen) {
    let mut seen = Seen::default();
    loop {
        match tokio::time::timeout_at(until, client.ws.next()).await {
            Err(_) => return (client, seen),
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if let Some(n) = v["data"]
                    .as_str()
                    .and_then(|d| d.strip_prefix('m'))
                    .and_then(|n| n.parse().ok())
                {
                    seen.seq.push(n);
                }
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(other) => {
                seen.ended = Some(format!("{other:?}"));
                return (client, seen);
            }
        }
    }
}

/// Redis restarts empty while a group gets a message every 50 ms through node 1. Every client
/// stays connected; each node registers its clients again (uid, groups, info); delivery is back
/// within 5 s of Redis; no message arrives twice or out of order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_under_traffic_disconnects_no_one_and_rebuilds_the_registry() {
    let mut redis = RedisServer::start();
    let nodes = std::sync::Arc::new(three_nodes(&redis, &unique_prefix("restart")));
    let n1 = &nodes[0];
    let mut clients = Vec::new();
    for n in nodes.iter() {
        clients.push(n.connect("app").await);
    }
    let ids: Vec<String> = clients.iter().map(|c| c.id.clone()).collect();
    for (i, id) in ids.iter().enumerate() {
        n1.ok(
            "bind_to_group",
            "app",
            json!({"clientId": id, "groupName": "room", "userId": format!("u{i}")}),
        )
        .await;
    }
    n1.ok("bind_uid", "app", json!({"clientId": ids[1], "uid": "bob"}))
        .await;
    n1.ok(
        "set_info",
        "app",
        json!({"clientId": ids[2], "info": {"seat": "7"}}),
    )
    .await;
    room_count(n1, "room", 3).await;
    // Let the notices of the joins arrive and the copies of the nodes settle.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = tokio::time::Instant::now();
    let until = started + Duration::from_secs(14);
    let watchers: Vec<_> = clients
        .into_iter()
        .map(|c| tokio::spawn(watch(c, until)))
        .collect();
    let sender = {
        let nodes = nodes.clone();
        tokio::spawn(async move {
            let mut sent: BTreeMap<u64, (Instant, u16)> = BTreeMap::new();
            let mut i = 0u64;
            while tokio::time::Instant::now() < until - Duration::from_secs(1) {
                let (status, _) = nodes[0]
                    .api(
                        "send_to_group",
                        "app",
                        json!({"groupName": "room", "data": format!("m{i}")}),
                    )
                    .await;
                sent.insert(i, (Instant::now(), status));
                i += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            sent
        })
    };

    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.restart();
    let back = Instant::now();

    let sent = sender.await.unwrap();
    let mut seen = Vec::new();
    let mut clients = Vec::new();
    for w in watchers {
        let (c, s) = w.await.unwrap();
        clients.push(c);
        seen.push(s);
    }
    for (id, s) in ids.iter().zip(&seen) {
        assert_eq!(s.ended, None, "client {id} was disconnected");
        assert!(
            s.seq.windows(2).all(|w| w[0] < w[1]),
            "client {id} got a message twice or out of order: {:?}",
            s.seq
        );
    }
    // The first send after Redis came back that every client got.
    let delivered_to_all = |n: &u64| seen.iter().all(|s| s.seq.contains(n));
    let first_back = sent
        .iter()
        .find(|(n, (at, _))| *at > back && delivered_to_all(n))
        .map(|(n, (at, _))| (*n, at.duration_since(back)))
        .expect("delivery resumed after the restart");
    assert!(
        first_back.1 < Duration::from_secs(5),
        "delivery resumed {:?} after redis came back",
        first_back.1
    );
    // And from then on every accepted send reached everyone.
    for (n, (_, status)) in sent.range(first_back.0..) {
        if *status == 200 {
            assert!(
                delivered_to_all(n),
                "m{n} was accepted but not delivered to all"
            );
        }
    }
    let before: Vec<_> = sent
        .iter()
        .filter(|(_, (at, _))| *at < back)
        .filter(|(n, (_, status))| *status == 200 && delivered_to_all(n))
        .collect();
    assert!(!before.is_empty(), "traffic flowed before the outage");
    eprintln!(
        "redis restart: delivery back {:?} after redis (m{}), {} sends before, {} in all",
        first_back.1,
        first_back.0,
        before.len(),
        sent.len()
    );

    // The registry was rebuilt from the nodes: counts, groups with member data, uid, info.
    assert_eq!(
        n1.ok("get_all_client_count", "app", json!({})).await["count"],
        3
    );
    let room = nodes[1]
        .ok("get_online_list", "app", json!({"groupName": "room"}))
        .await;
    let mut want = ids.clone();
    want.sort();
    assert_eq!(sorted(&room["list"]), want);
    let bob = nodes[2]
        .ok("get_client_ids_by_uid", "app", json!({"uid": "bob"}))
        .await;
    assert_eq!(sorted(&bob["list"]), vec![ids[1].clone()]);
    let info = n1.ok("get_info", "app", json!({"clientId": ids[2]})).await;
    assert_eq!(info["info"]["seat"], "7", "{info}");

    // The member data survived too: c (node 3) leaving tells the others its userId.
    let mut clients = clients.into_iter();
    let (mut a, mut b, c) = (
        clients.next().unwrap(),
        clients.next().unwrap(),
        clients.next().unwrap(),
    );
    c.close().await;
    for x in [&mut a, &mut b] {
        let notice = x.recv_json().await;
        assert_eq!(notice["code"], 1002, "{notice}");
        assert_eq!(notice["data"]["userId"], "u2", "{notice}");
    }
}

/// A client that leaves while Redis is unreachable gets its `on-close` at once, but cannot be
/// removed from the registry then. Redis comes back with its data (an append-only file): the
/// node removes the client now, and its group hears the offline notice. Before the retry list,
/// it stayed listed for good. The outage outlasts the 6 s leases, and no live node is reaped
/// for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_while_redis_is_down_is_removed_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start_persistent(dir.path());
    let prefix = unique_prefix("retry");
    let nodes: Vec<Node> = (1..=2).map(|id| Node::start(&redis, &prefix, id)).collect();
    let (n1, n2) = (&nodes[0], &nodes[1]);
    let mut a = n1.connect("app").await;
    let b = n2.connect("app").await;
    let b_id = b.id.clone();
    for x in [&a.id, &b_id] {
        n1.ok(
            "join_group",
            "app",
            json!({"clientId": x, "groupName": "room"}),
        )
        .await;
    }
    assert_eq!(a.recv_json().await["code"], 1001);
    room_count(n1, "room", 2).await;

    redis.kill();
    b.close().await;
    // Longer than a lease: every lease expires while Redis is away.
    tokio::time::sleep(Duration::from_secs(7)).await;
    redis.restart();
    let back = Instant::now();

    let notice = a.recv_json_within(Duration::from_secs(10)).await;
    assert_eq!(notice["code"], 1002, "{notice}");
    assert_eq!(notice["data"]["clientId"], b_id.as_str());
    eprintln!(
        "a client that left during the outage was removed {:?} after redis came back",
        back.elapsed()
    );
    room_count(n1, "room", 1).await;
    assert_eq!(
        n2.ok("get_all_client_count", "app", json!({})).await["count"],
        1
    );
    // No live node was taken for dead because its lease expired during the outage.
    tokio::time::sleep(Duration::from_secs(9)).await;
    n2.ok(
        "send_to_client",
        "app",
        json!({"clientId": a.id, "data": "still listed"}),
    )
    .await;
    assert_eq!(a.recv_json().await["data"], "still listed");
    let mut reaped = 0.0;
    for n in &nodes {
        reaped += metric_sum(
            &n.get("/metrics").await,
            "wasmgate_cluster_reaped_clients_total",
        );
    }
    assert_eq!(reaped, 0.0, "no live client was reaped");
}
