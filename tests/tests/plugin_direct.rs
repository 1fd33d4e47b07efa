//! Direct calls (`host/src/plugin/actor.rs`): a client's message that finds its plugin instance
//! idle is called from the client's own connection task; one that finds it busy waits in the
//! instance's queue. Whichever way each message goes, a client's events stay in order.
#![allow(clippy::unwrap_used)]

mod common;
mod plugin_support;

use futures_util::{SinkExt, StreamExt};
use plugin_support::*;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use wasmgate::config::{Instances, PluginConfig};

fn direct_calls(entry: &Value) -> u64 {
    entry["directCalls"].as_u64().expect("directCalls")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_plugin_is_called_from_the_clients_own_task() {
    let dir = folder();
    install(dir.path(), "hostcalls", HOSTCALLS);
    let gw = common::TestGateway::start(config(dir.path())).await;
    let mut client = gw.connect("hostcalls").await;
    // The connect went through the queue; the lane's task may still be finishing its turn
    // (and hold the instance for a moment) when the first reply arrives: let it settle.
    client.send_text("first").await;
    assert_eq!(client.recv_text().await, "echo:first");
    wait_plugin(&gw, "hostcalls", "connect and first handled", |p| {
        p["eventsHandled"] == 2
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let before = direct_calls(&plugin(&gw, "hostcalls").await);
    for n in 0..20 {
        client.send_text(&format!("m{n}")).await;
        assert_eq!(client.recv_text().await, format!("echo:m{n}"));
    }
    let entry = plugin(&gw, "hostcalls").await;
    // One request at a time, nobody else: each finds the instance idle.
    assert_eq!(direct_calls(&entry) - before, 20, "{entry}");
    assert_eq!(entry["eventsHandled"], 22, "{entry}");
    let lanes = entry["instances"].as_array().expect("instances");
    assert_eq!(
        lanes.iter().map(direct_calls).sum::<u64>(),
        direct_calls(&entry),
        "the aggregate is the sum: {entry}"
    );
    gw.stop().await;
}

/// One instance, busy for 300 ms with a client's `spin`: another client's burst waits in the
/// queue behind it, is answered in order, and once the queue is empty its next messages are
/// called directly again, still in order after the queued ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_plugin_queues_and_each_client_keeps_its_order() {
    let dir = folder();
    install(dir.path(), "hostcalls", HOSTCALLS);
    let mut config = config(dir.path());
    config.plugins.insert(
        "hostcalls".into(),
        PluginConfig {
            instances: Some(Instances::Count(1)),
            ..Default::default()
        },
    );
    config.plugin.call_timeout = std::time::Duration::from_secs(2);
    let gw = common::TestGateway::start(config).await;
    let mut spinner = gw.connect("hostcalls").await;
    let burst = gw.connect("hostcalls").await;
    let before = direct_calls(&plugin(&gw, "hostcalls").await);
    spinner.send_text("spin:300").await;
    // The spin is under way (its call holds the instance) before the burst starts.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let (mut tx, mut rx) = burst.ws.split();
    const BURST: usize = 30;
    for n in 0..BURST {
        tx.send(Message::text(format!("b{n}"))).await.unwrap();
    }
    let mut replies = Vec::new();
    while replies.len() < BURST {
        let msg = tokio::time::timeout(common::WAIT, rx.next())
            .await
            .expect("a reply within 5 s");
        if let Some(Ok(Message::Text(text))) = msg {
            replies.push(text.to_string());
        }
    }
    let expected: Vec<String> = (0..BURST).map(|n| format!("echo:b{n}")).collect();
    assert_eq!(replies, expected, "queued behind the spin, in order");
    assert_eq!(spinner.recv_text().await, "spun");
    let queued = plugin(&gw, "hostcalls").await;
    assert!(
        direct_calls(&queued) - before < BURST as u64,
        "the burst found the instance busy and waited in its queue: {queued}"
    );
    // Idle again (once the lane's task has finished its turn): the next messages are direct,
    // and come after the queued ones.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    for n in 0..5 {
        tx.send(Message::text(format!("c{n}"))).await.unwrap();
        loop {
            let msg = tokio::time::timeout(common::WAIT, rx.next())
                .await
                .expect("a reply within 5 s");
            if let Some(Ok(Message::Text(text))) = msg {
                assert_eq!(text.as_str(), format!("echo:c{n}"));
                break;
            }
        }
    }
    let after = plugin(&gw, "hostcalls").await;
    assert_eq!(
        direct_calls(&after),
        direct_calls(&queued) + 5,
        "called directly once idle: {after}"
    );
    assert_eq!(after["traps"], 0, "{after}");
    gw.stop().await;
}
