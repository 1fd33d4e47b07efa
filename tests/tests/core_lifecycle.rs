//! Lifecycle and observability: graceful shutdown, ids, /healthz, /metrics, dropped messages.
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::raw::RawClient;
use common::{TestGateway, metric_sum};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn shutdown_flushes_queued_messages_then_closes_with_1001() {
    let mut config = TestGateway::config_with(&["app", "other"]);
    config.drain_timeout = Duration::from_secs(5);
    let gw = TestGateway::start(config).await;
    let mut a = gw.connect("app").await;
    let mut b = gw.connect("other").await;
    let mut raw =
        RawClient::connect_welcomed(gw.addr, "/api/websocket/ws?systemId=app", None).await;
    let addr = gw.addr;

    // Queued without yielding, so the connection tasks have not written them yet.
    for i in 0..3 {
        gw.gateway
            .send_to_client("app", &a.id, Message::text(format!("a{i}")))
            .await
            .expect("a exists");
    }
    gw.gateway
        .send_to_client("other", &b.id, Message::text("b0"))
        .await
        .expect("b exists");
    gw.stop().await; // returns only once the server task has

    for i in 0..3 {
        assert_eq!(a.recv_text().await, format!("a{i}"));
    }
    assert_eq!(
        a.recv_close().await,
        Some((1001, "server shutting down".to_owned()))
    );
    assert_eq!(b.recv_text().await, "b0");
    assert_eq!(
        b.recv_close().await,
        Some((1001, "server shutting down".to_owned()))
    );
    let mut seen = Vec::new();
    assert_eq!(
        raw.read_until_close(&mut seen).await,
        Some((1001, "server shutting down".to_owned()))
    );
    // Nothing listens any more.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn client_and_message_ids_are_unique_and_carry_the_node_id() {
    let mut config = TestGateway::config_with(&["app"]);
    config.node_id = Some(0x00c0_ffee);
    let gw = TestGateway::start(config).await;
    let mut clients = Vec::new();
    for _ in 0..40 {
        clients.push(gw.connect("app").await);
    }
    let mut ids = BTreeSet::new();
    for c in &clients {
        assert_eq!(c.id.len(), wasmgate::ids::ID_LEN);
        assert!(c.id.bytes().all(|b| b.is_ascii_hexdigit()), "{}", c.id);
        assert_eq!(wasmgate::ids::node_of(&c.id), Some(0x00c0_ffee), "{}", c.id);
        assert!(ids.insert(c.id.clone()), "duplicate id {}", c.id);
    }
    let mut message_ids = BTreeSet::new();
    for c in clients.iter().take(5) {
        let data = gw
            .ok(
                "send_to_client",
                "app",
                json!({"clientId": c.id, "data": 1}),
            )
            .await;
        let id = data["messageId"].as_str().expect("messageId").to_owned();
        assert_eq!(wasmgate::ids::node_of(&id), Some(0x00c0_ffee));
        assert!(!ids.contains(&id));
        assert!(message_ids.insert(id));
    }
    // A second gateway with the same node id never repeats an id of the first.
    let mut config = TestGateway::config_with(&["app"]);
    config.node_id = Some(0x00c0_ffee);
    let gw2 = TestGateway::start(config).await;
    for _ in 0..10 {
        let c = gw2.connect("app").await;
        assert_eq!(wasmgate::ids::node_of(&c.id), Some(0x00c0_ffee));
        assert!(
            ids.insert(c.id.clone()),
            "duplicate id across gateways {}",
            c.id
        );
    }
    gw2.stop().await;
    gw.stop().await;
}

async fn health(gw: &TestGateway) -> Value {
    let (status, body) = gw.get("/healthz").await;
    assert_eq!(status, 200);
    serde_json::from_str(&body).expect("JSON")
}

#[tokio::test]
async fn healthz_reports_ok_and_the_connection_count() {
    let gw = TestGateway::start(TestGateway::config_with(&["app"])).await;
    assert_eq!(
        health(&gw).await,
        json!({"code": 0, "msg": "success", "data": {"status": "ok", "connections": 0}})
    );
    let a = gw.connect("app").await;
    let _b = gw.connect("app").await;
    assert_eq!(health(&gw).await["data"]["connections"], 2);
    a.close().await;
    common::eventually("healthz counts 1", || async {
        health(&gw).await["data"]["connections"] == 1
    })
    .await;
    gw.stop().await;
}

