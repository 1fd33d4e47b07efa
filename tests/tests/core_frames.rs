//! Frames on the wire: a push no queue could take is refused, a client over the frame limit
//! always gets its 1009 close frame rather than a reset, and a client leaving without a close
//! frame is an abnormal closure (1006), not a protocol error. What one big push costs in memory
//! is measured in `core_frames_memory.rs`, alone in its process.
#![allow(clippy::unwrap_used)]

mod common;
mod plugin_support;

use common::raw::{self, RawClient};
use common::{TestGateway, eventually, metric_sum};
use plugin_support::{HOSTCALLS, install};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use wasmgate::config::PluginConfig;

const WS_PATH: &str = "/api/websocket/ws?systemId=app";

/// A message larger than `max_queue_bytes` could never be delivered within the per-client
/// bound: refused (413, naming the limit), and nobody is closed for it.
#[tokio::test]
async fn a_push_over_max_queue_bytes_is_refused_and_the_clients_stay() {
    let mut config = TestGateway::config_with(&["app"]);
    config.max_queue_bytes = 4096;
    let gw = TestGateway::start(config).await;
    let mut client = gw.connect("app").await;
    for op in ["send_to_system", "send_to_client"] {
        let (status, body) = gw
            .api(
                op,
                "app",
                json!({"clientId": client.id, "data": "x".repeat(5000)}),
            )
            .await;
        assert_eq!(status, 413, "{op}: {body}");
        assert_eq!(body["code"], 413, "{body}");
        let msg = body["msg"].as_str().unwrap();
        assert!(
            msg.contains("max_queue_bytes") && msg.contains("4096"),
            "{msg}"
        );
    }
    gw.ok(
        "send_to_client",
        "app",
        json!({"clientId": client.id, "data": "still here"}),
    )
    .await;
    assert_eq!(client.recv_json().await["data"], "still here");
    gw.stop().await;
}

/// A message over the limit, sent as many small fragments, one write each (as a client library
/// sends them): the gateway stops reading after the limit, with the client still writing.
/// Closing the socket with unread input made the kernel answer with a reset, and the client saw
/// its next write fail instead of reading the close frame (32 of 50 runs in the report). The
/// gateway now lingers, reading and discarding, so the client's writes go through and it reads
/// its 1009 close frame.
#[tokio::test]
async fn a_fragmented_message_over_the_limit_always_gets_its_1009_close_frame() {
    let mut config = TestGateway::config_with(&["app"]);
    config.max_message_size = 1024;
    let gw = TestGateway::start(config).await;
    let frames = 4096;
    let first = raw::encode_frame(false, raw::TEXT, &[b'a'; 64]);
    let more = raw::encode_frame(false, 0x0, &[b'b'; 64]);
    let last = raw::encode_frame(true, 0x0, &[b'c'; 64]);
    for run in 0..50 {
        let mut client = RawClient::connect_welcomed(gw.addr, WS_PATH, None).await;
        for i in 0..frames {
            let frame = match i {
                0 => &first,
                _ if i == frames - 1 => &last,
                _ => &more,
            };
            if let Err(err) = client.stream.write_all(frame).await {
                panic!("run {run}: the gateway reset the connection at frame {i}: {err}");
            }
        }
        let mut seen = Vec::new();
        assert_eq!(
            client.read_until_close(&mut seen).await,
            Some((1009, "message too big".to_owned())),
            "run {run}: no close frame"
        );
    }
    let gw_ref = &gw;
    eventually("every run counted as too_big", || async move {
        let text = gw_ref.gateway.metrics().render();
        metric_sum(&text, "wasmgate_disconnects_total{reason=\"too_big\"") == 50.0
    })
    .await;
    gw.stop().await;
}

/// The next `on-close` report of the `hostcalls` guest (`{"closed","code","reason"}`), skipping
/// group notices (whose codes, 1001 and 1002, a close code may equal).
async fn recv_closed(watcher: &mut common::Client) -> serde_json::Value {
    loop {
        let v = watcher.recv_json().await;
        if v.get("closed").is_some() {
            return v;
        }
    }
}

/// Phones and killed tabs leave without a close frame (a TCP reset, or an EOF): that is an
/// abnormal closure, 1006, in the plugin's `on-close` and in the metrics, not a protocol error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_without_a_close_frame_is_an_abnormal_closure() {
    let dir = plugin_support::folder();
    install(dir.path(), "hostcalls", HOSTCALLS);
    let mut config = plugin_support::config(dir.path());
    config.plugins.insert(
        "hostcalls".into(),
        PluginConfig {
            systems: vec!["app".into()],
            config: String::new(),
            ..Default::default()
        },
    );
    let gw = TestGateway::start(config).await;
    let mut watcher = gw.connect("app").await;
    plugin_support::ok(
        &mut watcher,
        "join-group",
        json!({"group": "close-watchers"}),
    )
    .await;

    // A reset: SO_LINGER 0, then close.
    let reset = RawClient::connect_welcomed(gw.addr, WS_PATH, None).await;
    let reset_id = reset.id.clone();
    reset.stream.set_zero_linger().unwrap();
    drop(reset);
    let closed = recv_closed(&mut watcher).await;
    assert_eq!(closed["closed"], reset_id.as_str(), "{closed}");
    assert_eq!(closed["code"], 1006, "{closed}");

    // An EOF: the socket closed without a close frame.
    let mut eof = RawClient::connect_welcomed(gw.addr, WS_PATH, None).await;
    let eof_id = eof.id.clone();
    eof.stream.shutdown().await.unwrap();
    let closed = recv_closed(&mut watcher).await;
    assert_eq!(closed["closed"], eof_id.as_str(), "{closed}");
    assert_eq!(closed["code"], 1006, "{closed}");
    drop(eof);

    let gw_ref = &gw;
    eventually("both counted as abnormal", || async move {
        let text = gw_ref.gateway.metrics().render();
        metric_sum(&text, "wasmgate_disconnects_total{reason=\"abnormal\"") == 2.0
    })
    .await;
    let text = gw.gateway.metrics().render();
    assert_eq!(
        metric_sum(
            &text,
            "wasmgate_disconnects_total{reason=\"protocol_error\""
        ),
        0.0
    );
    gw.stop().await;
}
