//! Limits: slow consumers (bounded outbound queue → 1008), message size (→ 1009), invalid
//! UTF-8 (→ 1007), protocol errors (→ 1002); in each case the other clients carry on.
mod common;

use common::raw::{self, RawClient};
use common::{TestGateway, metric_sum};
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const WS_PATH: &str = "/api/websocket/ws?systemId=app";

async fn metrics(gw: &TestGateway) -> String {
    let (status, text) = gw.get("/metrics").await;
    assert_eq!(status, 200);
    text
}

async fn assert_online(gw: &TestGateway, id: &str, online: bool) {
    assert_eq!(
        gw.ok("is_online", "app", json!({"clientId": id})).await,
        json!({"online": online}),
        "is_online({id})"
    );
}

/// The client is still online and still receives pushes.
async fn assert_served(gw: &TestGateway, c: &mut common::Client) {
    assert_online(gw, &c.id, true).await;
    gw.ok(
        "send_to_client",
        "app",
        json!({"clientId": c.id, "data": "ok"}),
    )
    .await;
    assert_eq!(c.recv_json().await["data"], "ok");
}

async fn wait_offline(gw: &TestGateway, id: &str) {
    common::eventually(&format!("{id} is offline"), || async {
        gw.ok("is_online", "app", json!({"clientId": id})).await == json!({"online": false})
    })
    .await;
}