#[tokio::test]
async fn metrics_count_connections_messages_and_api_calls() {
    let gw = TestGateway::start(TestGateway::config_with(&["a", "b"])).await;
    let metrics = || async {
        let (status, text) = gw.get("/metrics").await;
        assert_eq!(status, 200);
        text
    };
    let mut a1 = gw.connect("a").await;
    let a2 = gw.connect("a").await;
    let _b1 = gw.connect("b").await;

    // Client messages with no plugin are dropped and counted; `ping` is not a message.
    a1.send_text("hello").await;
    a1.send_binary(&[1, 2, 3]).await;
    a1.send_text("ping").await;
    assert_eq!(a1.recv_text().await, "pong"); // the frames before it were read too

    for _ in 0..3 {
        gw.ok("send_to_client", "a", json!({"clientId": a1.id, "data": 1}))
            .await;
    }
    gw.ok("send_to_system", "a", json!({"data": 2})).await;
    let (status, _) = gw
        .api("send_to_client", "a", json!({"clientId": "nope"}))
        .await;
    assert_eq!(status, 404);
    let (status, _) = gw.api("no_such_op", "a", json!({})).await;
    assert_eq!(status, 404);

    let text = metrics().await;
    assert_eq!(metric_sum(&text, "wasmgate_connections{system=\"a\""), 2.0);
    assert_eq!(metric_sum(&text, "wasmgate_connections{system=\"b\""), 1.0);
    assert_eq!(
        metric_sum(&text, "wasmgate_messages_in_total{system=\"a\""),
        2.0
    );
    assert_eq!(
        metric_sum(&text, "wasmgate_messages_in_total{system=\"b\""),
        0.0
    );
    assert_eq!(
        metric_sum(
            &text,
            "wasmgate_messages_dropped_total{system=\"a\",reason=\"no_plugin\""
        ),
        2.0,
        "{text}"
    );
    // 3 direct pushes + 2 recipients of the system broadcast.
    assert_eq!(
        metric_sum(&text, "wasmgate_messages_out_total{system=\"a\""),
        5.0
    );
    assert_eq!(
        metric_sum(
            &text,
            "wasmgate_api_calls_total{op=\"send_to_client\",status=\"200\""
        ),
        3.0,
        "{text}"
    );
    assert_eq!(
        metric_sum(
            &text,
            "wasmgate_api_calls_total{op=\"send_to_client\",status=\"404\""
        ),
        1.0
    );
    assert_eq!(
        metric_sum(
            &text,
            "wasmgate_api_calls_total{op=\"unknown\",status=\"404\""
        ),
        1.0
    );
    assert_eq!(
        metric_sum(
            &text,
            "wasmgate_api_latency_seconds_count{op=\"send_to_client\""
        ),
        4.0,
        "{text}"
    );
    assert!(
        metric_sum(
            &text,
            "wasmgate_api_latency_seconds_sum{op=\"send_to_client\""
        ) > 0.0
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("wasmgate_api_latency_seconds_bucket{")
                && l.contains("op=\"send_to_client\"")
                && l.contains("le=\"+Inf\"")),
        "{text}"
    );

    // The gauge follows disconnects.
    a2.close().await;
    common::eventually("gauge drops to 1", || async {
        metric_sum(&metrics().await, "wasmgate_connections{system=\"a\"") == 1.0
    })
    .await;
    gw.stop().await;
}

#[tokio::test]
async fn shutdown_is_not_held_by_a_client_that_never_reads() {
    let mut config = TestGateway::config_with(&["app"]);
    // Big enough queues that nothing overflows: the stuck client is only stuck.
    config.max_queue_bytes = 64 * 1024 * 1024;
    config.drain_timeout = Duration::from_secs(10);
    let gw = TestGateway::start(config).await;
    let stuck =
        RawClient::connect_welcomed(gw.addr, "/api/websocket/ws?systemId=app", Some(4096)).await;
    let mut good = gw.connect("app").await;
    // 6 MiB to a socket that takes ~4 MiB: the connection task is left blocked in a write.
    let chunk = "y".repeat(64 * 1024);
    for _ in 0..96 {
        gw.ok(
            "send_to_client",
            "app",
            json!({"clientId": stuck.id, "data": chunk}),
        )
        .await;
    }
    let handle = gw.gateway.clone();
    assert_eq!(handle.local_connection_count(), 2);
    gw.stop().await;
    assert_eq!(
        good.recv_close().await,
        Some((1001, "server shutting down".to_owned()))
    );
    // Every connection task ended, the stuck one included (within the close bound, well
    // before the drain timeout).
    assert!(
        handle.tasks().is_empty(),
        "{} tasks left",
        handle.tasks().len()
    );
    assert_eq!(handle.local_connection_count(), 0);
    drop(stuck);
}
