//! Contract `wasmgate:plugin@0.2.0` through real sockets, and 0.1.0 served beside it: the
//! connect context (query, selected headers, peer, verified claims), reject codes, member data
//! in the notices of plugin joins, the lists 0.2 added, timers bound to a client, and a 0.1.0
//! and a 0.2.0 plugin side by side under a hot reload of each (and a 0.1 → 0.2 upgrade in
//! place). Guests: `tests/guests/contract02` (0.2.0) and `tests/guests/legacy01` (0.1.0), both
//! plain wit-bindgen, built from source by `tests/build.rs`.
#![allow(clippy::unwrap_used)]

mod common;
mod plugin_support;

use std::time::Duration;

use common::{Client, TestGateway};
use jsonwebtoken::{EncodingKey, Header, encode};
use plugin_support::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderName;
use tokio_tungstenite::{MaybeTlsStream, connect_async};
use wasmgate::config::{PluginConfig, SystemConfig};

const SECRET: &str = "contract-secret";

/// `contract02` serving `c2` (open) and `c2s` (token required).
async fn contract_gateway(dir: &std::path::Path) -> TestGateway {
    install(dir, "contract02", CONTRACT02);
    let mut config = config(dir);
    config.plugins.insert(
        "contract02".into(),
        PluginConfig {
            systems: vec!["c2".into(), "c2s".into()],
            ..Default::default()
        },
    );
    config.systems.insert(
        "c2s".into(),
        SystemConfig {
            jwt_secret: Some(SECRET.into()),
            ..Default::default()
        },
    );
    TestGateway::start(config).await
}

/// Connect to `url` with extra request headers; read the welcome frame.
async fn connect_with(url: &str, headers: &[(&str, &str)]) -> Client {
    let mut req = url.into_client_request().unwrap();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("header name");
        req.headers_mut()
            .append(name, value.parse().expect("header value"));
    }
    let (ws, _) = connect_async(req).await.expect("WebSocket connect");
    let mut client = Client {
        id: String::new(),
        ws,
    };
    let welcome = client.recv_json().await;
    client.id = welcome["data"]["clientId"].as_str().unwrap().to_owned();
    client
}

/// A client's id (a copy, so the client can be borrowed mutably beside it).
fn a_id_of(c: &Client) -> String {
    c.id.clone()
}

