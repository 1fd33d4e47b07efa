//! Heartbeat: the server pings, answers text `ping` with `pong`, and closes silent clients.
mod common;

use std::time::Duration;

use common::TestGateway;
use common::raw::{self, RawClient};
use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

fn config(ping: u64, idle: u64) -> wasmgate::Config {
    let mut config = TestGateway::config_with(&["app"]);
    config.ping_interval = Duration::from_millis(ping);
    config.idle_timeout = Duration::from_millis(idle);
    config
}

#[tokio::test]
async fn server_pings_and_text_ping_is_answered_pong() {
    let gw = TestGateway::start(config(100, 5_000)).await;
    let mut a = gw.connect("app").await;

    // Several protocol pings arrive (read raw, not through the ping-skipping helpers).
    let mut pings = 0;
    while pings < 3 {
        let next = tokio::time::timeout(common::WAIT, a.ws.next())
            .await
            .expect("a ping within the wait");
        match next {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("expected a ping, got {other:?}"),
        }
    }

    a.send_text("ping").await;
    assert_eq!(a.recv_text().await, "pong");
    a.send_text("ping").await;
    assert_eq!(a.recv_text().await, "pong");
    // Only the exact text `ping` is special.
    gw.ok(
        "send_to_client",
        "app",
        json!({"clientId": a.id, "data": 1}),
    )
    .await;
    a.send_text("PING").await;
    assert_eq!(a.recv_json().await["data"], 1);
    gw.stop().await;
}

#[tokio::test]
async fn a_silent_client_is_closed_after_the_idle_timeout() {
    let gw = TestGateway::start(config(100, 300)).await;
    let mut silent =
        RawClient::connect_welcomed(gw.addr, "/api/websocket/ws?systemId=app", None).await;
    // Read everything, answer nothing.
    let mut seen = Vec::new();
    let close = silent.read_until_close(&mut seen).await;
    assert_eq!(close, Some((1001, "idle timeout".to_owned())));
    assert!(
        seen.contains(&raw::PING),
        "the server pinged before giving up: {seen:?}"
    );
    common::eventually("the silent client is offline", || async {
        gw.ok("is_online", "app", json!({"clientId": silent.id}))
            .await
            == json!({"online": false})
    })
    .await;
    gw.stop().await;
}

#[tokio::test]
async fn a_client_that_never_polls_is_closed_but_a_responsive_one_stays() {
    // Idle timeout well above the ping interval: the responsive client answers each ping
    // within milliseconds, so it is never idle for long.
    let gw = TestGateway::start(config(100, 1_000)).await;
    let mut alive = gw.connect("app").await;
    // A tungstenite client that is never polled never answers pings.
    let stuck = gw.connect("app").await;

    let stuck_id = stuck.id.clone();
    let poll_alive = async {
        // Keep reading (tungstenite answers pings) until the stuck client is gone.
        loop {
            match tokio::time::timeout(Duration::from_millis(50), alive.ws.next()).await {
                Err(_) | Ok(Some(Ok(Message::Ping(_)))) => {}
                Ok(other) => panic!("responsive client got {other:?}"),
            }
            let online = gw
                .ok("is_online", "app", json!({"clientId": stuck_id}))
                .await;
            if online == json!({"online": false}) {
                return;
            }
        }
    };
    tokio::time::timeout(common::WAIT, poll_alive)
        .await
        .expect("the stuck client is closed within the wait");

    // The responsive client outlived the idle timeout and still works.
    assert_eq!(
        gw.ok("is_online", "app", json!({"clientId": alive.id}))
            .await,
        json!({"online": true})
    );
    alive.send_text("ping").await;
    assert_eq!(alive.recv_text().await, "pong");

    // The stuck client, polled at last, finds its connection over: the close frame if it
    // reads it before its own queued pongs hit the closed socket, else a reset; never data.
    let mut stuck = stuck;
    let _ = stuck.recv_close().await;
    let next = tokio::time::timeout(common::WAIT, stuck.ws.next())
        .await
        .expect("stream ended");
    assert!(
        !matches!(next, Some(Ok(_))),
        "stuck client still gets messages: {next:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn client_pings_are_answered_with_pongs() {
    let gw = TestGateway::start(config(60_000, 60_000)).await;
    let mut c = RawClient::connect_welcomed(gw.addr, "/api/websocket/ws?systemId=app", None).await;
    c.send_frame(true, raw::PING, b"hello").await;
    let frame = c.read_frame().await.expect("pong");
    assert_eq!(frame.opcode, raw::PONG);
    assert_eq!(frame.payload, b"hello");
    // And a text ping over the raw socket gets a text pong.
    c.send_frame(true, raw::TEXT, b"ping").await;
    let frame = c.read_frame().await.expect("text pong");
    assert_eq!(
        (frame.opcode, frame.payload.as_slice()),
        (raw::TEXT, &b"pong"[..])
    );
    gw.stop().await;
}
