//! Group online/offline notices: 1001 to the group's other members when a client joins,
//! 1002 when it leaves or disconnects, each with `{clientId, userId, extend}`.
mod common;

use common::{TestGateway, eventually};
use serde_json::{Value, json};

fn assert_notice(got: &Value, code: i64, msg: &str, client: &str, user: &str, extend: &str) {
    assert_eq!(got["code"], code, "notice: {got}");
    assert_eq!(got["msg"], msg, "notice: {got}");
    assert_eq!(
        got["data"],
        json!({"clientId": client, "userId": user, "extend": extend}),
        "notice: {got}"
    );
    assert_eq!(got["messageId"].as_str().map(str::len), Some(32), "{got}");
    assert_eq!(got["sendUserId"], "", "{got}");
}

/// The next message `c` gets must be a marker sent now: proves nothing else was queued to it.
async fn assert_nothing_pending(gw: &TestGateway, c: &mut common::Client) {
    gw.ok(
        "send_to_client",
        "app",
        json!({"clientId": c.id, "data": "marker"}),
    )
    .await;
    let got = c.recv_json().await;
    assert_eq!(got["data"], "marker", "unexpected message: {got}");
}

#[tokio::test]
async fn joining_notifies_the_other_members_only() {
    let gw = TestGateway::start(TestGateway::config_with(&["app"])).await;
    let mut a = gw.connect("app").await;
    let mut b = gw.connect("app").await;
    let mut c = gw.connect("app").await;
    let mut outsider = gw.connect("app").await;

    gw.ok(
        "bind_to_group",
        "app",
        json!({"clientId": a.id, "groupName": "room", "userId": "ua", "extend": "{\"x\":1}"}),
    )
    .await;
    // Alone in the group: a gets no notice about itself.
    assert_nothing_pending(&gw, &mut a).await;

    gw.ok(
        "bind_to_group",
        "app",
        json!({"clientId": b.id, "groupName": "room", "userId": "ub", "extend": "eb"}),
    )
    .await;
    assert_notice(&a.recv_json().await, 1001, "online", &b.id, "ub", "eb");
    assert_nothing_pending(&gw, &mut b).await;

    gw.ok(
        "join_group",
        "app",
        json!({"clientId": c.id, "groupName": "room"}),
    )
    .await;
    for member in [&mut a, &mut b] {
        assert_notice(&member.recv_json().await, 1001, "online", &c.id, "", "");
    }
    assert_nothing_pending(&gw, &mut c).await;

    // Joining again is not a new membership: no second notice.
    gw.ok(
        "bind_to_group",
        "app",
        json!({"clientId": c.id, "groupName": "room", "userId": "uc2"}),
    )
    .await;
    assert_nothing_pending(&gw, &mut a).await;
    assert_nothing_pending(&gw, &mut outsider).await;
    gw.stop().await;
}

#[tokio::test]
async fn leaving_and_disconnecting_notify_the_remaining_members() {
    let gw = TestGateway::start(TestGateway::config_with(&["app"])).await;
    let mut a = gw.connect("app").await;
    let mut b = gw.connect("app").await;
    let c = gw.connect("app").await;
    for (client, user) in [(&a.id, "ua"), (&b.id, "ub"), (&c.id, "uc")] {
        gw.ok(
            "bind_to_group",
            "app",
            json!({"clientId": client, "groupName": "room", "userId": user, "extend": format!("ext-{user}")}),
        )
        .await;
    }
    // Drain the online notices: a saw b and c, b saw c.
    assert_eq!(a.recv_json().await["data"]["clientId"], b.id.as_str());
    assert_eq!(a.recv_json().await["data"]["clientId"], c.id.as_str());
    assert_eq!(b.recv_json().await["data"]["clientId"], c.id.as_str());

    // leave_group: 1002 with the member data given at join time.
    gw.ok(
        "leave_group",
        "app",
        json!({"clientId": b.id, "groupName": "room"}),
    )
    .await;
    assert_notice(&a.recv_json().await, 1002, "offline", &b.id, "ub", "ext-ub");
    // b left: it gets nothing about its own leaving.
    assert_nothing_pending(&gw, &mut b).await;

    // Disconnect: the remaining member a gets 1002 for c; b (no longer a member) gets nothing.
    let c_id = c.id.clone();
    c.close().await;
    assert_notice(&a.recv_json().await, 1002, "offline", &c_id, "uc", "ext-uc");
    assert_nothing_pending(&gw, &mut b).await;

    // A client in two groups that drops: each group's members hear once.
    let mut d = gw.connect("app").await;
    let e = gw.connect("app").await;
    gw.ok(
        "join_group",
        "app",
        json!({"clientId": d.id, "groupName": "g2"}),
    )
    .await;
    gw.ok(
        "join_group",
        "app",
        json!({"clientId": e.id, "groupName": "room", "userId": "ue"}),
    )
    .await;
    gw.ok(
        "join_group",
        "app",
        json!({"clientId": e.id, "groupName": "g2", "userId": "ue"}),
    )
    .await;
    assert_notice(&a.recv_json().await, 1001, "online", &e.id, "ue", "");
    assert_notice(&d.recv_json().await, 1001, "online", &e.id, "ue", "");
    let e_id = e.id.clone();
    drop(e); // abrupt: TCP closed without a close frame
    assert_notice(&a.recv_json().await, 1002, "offline", &e_id, "ue", "");
    assert_notice(&d.recv_json().await, 1002, "offline", &e_id, "ue", "");
    assert_nothing_pending(&gw, &mut a).await;
    assert_nothing_pending(&gw, &mut d).await;
    let groups = gw.ok("get_all_groups", "app", json!({})).await;
    assert_eq!(groups, json!({"count": 2, "list": ["g2", "room"]}));
    gw.stop().await;
}

#[tokio::test]
async fn a_system_can_turn_group_notices_off() {
    let mut config = TestGateway::config_with(&["app"]);
    config
        .systems
        .get_mut("app")
        .expect("system app configured")
        .group_notices = false;
    let gw = TestGateway::start(config).await;
    let mut a = gw.connect("app").await;
    let b = gw.connect("app").await;
    let c = gw.connect("app").await;
    for id in [&a.id, &b.id, &c.id] {
        gw.ok(
            "bind_to_group",
            "app",
            json!({"clientId": id, "groupName": "room"}),
        )
        .await;
    }
    // b leaves the group; c disconnects while still a member (with notices on, a would get a
    // 1002 for each).
    gw.ok(
        "leave_group",
        "app",
        json!({"clientId": b.id, "groupName": "room"}),
    )
    .await;
    c.close().await;
    let only_a = json!([a.id]);
    eventually("c's disconnect is handled", || async {
        gw.ok(
            "get_client_ids_by_group",
            "app",
            json!({"groupName": "room"}),
        )
        .await["list"]
            == only_a
    })
    .await;
    // Neither the joins, nor b's leave, nor c's disconnect reached a.
    assert_nothing_pending(&gw, &mut a).await;
    drop(b);
    gw.stop().await;
}