#[tokio::test]
async fn a_burst_beyond_the_queue_closes_the_client_with_1008() {
    let mut config = TestGateway::config_with(&["app"]);
    config.max_queue_messages = 8;
    let gw = TestGateway::start(config).await;
    let mut slow = gw.connect("app").await;
    let mut other = gw.connect("app").await;

    // The client does not read while this loop runs (the test runs on one thread). Pushes go
    // to its socket directly until the kernel's buffers are full (a few MiB on loopback),
    // then into its queue: the ninth queued one overflows it.
    let pad = "x".repeat(4096);
    let mut pushes = 0;
    while gw
        .gateway
        .send_to_client("app", &slow.id, Message::text(format!("m{pushes}{pad}")))
        .await
        .expect("the client exists until its task runs")
    {
        pushes += 1;
        assert!(
            pushes < 20_000,
            "no overflow after {pushes} pushes of 4 KiB"
        );
    }
    // The queue was not flushed: a slow consumer is cut off at once.
    assert_eq!(
        slow.recv_close().await,
        Some((1008, "slow consumer".into()))
    );
    wait_offline(&gw, &slow.id).await;
    assert!(metric_sum(&metrics(&gw).await, "wasmgate_queue_overflows_total") >= 1.0);

    // The other client is unaffected.
    assert_served(&gw, &mut other).await;
    gw.stop().await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_and_counted() {
    let mut config = TestGateway::config_with(&["app"]);
    config.max_queue_messages = 16;
    config.max_queue_bytes = 64 * 1024;
    let gw = TestGateway::start(config).await;
    // A 4 KiB receive buffer and no reads: the server's socket backs up after a few MiB.
    let mut slow = RawClient::connect_welcomed(gw.addr, WS_PATH, Some(4096)).await;
    let mut good = gw.connect("app").await;

    let chunk = "x".repeat(32 * 1024);
    let mut pushes = 0;
    let mut counts = Vec::new();
    while metric_sum(&metrics(&gw).await, "wasmgate_queue_overflows_total") < 1.0 {
        assert!(pushes < 600, "no overflow after {pushes} pushes of 32 KiB");
        let answer = gw.ok("send_to_system", "app", json!({"data": chunk})).await;
        counts.push(answer["count"].as_u64().expect("count"));
        pushes += 1;
        // The good client reads every push, so only the slow one backs up.
        let m = good.recv_json().await;
        assert_eq!(m["data"].as_str().map(str::len), Some(chunk.len()));
    }
    assert_eq!(counts.first(), Some(&2), "both clients got the first push");
    assert_eq!(
        counts.last(),
        Some(&1),
        "the overflowing push reached the good client only"
    );

    // The gateway closes the slow client although its socket is blocked.
    wait_offline(&gw, &slow.id).await;
    assert_online(&gw, &good.id, true).await;
    let text = metrics(&gw).await;
    assert!(metric_sum(&text, "wasmgate_queue_overflows_total{system=\"app\"") >= 1.0);
    assert_eq!(
        metric_sum(&text, "wasmgate_connections{system=\"app\""),
        1.0
    );

    // Reading at last, the slow client finds its connection over (with a 1008 if the close
    // frame made it out, else the end of the stream), never a hang.
    let mut seen = Vec::new();
    if let Some(close) = slow.read_until_close(&mut seen).await {
        assert_eq!(close, (1008, "slow consumer".to_owned()));
    }
    // Pushes over 8 KiB arrive in fragments: a text frame, then continuations (opcode 0).
    assert!(
        seen.iter().all(|op| *op == raw::TEXT || *op == 0),
        "{seen:?}"
    );

    gw.ok(
        "send_to_client",
        "app",
        json!({"clientId": good.id, "data": "still here"}),
    )
    .await;
    assert_eq!(good.recv_json().await["data"], "still here");
    gw.stop().await;
}

#[tokio::test]
async fn an_oversized_message_closes_that_client_with_1009() {
    let mut config = TestGateway::config_with(&["app"]);
    config.max_message_size = 1024;
    let gw = TestGateway::start(config).await;
    let mut big = gw.connect("app").await;
    let mut fragmented = RawClient::connect_welcomed(gw.addr, WS_PATH, None).await;
    let mut at_limit = gw.connect("app").await;
    let mut bystander = gw.connect("app").await;

    // Exactly the limit is fine.
    at_limit.send_text(&"a".repeat(1024)).await;
    at_limit.send_text("ping").await;
    assert_eq!(at_limit.recv_text().await, "pong");

    // One frame over the limit.
    big.ws
        .send(Message::binary(vec![7u8; 1025]))
        .await
        .expect("send");
    assert_eq!(
        big.recv_close().await,
        Some((1009, "message too big".into()))
    );

    // Three frames under the limit that add up to more.
    fragmented.send_frame(false, raw::TEXT, &[b'a'; 400]).await;
    fragmented.send_frame(false, 0x0, &[b'b'; 400]).await;
    fragmented.send_frame(true, 0x0, &[b'c'; 400]).await;
    let mut seen = Vec::new();
    assert_eq!(
        fragmented.read_until_close(&mut seen).await,
        Some((1009, "message too big".into()))
    );

    wait_offline(&gw, &big.id).await;
    wait_offline(&gw, &fragmented.id).await;
    for c in [&mut at_limit, &mut bystander] {
        assert_served(&gw, c).await;
    }
    gw.stop().await;
}

#[tokio::test]
async fn invalid_utf8_text_closes_with_1007_but_split_characters_are_fine() {
    let gw = TestGateway::start(TestGateway::config_with(&["app"])).await;
    let mut bad = RawClient::connect_welcomed(gw.addr, WS_PATH, None).await;
    let mut split = RawClient::connect_welcomed(gw.addr, WS_PATH, None).await;
    let mut bystander = gw.connect("app").await;

    // "é" is C3 A9: split across two fragments it is still valid UTF-8 once reassembled.
    split.send_frame(false, raw::TEXT, b"caf\xc3").await;
    split.send_frame(true, 0x0, b"\xa9").await;
    split.send_frame(true, raw::TEXT, b"ping").await;
    let pong = split.read_frame().await.expect("pong");
    assert_eq!(
        (pong.opcode, pong.payload.as_slice()),
        (raw::TEXT, &b"pong"[..])
    );

    bad.send_frame(true, raw::TEXT, b"bad \xff\xfe bytes").await;
    let mut seen = Vec::new();
    assert_eq!(
        bad.read_until_close(&mut seen).await,
        Some((1007, "invalid UTF-8".into()))
    );
    wait_offline(&gw, &bad.id).await;
    assert_online(&gw, &split.id, true).await;
    assert_served(&gw, &mut bystander).await;
    gw.stop().await;
}

#[tokio::test]
async fn protocol_violations_close_with_1002() {
    let gw = TestGateway::start(TestGateway::config_with(&["app"])).await;
    let mut bystander = gw.connect("app").await;

    // An unmasked client frame.
    let mut unmasked = RawClient::connect_welcomed(gw.addr, WS_PATH, None).await;
    use tokio::io::AsyncWriteExt;
    unmasked
        .stream
        .write_all(&[0x81, 0x02, b'h', b'i'])
        .await
        .expect("write");
    let mut seen = Vec::new();
    assert_eq!(
        unmasked.read_until_close(&mut seen).await.map(|c| c.0),
        Some(1002)
    );

    // A reserved opcode.
    let mut reserved = RawClient::connect_welcomed(gw.addr, WS_PATH, None).await;
    reserved.send_frame(true, 0x3, b"??").await;
    assert_eq!(
        reserved.read_until_close(&mut seen).await.map(|c| c.0),
        Some(1002)
    );

    // A continuation frame with nothing to continue.
    let mut orphan = RawClient::connect_welcomed(gw.addr, WS_PATH, None).await;
    orphan.send_frame(true, 0x0, b"tail").await;
    assert_eq!(
        orphan.read_until_close(&mut seen).await.map(|c| c.0),
        Some(1002)
    );

    for id in [&unmasked.id, &reserved.id, &orphan.id] {
        wait_offline(&gw, id).await;
    }
    assert_served(&gw, &mut bystander).await;
    gw.stop().await;
}
