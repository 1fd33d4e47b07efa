//! Every HTTP API operation, end to end, with the exact shape of its answer and of what clients
//! receive.
mod common;

use std::collections::BTreeSet;

use common::{TestGateway, sorted};
use serde_json::{Value, json};

fn ids(list: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

/// Assert `data` is `{"messageId": <32 hex>, "count": count}` and return the message id.
fn sent(data: &Value, count: u64) -> String {
    assert_eq!(data["count"], count, "send answer: {data}");
    let id = data["messageId"].as_str().expect("messageId").to_owned();
    assert_eq!(id.len(), 32, "messageId: {id}");
    assert_eq!(data.as_object().map(|o| o.len()), Some(2), "{data}");
    id
}

#[tokio::test]
async fn register_creates_a_system_clients_can_then_join() {
    let gw = TestGateway::start(TestGateway::config_with(&["app"])).await;
    let data = gw.ok("register", "", json!({"systemId": "fresh"})).await;
    assert_eq!(data, json!({"created": true}));
    let again = gw.ok("register", "", json!({"systemId": "fresh"})).await;
    assert_eq!(again, json!({"created": false}));
    let declared = gw.ok("register", "", json!({"systemId": "app"})).await;
    assert_eq!(declared, json!({"created": false}));

    let mut c = gw.connect("fresh").await;
    let count = gw.ok("get_all_client_count", "fresh", json!({})).await;
    assert_eq!(count, json!({"count": 1}));
    gw.ok(
        "send_to_client",
        "fresh",
        json!({"clientId": c.id, "data": "hi"}),
    )
    .await;
    assert_eq!(c.recv_json().await["data"], "hi");
    gw.stop().await;
}

#[tokio::test]
async fn pushed_envelopes_carry_data_unchanged() {
    let gw = TestGateway::start(TestGateway::config_with(&["app"])).await;
    let mut a = gw.connect("app").await;
    let payloads = [
        json!("plain string"),
        json!([1, "two", {"three": 3}, null, true]),
        json!({"nested": {"deep": [1.5, -2]}, "unicode": "héllo ✓", "empty": {}}),
        json!(42),
        json!(null),
    ];
    for data in payloads {
        let answer = gw
            .ok(
                "send_to_client",
                "app",
                json!({"clientId": a.id, "sendUserId": "u-1", "code": 200, "msg": "m", "data": data}),
            )
            .await;
        let id = sent(&answer, 1);
        let got = a.recv_json().await;
        assert_eq!(
            got,
            json!({"messageId": id, "sendUserId": "u-1", "code": 200, "msg": "m", "data": data})
        );
    }
    // Omitted envelope fields take defaults.
    let answer = gw
        .ok("send_to_client", "app", json!({"clientId": a.id}))
        .await;
    let id = sent(&answer, 1);
    assert_eq!(
        a.recv_json().await,
        json!({"messageId": id, "sendUserId": "", "code": 0, "msg": "", "data": null})
    );
    gw.stop().await;
}

#[tokio::test]
async fn send_to_clients_system_all_and_uid_reach_exactly_their_targets() {
    let gw = TestGateway::start(TestGateway::config_with(&["app"])).await;
    let mut a = gw.connect("app").await;
    let mut b = gw.connect("app").await;
    let mut c = gw.connect("app").await;

    // send_to_clients: unknown ids are skipped and not counted.
    let answer = gw
        .ok(
            "send_to_clients",
            "app",
            json!({"clientIds": [a.id, c.id, "00000000000000000000000000000000"], "data": "ac"}),
        )
        .await;
    let id_ac = sent(&answer, 2);

    // send_to_system and its alias send_to_all reach everyone.
    let answer = gw.ok("send_to_system", "app", json!({"data": "sys"})).await;
    let id_sys = sent(&answer, 3);
    let answer = gw.ok("send_to_all", "app", json!({"data": "all"})).await;
    let id_all = sent(&answer, 3);

    // send_to_uid reaches every client bound to the uid.
    gw.ok("bind_uid", "app", json!({"clientId": a.id, "uid": "alice"}))
        .await;
    gw.ok("bind_uid", "app", json!({"clientId": b.id, "uid": "alice"}))
        .await;
    let answer = gw
        .ok("send_to_uid", "app", json!({"uid": "alice", "data": "uid"}))
        .await;
    let id_uid = sent(&answer, 2);
    let answer = gw
        .ok("send_to_uid", "app", json!({"uid": "nobody", "data": "x"}))
        .await;
    sent(&answer, 0);

    let mut got_a = Vec::new();
    for _ in 0..4 {
        let m = a.recv_json().await;
        got_a.push((
            m["messageId"].as_str().expect("messageId").to_owned(),
            m["data"].clone(),
        ));
    }
    assert_eq!(
        got_a,
        vec![
            (id_ac.clone(), json!("ac")),
            (id_sys.clone(), json!("sys")),
            (id_all.clone(), json!("all")),
            (id_uid.clone(), json!("uid")),
        ]
    );
    let mut got_b = Vec::new();
    for _ in 0..3 {
        got_b.push(b.recv_json().await["data"].clone());
    }
    assert_eq!(got_b, vec![json!("sys"), json!("all"), json!("uid")]);
    let mut got_c = Vec::new();
    for _ in 0..3 {
        got_c.push(c.recv_json().await["data"].clone());
    }
    assert_eq!(got_c, vec![json!("ac"), json!("sys"), json!("all")]);

    // Every message id is distinct.
    let all: BTreeSet<_> = [id_ac, id_sys, id_all, id_uid].into_iter().collect();
    assert_eq!(all.len(), 4);

    // Nothing else is pending for c: the next thing it gets is this marker.
    gw.ok(
        "send_to_client",
        "app",
        json!({"clientId": c.id, "data": "end"}),
    )
    .await;
    assert_eq!(c.recv_json().await["data"], "end");
    gw.stop().await;
}

#[tokio::test]
async fn groups_membership_queries_and_send_to_group() {
    let gw = TestGateway::start(TestGateway::config_with(&["app"])).await;
    let mut a = gw.connect("app").await;
    let mut b = gw.connect("app").await;
    let mut c = gw.connect("app").await;

    let data = gw
        .ok(
            "bind_to_group",
            "app",
            json!({"clientId": a.id, "groupName": "room", "userId": "ua", "extend": "ea"}),
        )
        .await;
    assert_eq!(data, json!({}));
    let data = gw
        .ok(
            "join_group",
            "app",
            json!({"clientId": b.id, "groupName": "room"}),
        )
        .await;
    assert_eq!(data, json!({}));
    gw.ok(
        "join_group",
        "app",
        json!({"clientId": c.id, "groupName": "other"}),
    )
    .await;
    // a gets b's online notice.
    assert_eq!(a.recv_json().await["code"], 1001);

    let groups = gw.ok("get_all_groups", "app", json!({})).await;
    assert_eq!(groups, json!({"count": 2, "list": ["other", "room"]}));

    let members = gw
        .ok(
            "get_client_ids_by_group",
            "app",
            json!({"groupName": "room"}),
        )
        .await;
    assert_eq!(members["count"], 2);
    assert_eq!(sorted(&members["list"]), ids(&[&a.id, &b.id]));
    let count = gw
        .ok(
            "get_client_count_by_group",
            "app",
            json!({"groupName": "room"}),
        )
        .await;
    assert_eq!(count, json!({"count": 2}));
    let empty = gw
        .ok(
            "get_client_count_by_group",
            "app",
            json!({"groupName": "nope"}),
        )
        .await;
    assert_eq!(empty, json!({"count": 0}));

    // get_online_list: the whole system, or one group.
    let all = gw.ok("get_online_list", "app", json!({})).await;
    assert_eq!(all["count"], 3);
    assert_eq!(sorted(&all["list"]), ids(&[&a.id, &b.id, &c.id]));
    let room = gw
        .ok("get_online_list", "app", json!({"groupName": "room"}))
        .await;
    assert_eq!(room["count"], 2);
    assert_eq!(sorted(&room["list"]), ids(&[&a.id, &b.id]));

    // uids of a group.
    gw.ok("bind_uid", "app", json!({"clientId": a.id, "uid": "alice"}))
        .await;
    gw.ok("bind_uid", "app", json!({"clientId": b.id, "uid": "bob"}))
        .await;
    gw.ok("bind_uid", "app", json!({"clientId": c.id, "uid": "alice"}))
        .await;
    let uids = gw
        .ok("get_uids_by_group", "app", json!({"groupName": "room"}))
        .await;
    assert_eq!(uids, json!({"count": 2, "list": ["alice", "bob"]}));
    let n = gw
        .ok(
            "get_uid_count_by_group",
            "app",
            json!({"groupName": "room"}),
        )
        .await;
    assert_eq!(n, json!({"count": 2}));

    // send_to_group reaches the members only.
    let answer = gw
        .ok(
            "send_to_group",
            "app",
            json!({"groupName": "room", "code": 5, "msg": "g", "data": {"k": "v"}}),
        )
        .await;
    let id = sent(&answer, 2);
    for client in [&mut a, &mut b] {
        let m = client.recv_json().await;
        assert_eq!(m["messageId"], id.as_str());
        assert_eq!(m["data"], json!({"k": "v"}));
        assert_eq!(m["code"], 5);
    }
    gw.ok(
        "send_to_client",
        "app",
        json!({"clientId": c.id, "data": "marker"}),
    )
    .await;
    assert_eq!(c.recv_json().await["data"], "marker", "c is not in room");

    // leave_group: the group shrinks, then disappears with its last member.
    let data = gw
        .ok(
            "leave_group",
            "app",
            json!({"clientId": b.id, "groupName": "room"}),
        )
        .await;
    assert_eq!(data, json!({}));
    let room = gw
        .ok(
            "get_client_ids_by_group",
            "app",
            json!({"groupName": "room"}),
        )
        .await;
    assert_eq!(room, json!({"count": 1, "list": [a.id]}));
    gw.ok(
        "leave_group",
        "app",
        json!({"clientId": a.id, "groupName": "room"}),
    )
    .await;
    let groups = gw.ok("get_all_groups", "app", json!({})).await;
    assert_eq!(groups, json!({"count": 1, "list": ["other"]}));
    gw.stop().await;
}

#[tokio::test]
async fn uid_binding_queries() {
    let gw = TestGateway::start(TestGateway::config_with(&["app"])).await;
    let a = gw.connect("app").await;
    let b = gw.connect("app").await;

    assert_eq!(
        gw.ok("get_uid_by_client_id", "app", json!({"clientId": a.id}))
            .await,
        json!({"uid": null})
    );
    assert_eq!(
        gw.ok("is_uid_online", "app", json!({"uid": "alice"})).await,
        json!({"online": false})
    );
    let data = gw
        .ok("bind_uid", "app", json!({"clientId": a.id, "uid": "alice"}))
        .await;
    assert_eq!(data, json!({}));
    gw.ok("bind_uid", "app", json!({"clientId": b.id, "uid": "alice"}))
        .await;
    assert_eq!(
        gw.ok("get_uid_by_client_id", "app", json!({"clientId": a.id}))
            .await,
        json!({"uid": "alice"})
    );
    assert_eq!(
        gw.ok("is_uid_online", "app", json!({"uid": "alice"})).await,
        json!({"online": true})
    );
    let by_uid = gw
        .ok("get_client_ids_by_uid", "app", json!({"uid": "alice"}))
        .await;
    assert_eq!(by_uid["count"], 2);
    assert_eq!(sorted(&by_uid["list"]), ids(&[&a.id, &b.id]));
    assert_eq!(
        gw.ok("get_all_uid", "app", json!({})).await,
        json!({"count": 1, "list": ["alice"]})
    );

    // Rebinding moves the client to the new uid.
    gw.ok("bind_uid", "app", json!({"clientId": b.id, "uid": "bob"}))
        .await;
    assert_eq!(
        gw.ok("get_all_uid", "app", json!({})).await,
        json!({"count": 2, "list": ["alice", "bob"]})
    );
    assert_eq!(
        gw.ok("get_client_ids_by_uid", "app", json!({"uid": "alice"}))
            .await,
        json!({"count": 1, "list": [a.id]})
    );

    let data = gw.ok("unbind_uid", "app", json!({"clientId": a.id})).await;
    assert_eq!(data, json!({}));
    assert_eq!(
        gw.ok("is_uid_online", "app", json!({"uid": "alice"})).await,
        json!({"online": false})
    );
    assert_eq!(
        gw.ok("get_uid_by_client_id", "app", json!({"clientId": a.id}))
            .await,
        json!({"uid": null})
    );
    assert_eq!(
        gw.ok("get_all_uid", "app", json!({})).await,
        json!({"count": 1, "list": ["bob"]})
    );
    gw.stop().await;
}

#[tokio::test]
async fn presence_counts_and_info() {
    let gw = TestGateway::start(TestGateway::config_with(&["app"])).await;
    let a = gw.connect("app").await;
    let b = gw.connect("app").await;

    assert_eq!(
        gw.ok("get_all_client_count", "app", json!({})).await,
        json!({"count": 2})
    );
    assert_eq!(
        gw.ok("is_online", "app", json!({"clientId": a.id})).await,
        json!({"online": true})
    );
    assert_eq!(
        gw.ok(
            "is_online",
            "app",
            json!({"clientId": "00000000000000000000000000000000"})
        )
        .await,
        json!({"online": false})
    );

    assert_eq!(
        gw.ok("get_info", "app", json!({"clientId": a.id})).await,
        json!({"info": {}})
    );
    let data = gw
        .ok(
            "set_info",
            "app",
            json!({"clientId": a.id, "info": {"name": "Ann", "role": "admin"}}),
        )
        .await;
    assert_eq!(data, json!({}));
    assert_eq!(
        gw.ok("get_info", "app", json!({"clientId": a.id})).await,
        json!({"info": {"name": "Ann", "role": "admin"}})
    );
    let data = gw
        .ok(
            "update_info",
            "app",
            json!({"clientId": a.id, "info": {"role": "user", "lang": "fr"}}),
        )
        .await;
    assert_eq!(data, json!({}));
    assert_eq!(
        gw.ok("get_info", "app", json!({"clientId": a.id})).await,
        json!({"info": {"name": "Ann", "role": "user", "lang": "fr"}})
    );
    // set_info replaces the whole map.
    gw.ok(
        "set_info",
        "app",
        json!({"clientId": a.id, "info": {"only": "this"}}),
    )
    .await;
    assert_eq!(
        gw.ok("get_info", "app", json!({"clientId": a.id})).await,
        json!({"info": {"only": "this"}})
    );
    // Info is per client.
    assert_eq!(
        gw.ok("get_info", "app", json!({"clientId": b.id})).await,
        json!({"info": {}})
    );

    b.close().await;
    common::eventually("b leaves the count", || async {
        gw.ok("get_all_client_count", "app", json!({})).await == json!({"count": 1})
    })
    .await;
    assert_eq!(
        gw.ok("is_online", "app", json!({"clientId": a.id})).await,
        json!({"online": true})
    );
    gw.stop().await;
}

#[tokio::test]
async fn close_client_sends_code_and_reason_after_queued_messages() {
    let gw = TestGateway::start(TestGateway::config_with(&["app"])).await;
    let mut a = gw.connect("app").await;
    let b = gw.connect("app").await;

    gw.ok(
        "send_to_client",
        "app",
        json!({"clientId": a.id, "data": "last words"}),
    )
    .await;
    let data = gw
        .ok(
            "close_client",
            "app",
            json!({"clientId": a.id, "code": 4001, "reason": "kicked by admin"}),
        )
        .await;
    assert_eq!(data, json!({}));
    assert_eq!(a.recv_json().await["data"], "last words");
    assert_eq!(
        a.recv_close().await,
        Some((4001, "kicked by admin".to_owned()))
    );
    common::eventually("a is offline", || async {
        gw.ok("is_online", "app", json!({"clientId": a.id})).await == json!({"online": false})
    })
    .await;

    // Default code 1000 and an empty reason.
    let mut b = b;
    gw.ok("close_client", "app", json!({"clientId": b.id}))
        .await;
    assert_eq!(b.recv_close().await, Some((1000, String::new())));

    // Closing a client that is gone is a 404.
    common::eventually("b is offline", || async {
        gw.api("close_client", "app", json!({"clientId": b.id}))
            .await
            .0
            == 404
    })
    .await;
    gw.stop().await;
}

#[tokio::test]
async fn close_codes_at_the_edges_and_long_reasons() {
    let gw = TestGateway::start(TestGateway::config_with(&["app"])).await;
    for code in [3000u16, 4999] {
        let mut c = gw.connect("app").await;
        gw.ok(
            "close_client",
            "app",
            json!({"clientId": c.id, "code": code, "reason": "edge"}),
        )
        .await;
        assert_eq!(c.recv_close().await, Some((code, "edge".to_owned())));
    }
    // A reason longer than a close frame allows (123 bytes) is cut on a character boundary;
    // the client (which checks UTF-8 and length) still gets a valid close frame.
    let mut c = gw.connect("app").await;
    let long = "é".repeat(100);
    gw.ok(
        "close_client",
        "app",
        json!({"clientId": c.id, "code": 4000, "reason": long}),
    )
    .await;
    let (code, reason) = c.recv_close().await.expect("a close frame");
    assert_eq!(code, 4000);
    assert_eq!(reason, "é".repeat(61));
    gw.stop().await;
}
