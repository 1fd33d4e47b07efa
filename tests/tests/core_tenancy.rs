//! Tenant isolation: an API call with systemId A never sees nor touches clients of system B.
mod common;

use common::TestGateway;
use serde_json::{Value, json};

#[tokio::test]
async fn one_system_cannot_see_or_touch_another_systems_clients() {
    let gw = TestGateway::start(TestGateway::config_with(&["a", "b"])).await;
    let mut a1 = gw.connect("a").await;
    let mut b1 = gw.connect("b").await;
    let b2 = gw.connect("b").await;
    gw.ok(
        "bind_uid",
        "b",
        json!({"clientId": b1.id, "uid": "shared-uid"}),
    )
    .await;
    gw.ok(
        "bind_to_group",
        "b",
        json!({"clientId": b1.id, "groupName": "shared-group"}),
    )
    .await;
    gw.ok(
        "set_info",
        "b",
        json!({"clientId": b1.id, "info": {"secret": "b"}}),
    )
    .await;

    // Every op that names a B client through A is a 404 and does nothing.
    let b = &b1.id;
    let touching: Vec<(&str, Value)> = vec![
        ("send_to_client", json!({"clientId": b, "data": "leak"})),
        ("close_client", json!({"clientId": b, "code": 4000})),
        ("get_info", json!({"clientId": b})),
        ("set_info", json!({"clientId": b, "info": {"x": "y"}})),
        ("update_info", json!({"clientId": b, "info": {"x": "y"}})),
        ("bind_to_group", json!({"clientId": b, "groupName": "g"})),
        (
            "join_group",
            json!({"clientId": b, "groupName": "shared-group"}),
        ),
        (
            "leave_group",
            json!({"clientId": b, "groupName": "shared-group"}),
        ),
        ("bind_uid", json!({"clientId": b, "uid": "u"})),
        ("unbind_uid", json!({"clientId": b})),
        ("get_uid_by_client_id", json!({"clientId": b})),
    ];
    for (op, body) in &touching {
        let (status, answer) = gw.api(op, "a", body.clone()).await;
        assert_eq!(status, 404, "{op} via a: {answer}");
        assert_eq!(answer["code"], 404, "{op} via a: {answer}");
    }

    // Queries and broadcasts through A neither see nor reach B.
    assert_eq!(
        gw.ok("is_online", "a", json!({"clientId": b})).await,
        json!({"online": false})
    );
    let sent = gw
        .ok(
            "send_to_clients",
            "a",
            json!({"clientIds": [b, b2.id, a1.id], "data": "x"}),
        )
        .await;
    assert_eq!(sent["count"], 1);
    let sent = gw.ok("send_to_system", "a", json!({"data": "sys-a"})).await;
    assert_eq!(sent["count"], 1);
    let sent = gw
        .ok(
            "send_to_uid",
            "a",
            json!({"uid": "shared-uid", "data": "x"}),
        )
        .await;
    assert_eq!(sent["count"], 0);
    let (status, _) = gw
        .api(
            "send_to_group",
            "a",
            json!({"groupName": "shared-group", "data": "x"}),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        gw.ok("get_online_list", "a", json!({})).await,
        json!({"count": 1, "list": [a1.id]})
    );
    assert_eq!(
        gw.ok("get_online_list", "a", json!({"groupName": "shared-group"}))
            .await,
        json!({"count": 0, "list": []})
    );
    assert_eq!(
        gw.ok("get_all_client_count", "a", json!({})).await,
        json!({"count": 1})
    );
    assert_eq!(
        gw.ok("get_all_groups", "a", json!({})).await,
        json!({"count": 0, "list": []})
    );
    assert_eq!(
        gw.ok("get_all_uid", "a", json!({})).await,
        json!({"count": 0, "list": []})
    );
    assert_eq!(
        gw.ok("is_uid_online", "a", json!({"uid": "shared-uid"}))
            .await,
        json!({"online": false})
    );
    assert_eq!(
        gw.ok(
            "get_client_ids_by_group",
            "a",
            json!({"groupName": "shared-group"})
        )
        .await,
        json!({"count": 0, "list": []})
    );

    // B is intact: same groups, uid, info; its clients got none of A's messages.
    assert_eq!(
        gw.ok("get_info", "b", json!({"clientId": b})).await,
        json!({"info": {"secret": "b"}})
    );
    assert_eq!(
        gw.ok("get_uid_by_client_id", "b", json!({"clientId": b}))
            .await,
        json!({"uid": "shared-uid"})
    );
    assert_eq!(
        gw.ok(
            "get_client_ids_by_group",
            "b",
            json!({"groupName": "shared-group"})
        )
        .await,
        json!({"count": 1, "list": [b]})
    );
    assert_eq!(
        gw.ok("get_all_client_count", "b", json!({})).await,
        json!({"count": 2})
    );
    gw.ok(
        "send_to_client",
        "b",
        json!({"clientId": b, "data": "marker"}),
    )
    .await;
    assert_eq!(b1.recv_json().await["data"], "marker");
    assert_eq!(a1.recv_json().await["data"], "x");
    assert_eq!(a1.recv_json().await["data"], "sys-a");
    gw.stop().await;
}

#[tokio::test]
async fn same_group_names_in_two_systems_are_separate_groups() {
    let gw = TestGateway::start(TestGateway::config_with(&["a", "b"])).await;
    let mut a1 = gw.connect("a").await;
    let mut b1 = gw.connect("b").await;
    gw.ok(
        "join_group",
        "a",
        json!({"clientId": a1.id, "groupName": "room"}),
    )
    .await;
    gw.ok(
        "join_group",
        "b",
        json!({"clientId": b1.id, "groupName": "room"}),
    )
    .await;
    // No cross-system online notice: each is alone in its own "room".
    let sent = gw
        .ok(
            "send_to_group",
            "a",
            json!({"groupName": "room", "data": "to-a"}),
        )
        .await;
    assert_eq!(sent["count"], 1);
    assert_eq!(a1.recv_json().await["data"], "to-a");
    let sent = gw
        .ok(
            "send_to_group",
            "b",
            json!({"groupName": "room", "data": "to-b"}),
        )
        .await;
    assert_eq!(sent["count"], 1);
    assert_eq!(b1.recv_json().await["data"], "to-b");

    // A disconnecting client of a does not notify b's room.
    let a2 = gw.connect("a").await;
    gw.ok(
        "join_group",
        "a",
        json!({"clientId": a2.id, "groupName": "room"}),
    )
    .await;
    assert_eq!(a1.recv_json().await["code"], 1001);
    a2.close().await;
    assert_eq!(a1.recv_json().await["code"], 1002);
    gw.ok(
        "send_to_client",
        "b",
        json!({"clientId": b1.id, "data": "marker"}),
    )
    .await;
    assert_eq!(b1.recv_json().await["data"], "marker");
    gw.stop().await;
}
