//! Caps on what API callers can make the gateway hold (issue 10, point 5): names, groups per
//! client and per system, info entries and bytes, systems, and `unregister` with its metric
//! series. Every answer names the limit it hit. No socket: `app()` with `oneshot`.
mod oneshot;

use oneshot::App;
use serde_json::{Value, json};
use wasmgate::Config;

fn limited() -> Config {
    let mut config = App::config_with(&["app"]);
    config.limits.max_name_bytes = 16;
    config.limits.max_groups_per_client = 3;
    config.limits.max_groups_per_system = 5;
    config.limits.max_info_entries = 4;
    config.limits.max_info_bytes = 64;
    config.limits.max_systems = 3;
    config
}

fn join(client: &str, group: &str) -> Value {
    json!({"clientId": client, "groupName": group})
}

#[tokio::test]
async fn names_over_max_name_bytes_are_400_in_every_op_that_takes_one() {
    let app = App::new(limited()).await;
    let (c, _rx) = app.client("app").await;
    let long = "g".repeat(17);
    let calls = [
        ("bind_to_group", join(&c, &long)),
        ("join_group", join(&c, &long)),
        ("send_to_group", json!({"groupName": long})),
        ("get_client_ids_by_group", json!({"groupName": long})),
        ("get_online_list", json!({"groupName": long})),
        ("bind_uid", json!({"clientId": c, "uid": long})),
        ("send_to_uid", json!({"uid": long})),
        ("is_uid_online", json!({"uid": long})),
    ];
    for (op, body) in calls {
        let a = app.call(op, "app", body).await;
        assert_eq!(a.status, 400, "{op}: {}", a.text);
        assert!(a.is_error_json(), "{op}: {}", a.text);
        assert!(
            a.msg().contains("limits.max_name_bytes"),
            "{op}: {}",
            a.text
        );
    }
    let a = app
        .raw("register", None, json!({"systemId": long}).to_string())
        .await;
    assert_eq!(a.status, 400, "{}", a.text);
    // The header too: a 17-byte systemId is refused before any lookup.
    let a = app.call("get_all_client_count", &long, json!({})).await;
    assert_eq!(a.status, 400, "{}", a.text);
    // At the limit is fine.
    app.ok("join_group", "app", join(&c, &"g".repeat(16))).await;
    assert_eq!(app.ok("get_all_groups", "app", json!({})).await["count"], 1);
}

#[tokio::test]
async fn groups_per_client_are_capped_with_429() {
    let app = App::new(limited()).await;
    let (c, _rx) = app.client("app").await;
    for g in ["a", "b", "c"] {
        app.ok("join_group", "app", join(&c, g)).await;
    }
    // Joining a group it is in already costs nothing.
    app.ok("bind_to_group", "app", join(&c, "a")).await;
    let a = app.call("join_group", "app", join(&c, "d")).await;
    assert_eq!(a.status, 429, "{}", a.text);
    assert!(a.is_error_json());
    assert!(
        a.msg().contains("limits.max_groups_per_client"),
        "{}",
        a.text
    );
    // Leaving frees a slot.
    app.ok("leave_group", "app", join(&c, "a")).await;
    app.ok("join_group", "app", join(&c, "d")).await;
}

#[tokio::test]
async fn groups_per_system_are_capped_with_429_and_freed_when_they_empty() {
    let app = App::new(limited()).await;
    let (a, _ra) = app.client("app").await;
    let (b, _rb) = app.client("app").await;
    for g in ["g1", "g2", "g3"] {
        app.ok("join_group", "app", join(&a, g)).await;
    }
    for g in ["g4", "g5"] {
        app.ok("join_group", "app", join(&b, g)).await;
    }
    let r = app.call("join_group", "app", join(&b, "g6")).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(
        r.msg().contains("limits.max_groups_per_system"),
        "{}",
        r.text
    );
    // An existing group is not a new one.
    app.ok("join_group", "app", join(&b, "g1")).await;
    // A group that empties no longer counts.
    app.ok("leave_group", "app", join(&b, "g5")).await;
    app.ok("join_group", "app", join(&b, "g6")).await;
    assert_eq!(app.ok("get_all_groups", "app", json!({})).await["count"], 5);
}

#[tokio::test]
async fn info_is_capped_in_entries_and_bytes_with_413() {
    let app = App::new(limited()).await;
    let (c, _rx) = app.client("app").await;
    let five: Value = (0..5)
        .map(|i| (format!("k{i}"), json!("v")))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let a = app
        .call("set_info", "app", json!({"clientId": c, "info": five}))
        .await;
    assert_eq!(a.status, 413, "{}", a.text);
    assert!(a.is_error_json());
    assert!(a.msg().contains("limits.max_info_entries"), "{}", a.text);

    let big = json!({"clientId": c, "info": {"k": "x".repeat(64)}});
    let a = app.call("set_info", "app", big).await;
    assert_eq!(a.status, 413, "{}", a.text);
    assert!(a.msg().contains("limits.max_info_bytes"), "{}", a.text);

    // update_info is checked on the merged map.
    app.ok(
        "set_info",
        "app",
        json!({"clientId": c, "info": {"a": "1", "b": "2", "c": "3", "d": "4"}}),
    )
    .await;
    let a = app
        .call(
            "update_info",
            "app",
            json!({"clientId": c, "info": {"e": "5"}}),
        )
        .await;
    assert_eq!(a.status, 413, "{}", a.text);
    app.ok(
        "update_info",
        "app",
        json!({"clientId": c, "info": {"a": "9"}}),
    )
    .await;
    let info = app.ok("get_info", "app", json!({"clientId": c})).await;
    assert_eq!(
        info["info"],
        json!({"a": "9", "b": "2", "c": "3", "d": "4"})
    );
}

