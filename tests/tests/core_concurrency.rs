//! Many API callers and clients at once, on a multi-threaded runtime: the registry stays
//! consistent and every notice and message is delivered exactly once.
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::TestGateway;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_joins_sends_and_leaves_stay_consistent() {
    let gw = Arc::new(TestGateway::start(TestGateway::config_with(&["app"])).await);
    let mut clients = Vec::new();
    for _ in 0..24 {
        clients.push(gw.connect("app").await);
    }
    let ids: Vec<String> = clients.iter().map(|c| c.id.clone()).collect();

    // 24 concurrent joins to one group (and a uid each), from separate tasks.
    let mut joins = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let gw = gw.clone();
        let id = id.clone();
        joins.push(tokio::spawn(async move {
            gw.ok(
                "bind_uid",
                "app",
                json!({"clientId": id, "uid": format!("u{}", i % 6)}),
            )
            .await;
            gw.ok(
                "bind_to_group",
                "app",
                json!({"clientId": id, "groupName": "room", "userId": format!("user{i}")}),
            )
            .await;
        }));
    }
    for j in joins {
        j.await.expect("join task");
    }
    assert_eq!(
        gw.ok(
            "get_client_count_by_group",
            "app",
            json!({"groupName": "room"})
        )
        .await,
        json!({"count": 24})
    );
    assert_eq!(
        gw.ok(
            "get_uid_count_by_group",
            "app",
            json!({"groupName": "room"})
        )
        .await,
        json!({"count": 6})
    );

    // 10 concurrent group sends.
    let mut sends = Vec::new();
    for n in 0..10 {
        let gw = gw.clone();
        sends.push(tokio::spawn(async move {
            let data = gw
                .ok(
                    "send_to_group",
                    "app",
                    json!({"groupName": "room", "data": n}),
                )
                .await;
            assert_eq!(data["count"], 24);
        }));
    }
    for s in sends {
        s.await.expect("send task");
    }

    // Each client got one online notice per member that joined after it, and each group
    // message exactly once, whatever the interleaving.
    let mut readers = Vec::new();
    for mut c in clients {
        readers.push(tokio::spawn(async move {
            let mut data = BTreeMap::new();
            let mut notices = 0;
            while data.len() < 10 {
                let m = c.recv_json().await;
                if m["code"] == 1001 {
                    notices += 1;
                } else {
                    assert!(
                        data.insert(m["data"].as_i64().expect("n"), ()).is_none(),
                        "dup {m}"
                    );
                }
            }
            (c, notices)
        }));
    }
    let mut total_notices = 0;
    let mut clients = Vec::new();
    for r in readers {
        let (c, notices) = r.await.expect("reader");
        total_notices += notices;
        clients.push(c);
    }
    // The k-th joiner notified the k-1 members before it: 0 + 1 + ... + 23.
    assert_eq!(total_notices, 24 * 23 / 2);

    // Half leave concurrently (half by leave_group, half by disconnecting).
    let leavers: Vec<_> = clients.drain(..12).collect();
    let mut tasks = Vec::new();
    for (i, c) in leavers.into_iter().enumerate() {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                gw.ok(
                    "leave_group",
                    "app",
                    json!({"clientId": c.id, "groupName": "room"}),
                )
                .await;
                Some(c) // stays connected
            } else {
                c.close().await;
                None
            }
        }));
    }
    let mut stayed = Vec::new();
    for t in tasks {
        stayed.extend(t.await.expect("leave task"));
    }
    common::eventually("12 left the room", || async {
        gw.ok(
            "get_client_count_by_group",
            "app",
            json!({"groupName": "room"}),
        )
        .await
            == json!({"count": 12})
    })
    .await;
    common::eventually("6 disconnected", || async {
        gw.ok("get_all_client_count", "app", json!({})).await == json!({"count": 18})
    })
    .await;
    // Each remaining member hears exactly 12 offline notices, then the marker.
    for c in &mut clients {
        let mut offline = 0;
        loop {
            let m = c.recv_json().await;
            if m["code"] == 1002 {
                offline += 1;
                if offline == 12 {
                    break;
                }
            } else {
                panic!("unexpected {m}");
            }
        }
        gw.ok(
            "send_to_client",
            "app",
            json!({"clientId": c.id, "data": "end"}),
        )
        .await;
        assert_eq!(c.recv_json().await["data"], "end");
    }
    drop(clients);
    drop(stayed);
    match Arc::try_unwrap(gw) {
        Ok(gw) => gw.stop().await,
        Err(_) => panic!("gateway still shared"),
    }
}