/// The client's own address, as the gateway sees its peer.
fn local_addr(client: &Client) -> String {
    match client.ws.get_ref() {
        MaybeTlsStream::Plain(tcp) => tcp.local_addr().unwrap().to_string(),
        _ => unreachable!("plain TCP"),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_connect_gets_the_query_selected_headers_the_peer_and_verified_claims() {
    let dir = folder();
    let gw = contract_gateway(dir.path()).await;

    let url = format!("{}&room=lobby&nick=ann%20b&nick=x", gw.ws_url("c2"));
    let mut a = connect_with(
        &url,
        &[
            ("Origin", "http://example.test"),
            ("X-Forwarded-For", "10.1.2.3"),
            ("Cookie", "session=secret"),
        ],
    )
    .await;
    let ctx = ok(&mut a, "context", json!({})).await;
    assert_eq!(
        ctx["query"],
        json!([
            ["systemId", "c2"],
            ["room", "lobby"],
            ["nick", "ann b"],
            ["nick", "x"]
        ]),
        "{ctx}"
    );
    // Only the headers of `plugin.connect_headers`, in its order: no cookie.
    assert_eq!(
        ctx["headers"],
        json!([
            ["origin", "http://example.test"],
            ["x-forwarded-for", "10.1.2.3"]
        ]),
        "{ctx}"
    );
    assert_eq!(ctx["peer"], local_addr(&a), "{ctx}");
    assert_eq!(ctx["uid"], Value::Null);
    assert_eq!(ctx["claims"], Value::Null, "no token required, no claims");

    // An outsider's huge query: the plugin gets the first 64 pairs, at most 4 KiB of them.
    let many: String = (0..500).map(|i| format!("&p{i}=v")).collect();
    let mut m = Client::connect(&format!("{}{many}", gw.ws_url("c2"))).await;
    let ctx = ok(&mut m, "context", json!({})).await;
    let pairs = ctx["query"].as_array().expect("query pairs");
    assert_eq!(pairs.len(), 64, "{}", pairs.len());
    assert_eq!(pairs[63], json!(["p62", "v"]));
    let long = "x".repeat(3000);
    let mut l = Client::connect(&format!("{}&a={long}&b={long}&c=1", gw.ws_url("c2"))).await;
    let ctx = ok(&mut l, "context", json!({})).await;
    let names: Vec<&str> = ctx["query"]
        .as_array()
        .expect("query pairs")
        .iter()
        .map(|p| p[0].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["systemId", "a"], "4 KiB at most: {names:?}");

    // A system that requires a token: its verified claims, the token itself left out.
    let exp = now() + 600;
    let token = encode(
        &Header::default(),
        &json!({"sub": "u7", "exp": exp, "room": "vip"}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let mut s = Client::connect(&format!("{}&token={token}&seat=3", gw.ws_url("c2s"))).await;
    let ctx = ok(&mut s, "context", json!({})).await;
    assert_eq!(
        ctx["query"],
        json!([["systemId", "c2s"], ["seat", "3"]]),
        "{ctx}"
    );
    assert_eq!(ctx["uid"], "u7");
    assert_eq!(
        ctx["claims"],
        json!({"sub": "u7", "exp": exp, "room": "vip"})
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reject_closes_with_its_code_and_an_invalid_code_becomes_4000() {
    let dir = folder();
    let gw = contract_gateway(dir.path()).await;
    let mut c = Client::connect(&format!("{}&reject=4005", gw.ws_url("c2"))).await;
    assert_eq!(c.recv_close().await, Some((4005, "by query".into())));
    let mut c = Client::connect(&format!("{}&reject=1006", gw.ws_url("c2"))).await;
    assert_eq!(c.recv_close().await, Some((4000, "by query".into())));
    gw.stop().await;
}

/// The next group notice (1001/1002) a client gets.
async fn notice(c: &mut Client) -> Value {
    loop {
        let v = c.recv_json().await;
        if v["code"] == 1001 || v["code"] == 1002 {
            return v;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_data_of_a_plugin_join_reaches_the_online_and_offline_notices() {
    let dir = folder();
    let gw = contract_gateway(dir.path()).await;
    let mut a = gw.connect("c2").await;
    let a_id = a_id_of(&a);
    let mut b = gw.connect("c2").await;
    let b_id = a_id_of(&b);
    let join = |client: &str, user: &str, extend: &str| json!({"client": client, "group": "room", "userId": user, "extend": extend});
    ok(&mut a, "join-group", join(&a_id, "ua", "{\"seat\":1}")).await;
    // The notice reaches a during its own call, before the reply.
    let (reply, others) =
        call_collect(&mut a, "join-group", join(&b_id, "ub", "{\"seat\":2}")).await;
    assert!(reply.get("ok").is_some(), "{reply}");
    let online: Value = others
        .iter()
        .filter_map(|m| serde_json::from_str::<Value>(m.to_text().ok()?).ok())
        .find(|v| v["code"] == 1001)
        .expect("an online notice");
    assert_eq!(online["code"], 1001);
    assert_eq!(
        online["data"],
        json!({"clientId": b_id, "userId": "ub", "extend": "{\"seat\":2}"})
    );
    ok(
        &mut b,
        "leave-group",
        json!({"client": b_id, "group": "room"}),
    )
    .await;
    let offline = notice(&mut a).await;
    assert_eq!(offline["code"], 1002);
    assert_eq!(
        offline["data"],
        json!({"clientId": b_id, "userId": "ub", "extend": "{\"seat\":2}"})
    );
    // The API's rules: user-id like a name, extend bounded like info.
    let long_user = "u".repeat(gw.gateway.config().limits.max_name_bytes + 1);
    assert_eq!(
        err(&mut a, "join-group", join(&b_id, &long_user, "")).await,
        "invalid-argument"
    );
    let big = "x".repeat(gw.gateway.config().limits.max_info_bytes + 1);
    assert_eq!(
        err(&mut a, "join-group", join(&b_id, "ub", &big)).await,
        "quota-exceeded"
    );
    assert_eq!(
        err(&mut a, "join-group", join("nobody", "u", "")).await,
        "unknown-client"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_of_the_system_and_the_groups_of_a_client_are_listed_in_scope() {
    let dir = folder();
    let gw = contract_gateway(dir.path()).await;
    let mut a = gw.connect("c2").await;
    let a_id = a_id_of(&a);
    let b = gw.connect("c2").await;
    let b_id = a_id_of(&b);
    let exp = now() + 600;
    let token = encode(
        &Header::default(),
        &json!({"sub": "u1", "exp": exp}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let other = Client::connect(&format!("{}&token={token}", gw.ws_url("c2s"))).await;
    let mut ids = vec![a_id.clone(), b_id.clone()];
    ids.sort();
    assert_eq!(
        ok(&mut a, "get-all-client-ids", json!({})).await,
        json!(ids)
    );
    for g in ["zeta", "alpha"] {
        ok(
            &mut a,
            "join-group",
            json!({"client": a_id, "group": g, "userId": "", "extend": ""}),
        )
        .await;
    }
    assert_eq!(
        ok(&mut a, "get-groups-by-client-id", json!({"client": a_id})).await,
        json!(["alpha", "zeta"])
    );
    assert_eq!(
        ok(&mut a, "get-groups-by-client-id", json!({"client": b_id})).await,
        json!([])
    );
    // A client of another system is unknown to an event of this one.
    assert_eq!(
        err(
            &mut a,
            "get-groups-by-client-id",
            json!({"client": other.id})
        )
        .await,
        "unknown-client"
    );
    gw.stop().await;
}

/// The next timer note (`{"timer":…}`) a client gets.
async fn timer_note(c: &mut Client) -> Value {
    loop {
        let v = c.recv_json().await;
        if v.get("timer").is_some() {
            return v;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_bound_to_a_client_fires_with_it_and_dies_when_it_leaves() {
    let dir = folder();
    let gw = contract_gateway(dir.path()).await;
    let mut a = gw.connect("c2").await;
    let a_id = a_id_of(&a);
    let b = gw.connect("c2").await;
    let b_id = a_id_of(&b);

    // Bound to a client that stays: on-timer says whose timer it is.
    let id = ok(
        &mut a,
        "set-timer",
        json!({"ms": 30, "payload": a_id, "client": a_id}),
    )
    .await;
    assert_eq!(
        timer_note(&mut a).await,
        json!({"timer": id, "payload": a_id, "client": a_id})
    );
    assert_eq!(
        err(
            &mut a,
            "set-timer",
            json!({"ms": 30, "payload": a_id, "client": "nobody"})
        )
        .await,
        "unknown-client"
    );

    // Bound to b, which leaves: it never fires. An unbound timer due later still does, so
    // the bound one (due first, and timers of one instance are delivered in order) is gone.
    let bound = ok(
        &mut a,
        "set-timer",
        json!({"ms": 300, "payload": a_id, "client": b_id}),
    )
    .await;
    let unbound = ok(&mut a, "set-timer", json!({"ms": 600, "payload": a_id})).await;
    assert_ne!(bound, unbound);
    b.close().await;
    assert_eq!(
        timer_note(&mut a).await,
        json!({"timer": unbound, "payload": a_id, "client": null})
    );
    a.expect_silence(Duration::from_millis(300)).await;
    // Cancelled timers are not pending any more.
    assert_eq!(plugin(&gw, "contract02").await["timers"], 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0_1_and_a_0_2_plugin_are_served_side_by_side_through_hot_reloads() {
    let dir = folder();
    install(dir.path(), "old", LEGACY01);
    install(dir.path(), "new", CONTRACT02);
    let gw = TestGateway::start(config(dir.path())).await;
    let old = wait_plugin(&gw, "old", "loaded", |p| !p["version"].is_null()).await;
    let new = wait_plugin(&gw, "new", "loaded", |p| !p["version"].is_null()).await;
    assert_eq!(old["world"], "0.1.0", "{old}");
    assert_eq!(new["world"], "0.2.0", "{new}");

    let mut o = gw.connect("old").await;
    let mut o2 = gw.connect("old").await;
    let mut n = gw.connect("new").await;
    o.send_text("hi").await;
    assert_eq!(o.recv_text().await, "0.1:hi");
    n.send_text("hi").await;
    assert_eq!(n.recv_text().await, "0.2:hi");
    // 0.1 calls run on the 0.2 implementation: a join (no member data in 0.1) notifies with
    // empty fields, a timer fires into on-timer(id, payload).
    o.send_text("join:g").await;
    assert_eq!(o.recv_text().await, "0.1:joined:g");
    o2.send_text("join:g").await;
    assert_eq!(
        notice(&mut o).await["data"],
        json!({"clientId": o2.id, "userId": "", "extend": ""})
    );
    assert_eq!(o2.recv_text().await, "0.1:joined:g");
    o.send_text("timer:20").await;
    let set = o.recv_text().await;
    let id = set.strip_prefix("0.1:timer-set:").expect("timer set");
    assert_eq!(o.recv_text().await, format!("0.1:timer:{id}"));

    // Hot reload of each, the other untouched; clients stay connected.
    for (name, src, client, prefix) in [
        ("old", LEGACY01, &mut o, "0.1"),
        ("new", CONTRACT02, &mut n, "0.2"),
    ] {
        let before = plugin(&gw, name).await["version"].clone();
        install_bytes(dir.path(), name, &variant(src, "reloaded"));
        let entry = wait_plugin(&gw, name, "reloaded", |p| p["version"] != before).await;
        assert_eq!(entry["lastError"], Value::Null, "{entry}");
        assert_eq!(entry["reloads"], 2, "{entry}");
        client.send_text("again").await;
        assert_eq!(client.recv_text().await, format!("{prefix}:again"));
    }
    assert_eq!(plugin(&gw, "old").await["world"], "0.1.0");
    assert_eq!(plugin(&gw, "new").await["world"], "0.2.0");

    // A 0.1 plugin upgraded in place to 0.2: its clients stay and the new contract answers.
    install(dir.path(), "old", CONTRACT02);
    wait_plugin(&gw, "old", "upgraded", |p| p["world"] == "0.2.0").await;
    o.send_text("after").await;
    assert_eq!(o.recv_text().await, "0.2:after");
    assert_eq!(gw.gateway.local_connection_count(), 3);
    gw.stop().await;
}
