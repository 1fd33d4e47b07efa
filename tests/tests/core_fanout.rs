//! Fan-out (issue 13): senders write a frame straight to a client's socket when nothing is
//! queued for it. What each client is promised stays: its messages in order, every one of
//! them, a bounded queue, and a 1008 close when it does not keep up. Real sockets throughout.
mod common;

use std::collections::HashMap;

use common::TestGateway;
use common::raw::{self, RawClient};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const WS_PATH: &str = "/api/websocket/ws?systemId=app";

/// Two senders broadcast to the whole system at once, on two worker threads. Every client gets
/// every message, and each sender's messages in the order it sent them, whether they went to
/// its socket directly or through its queue (one client reads late, so its socket fills and
/// its queue takes over part of the time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_broadcasts_keep_each_clients_order() {
    const CLIENTS: usize = 20;
    const PER_SENDER: usize = 200;
    let mut config = TestGateway::config_with(&["app"]);
    config.max_queue_messages = 4 * PER_SENDER;
    config.max_queue_bytes = 64 << 20;
    let gw = TestGateway::start(config).await;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(gw.connect("app").await);
    }
    // A client with a small receive buffer that reads only after the senders are done.
    let mut late = RawClient::connect_welcomed(gw.addr, WS_PATH, Some(4096)).await;

    // 1 KiB payloads: the late client's socket backs up after some tens of them.
    let pad = "x".repeat(1024);
    let send = |sender: &'static str| {
        let gateway = gw.gateway.clone();
        let pad = pad.clone();
        tokio::spawn(async move {
            for i in 0..PER_SENDER {
                let text = json!({"s": sender, "i": i, "pad": pad}).to_string();
                let n = gateway
                    .send_to_system("app", Message::text(text), &[])
                    .await
                    .expect("system exists");
                assert_eq!(n, CLIENTS + 1, "{sender}{i} reached every client");
            }
        })
    };
    let (a, b) = (send("a"), send("b"));
    a.await.expect("sender a");
    b.await.expect("sender b");

    let check = |who: &str, texts: Vec<String>| {
        let mut next: HashMap<String, u64> = HashMap::new();
        for text in texts {
            let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
            let sender = v["s"].as_str().expect("s").to_owned();
            let i = v["i"].as_u64().expect("i");
            let expected = next.entry(sender.clone()).or_default();
            assert_eq!(i, *expected, "{who}: {sender}{i} out of order");
            *expected += 1;
        }
        assert_eq!(next.get("a"), Some(&(PER_SENDER as u64)), "{who}: all of a");
        assert_eq!(next.get("b"), Some(&(PER_SENDER as u64)), "{who}: all of b");
    };
    for (k, c) in clients.iter_mut().enumerate() {
        let mut texts = Vec::new();
        for _ in 0..2 * PER_SENDER {
            texts.push(c.recv_text().await);
        }
        check(&format!("client {k}"), texts);
    }
    let mut texts = Vec::new();
    while texts.len() < 2 * PER_SENDER {
        let frame = late.read_frame().await.expect("a frame");
        assert_eq!(frame.opcode, raw::TEXT, "whole text frames, never torn");
        texts.push(String::from_utf8(frame.payload).expect("UTF-8"));
    }
    check("late client", texts);
    gw.stop().await;
}