#[tokio::test]
async fn member_data_is_bounded_like_names_and_info() {
    let app = App::new(limited()).await;
    let (c, _rx) = app.client("app").await;
    let body = json!({"clientId": c, "groupName": "g", "userId": "u".repeat(17)});
    let a = app.call("join_group", "app", body).await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert!(a.msg().contains("userId"), "{}", a.text);
    let body = json!({"clientId": c, "groupName": "g", "extend": "e".repeat(65)});
    let a = app.call("join_group", "app", body).await;
    assert_eq!(a.status, 413, "{}", a.text);
    assert!(a.msg().contains("limits.max_info_bytes"), "{}", a.text);
}

#[tokio::test]
async fn systems_are_capped_with_429() {
    // "app" is configured: two more fit.
    let app = App::new(limited()).await;
    for s in ["s1", "s2"] {
        let a = app
            .raw("register", None, json!({"systemId": s}).to_string())
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
    }
    let a = app
        .raw("register", None, json!({"systemId": "s3"}).to_string())
        .await;
    assert_eq!(a.status, 429, "{}", a.text);
    assert!(a.msg().contains("limits.max_systems"), "{}", a.text);
    // Registering one that exists is not a new one.
    let a = app
        .raw("register", None, json!({"systemId": "s1"}).to_string())
        .await;
    assert_eq!(a.json["data"], json!({"created": false}), "{}", a.text);
    // Unregistering frees a slot.
    let a = app
        .raw("unregister", None, json!({"systemId": "s1"}).to_string())
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let a = app
        .raw("register", None, json!({"systemId": "s3"}).to_string())
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
}

#[tokio::test]
async fn unregister_closes_clients_and_drops_the_metric_series() {
    let app = App::new(App::config_with(&["app"])).await;
    let a = app
        .raw("register", None, json!({"systemId": "temp"}).to_string())
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let (c, rx) = app.client("temp").await;
    app.ok("join_group", "temp", join(&c, "room")).await;
    app.ok("send_to_system", "temp", json!({"data": 1})).await;
    let metrics = app.get("/metrics").await.text;
    assert!(metrics.contains("system=\"temp\""), "{metrics}");

    let a = app
        .raw("unregister", None, json!({"systemId": "temp"}).to_string())
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["data"], json!({"closed": 1}));
    assert!(rx.close_requested().is_cancelled(), "client not closed");
    let a = app.call("get_all_client_count", "temp", json!({})).await;
    assert_eq!(a.status, 404, "{}", a.text);
    // The connection task ends the client as it would after its close frame.
    app.gateway
        .disconnect("temp", &c, 1001, "system unregistered")
        .await;
    let metrics = app.get("/metrics").await.text;
    assert!(!metrics.contains("system=\"temp\""), "{metrics}");

    // Again: unknown.
    let a = app
        .raw("unregister", None, json!({"systemId": "temp"}).to_string())
        .await;
    assert_eq!(a.status, 404, "{}", a.text);
    assert!(a.is_error_json());
}

#[tokio::test]
async fn a_configured_system_cannot_be_unregistered() {
    let app = App::new(App::config_with(&["app"])).await;
    let (_c, rx) = app.client("app").await;
    let a = app
        .raw("unregister", None, json!({"systemId": "app"}).to_string())
        .await;
    assert_eq!(a.status, 409, "{}", a.text);
    assert!(a.is_error_json());
    assert!(a.msg().contains("configuration"), "{}", a.text);
    assert!(!rx.close_requested().is_cancelled());
    app.ok("get_all_client_count", "app", json!({})).await;
}

#[tokio::test]
async fn metrics_stay_small_after_many_systems_come_and_go() {
    let app = App::new(App::config_with(&["app"])).await;
    let baseline = app.get("/metrics").await.text.len();
    for i in 0..200 {
        let s = format!("tenant-{i}");
        app.raw("register", None, json!({"systemId": s}).to_string())
            .await;
        let (c, _rx) = app.client(&s).await;
        app.ok("send_to_client", &s, json!({"clientId": c, "data": "x"}))
            .await;
        app.raw("unregister", None, json!({"systemId": s}).to_string())
            .await;
        app.gateway
            .disconnect(&s, &c, 1001, "system unregistered")
            .await;
    }
    let after = app.get("/metrics").await.text;
    assert!(
        !after.contains("tenant-"),
        "series of unregistered systems remain"
    );
    // API call series are per op and status, not per system.
    assert!(
        after.len() < baseline + 16 * 1024,
        "{} -> {}",
        baseline,
        after.len()
    );
}

#[tokio::test]
async fn a_push_over_max_queue_bytes_is_413_and_costs_the_client_nothing() {
    let mut config = App::config_with(&["app"]);
    config.max_queue_bytes = 1024;
    let app = App::new(config).await;
    let (c, mut rx) = app.client("app").await;
    let a = app
        .call(
            "send_to_client",
            "app",
            json!({"clientId": c, "data": "x".repeat(2000)}),
        )
        .await;
    assert_eq!(a.status, 413, "{}", a.text);
    assert!(a.is_error_json());
    assert!(a.msg().contains("max_queue_bytes"), "{}", a.text);
    assert!(rx.try_recv().is_none());
    assert!(
        !rx.close_requested().is_cancelled(),
        "the client pays nothing"
    );
}
