//! A pooled plugin (`instances = 2`): every client's events reach one instance, in order, and
//! the pool really spreads clients over its instances (both handle events). The other plugin
//! tests run once more with every plugin pooled (`WASMGATE_TEST_PLUGIN_INSTANCES=2` in
//! `scripts/test.sh`), which covers reload under load, traps, timers and fairness with N = 2.
#![allow(clippy::unwrap_used)]

mod common;
mod plugin_support;

use futures_util::{SinkExt, StreamExt};
use plugin_support::*;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// Clients; with FNV-1a of random ids over 2 lanes, all on one lane has odds 2^-19.
const CLIENTS: usize = 20;
/// Messages each client sends back to back.
const MESSAGES: u64 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_plugin_spreads_clients_over_its_instances_and_keeps_each_clients_order() {
    let dir = folder();
    install(dir.path(), "versioned", VERSIONED_1);
    let mut config = config(dir.path());
    instances(&mut config, "versioned", 2);
    let gw = common::TestGateway::start(config).await;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let client = gw.connect("versioned").await;
        tasks.push(tokio::spawn(async move {
            let (mut tx, mut rx) = client.ws.split();
            for n in 0..MESSAGES {
                tx.send(Message::text(n.to_string())).await.unwrap();
            }
            let mut next = 0;
            while next < MESSAGES {
                let msg = tokio::time::timeout(common::WAIT, rx.next())
                    .await
                    .expect("a reply within 5 s");
                let Some(Ok(Message::Text(text))) = msg else {
                    continue;
                };
                assert_eq!(text.as_str(), format!("v1:{next}"), "in order, once each");
                next += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let entry = plugin(&gw, "versioned").await;
    let lanes = entry["instances"].as_array().expect("per-instance figures");
    assert_eq!(lanes.len(), 2, "{entry}");
    let handled: Vec<u64> = lanes
        .iter()
        .map(|l| l["eventsHandled"].as_u64().unwrap())
        .collect();
    assert!(
        handled.iter().all(|&n| n > 0),
        "both instances work: {handled:?}"
    );
    assert_eq!(
        handled.iter().sum::<u64>(),
        entry["eventsHandled"].as_u64().unwrap(),
        "the aggregate is the sum"
    );
    assert!(
        lanes.iter().all(|l| l["memoryBytes"].as_u64() > Some(0)),
        "each instance reports its linear memory: {entry}"
    );
    assert_eq!(entry["traps"], Value::from(0));
}

/// A call's deadline counts the time its guest runs, not the time it waits: here every event
/// takes the plugin's key-value turn and then runs 60 ms of a 100 ms deadline, so on the other
/// instance an event waits up to 60 ms for the turn before it runs its own 60 ms. Measured by
/// the wall clock (before), such events trapped as "deadline exceeded".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_the_key_value_turn_does_not_count_against_the_deadline() {
    let dir = folder();
    install(dir.path(), "hostcalls", HOSTCALLS);
    let mut config = config(dir.path());
    config.plugin.call_timeout = std::time::Duration::from_millis(100);
    instances(&mut config, "hostcalls", 2);
    let gw = common::TestGateway::start(config).await;
    // 12 clients: all on one instance (no waiting at all) has odds 2^-11.
    let mut clients = Vec::new();
    for _ in 0..12 {
        clients.push(gw.connect("hostcalls").await);
    }
    let mut tasks = Vec::new();
    for client in clients {
        tasks.push(tokio::spawn(async move {
            let (mut tx, mut rx) = client.ws.split();
            tx.send(Message::text("spin-kv:60")).await.unwrap();
            loop {
                let msg = tokio::time::timeout(common::WAIT, rx.next())
                    .await
                    .expect("an answer within 5 s");
                if let Some(Ok(Message::Text(text))) = msg {
                    return text.to_string();
                }
            }
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), "spun");
    }
    let entry = plugin(&gw, "hostcalls").await;
    assert_eq!(entry["traps"], Value::from(0), "{entry}");
}