/// A client that stops reading: frames go to its socket until the kernel's buffers are full,
/// then into its queue, bounded by `max_queue_messages`; one more and it is closed with 1008.
/// What it does receive is whole frames (a frame a sender wrote in part is finished before the
/// close frame), in order, and the overflow is counted.
#[tokio::test]
async fn a_client_that_stops_reading_is_closed_1008_after_a_bounded_queue() {
    let mut config = TestGateway::config_with(&["app"]);
    config.max_queue_messages = 8;
    let gw = TestGateway::start(config).await;
    let mut slow = RawClient::connect_welcomed(gw.addr, WS_PATH, Some(4096)).await;
    let mut other = gw.connect("app").await;

    // 2 KiB messages, so that one lands half written when the socket fills.
    let pad = "y".repeat(2048);
    let mut sent = 0;
    loop {
        assert!(sent < 20_000, "no overflow after {sent} messages");
        let text = format!("{sent:06}{pad}");
        let queued = gw
            .gateway
            .send_to_client("app", &slow.id, Message::text(text))
            .await
            .expect("the client exists until its task runs");
        if !queued {
            break;
        }
        sent += 1;
    }
    // One message past what the socket took and 8 queued: the next overflowed.
    let mut seen = Vec::new();
    let mut got = 0;
    let close = loop {
        let frame = slow
            .read_frame()
            .await
            .expect("frames, then the close frame");
        if frame.opcode == raw::CLOSE {
            break (
                u16::from_be_bytes([frame.payload[0], frame.payload[1]]),
                String::from_utf8_lossy(&frame.payload[2..]).into_owned(),
            );
        }
        seen.push(frame.opcode);
        let text = String::from_utf8(frame.payload).expect("UTF-8");
        assert_eq!(text[..6].parse::<usize>().ok(), Some(got), "in order");
        assert_eq!(text.len(), 6 + pad.len(), "whole");
        got += 1;
    };
    assert_eq!(close, (1008, "slow consumer".to_owned()));
    assert!(got <= sent, "{got} of {sent}");
    assert!(seen.iter().all(|op| *op == raw::TEXT), "{seen:?}");
    let (_, metrics) = gw.get("/metrics").await;
    assert!(common::metric_sum(&metrics, "wasmgate_queue_overflows_total") >= 1.0);

    // The other client is unaffected.
    gw.ok(
        "send_to_client",
        "app",
        json!({"clientId": other.id, "data": "ok"}),
    )
    .await;
    assert_eq!(other.recv_json().await["data"], "ok");
    gw.stop().await;
}

/// Broadcasts large enough to be split over the runtime's workers (2048 recipients and more):
/// every client gets every message once, each sender's in its order, and, because split
/// broadcasts to one system take turns, all clients see the two senders' broadcasts in the
/// same order. Before the turn, on two workers, clients disagreed about that order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_broadcasts_reach_every_client_in_one_order() {
    const CLIENTS: usize = 2300;
    const PER_SENDER: usize = 12;
    let gw = TestGateway::start(TestGateway::config_with(&["app"])).await;
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        clients.push(gw.connect("app").await);
    }
    let send = |sender: &'static str| {
        let gateway = gw.gateway.clone();
        tokio::spawn(async move {
            for i in 0..PER_SENDER {
                let text = json!({"s": sender, "i": i}).to_string();
                let n = gateway
                    .send_to_system("app", Message::text(text), &[])
                    .await
                    .expect("system exists");
                assert_eq!(n, CLIENTS, "{sender}{i} reached every client");
            }
        })
    };
    let (a, b) = (send("a"), send("b"));
    a.await.expect("sender a");
    b.await.expect("sender b");

    let mut first_order: Option<Vec<String>> = None;
    for (k, c) in clients.iter_mut().enumerate() {
        let mut order = Vec::with_capacity(2 * PER_SENDER);
        let mut next: HashMap<String, u64> = HashMap::new();
        for _ in 0..2 * PER_SENDER {
            let v: serde_json::Value = serde_json::from_str(&c.recv_text().await).expect("JSON");
            let sender = v["s"].as_str().expect("s").to_owned();
            let i = v["i"].as_u64().expect("i");
            let expected = next.entry(sender.clone()).or_default();
            assert_eq!(
                i, *expected,
                "client {k}: {sender}{i} out of its sender's order"
            );
            *expected += 1;
            order.push(format!("{sender}{i}"));
        }
        match &first_order {
            None => first_order = Some(order),
            Some(first) => assert_eq!(
                &order, first,
                "client {k} saw the broadcasts in another order than client 0"
            ),
        }
    }
    gw.stop().await;
}

/// A sender that goes away in the middle of a split broadcast (an API client hanging up) does
/// not cut it short: every client still gets it. Before, dropping the caller aborted the chunks
/// not started yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_broadcast_whose_sender_goes_away_still_reaches_everyone() {
    const CLIENTS: usize = 2300;
    let gw = TestGateway::start(TestGateway::config_with(&["app"])).await;
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        clients.push(gw.connect("app").await);
    }
    // Polled once, then dropped: it got as far as waiting for its chunks.
    let send = gw
        .gateway
        .send_to_system("app", Message::text("all of you"), &[]);
    let dropped = tokio::time::timeout(std::time::Duration::from_nanos(1), send).await;
    assert!(dropped.is_err(), "the broadcast was cut while in flight");
    for (k, c) in clients.iter_mut().enumerate() {
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), c.recv_text())
            .await
            .unwrap_or_else(|_| panic!("client {k} never got the broadcast"));
        assert_eq!(got, "all of you", "client {k}");
    }
    gw.stop().await;
}
