//! Direct calls (`host/src/plugin/actor.rs`): a client's message that finds its plugin instance
//! idle is called from the client's own connection task; one that finds it busy waits in the
//! instance's queue. Whichever way each message goes, a client's events stay in order.
#![allow(clippy::unwrap_used)]

mod common;
mod plugin_support;

use plugin_support::*;
use serde_json::Value;

fn direct_calls(entry: &Value) -> u64 {
    entry["directCalls"].as_u64().expect("directCalls")
}

/// Whether any instance of the plugin is held (a call in flight, or its task taking events).
fn busy(entry: &Value) -> bool {
    entry["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .any(|l| l["busy"] == true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_plugin_is_called_from_the_clients_own_task() {
    let dir = folder();
    install(dir.path(), "hostcalls", HOSTCALLS);
    let gw = common::TestGateway::start(config(dir.path())).await;
    let mut client = gw.connect("hostcalls").await;
    // The connect went through the queue; the lane's task may still be finishing its turn
    // (and hold the instance for a moment) when the first reply arrives: wait until it is
    // idle (it takes the lock again only when woken).
    client.send_text("first").await;
    assert_eq!(client.recv_text().await, "echo:first");
    wait_plugin(&gw, "hostcalls", "connect and first handled, idle", |p| {
        p["eventsHandled"] == 2 && !busy(p)
    })
    .await;
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
    instances(&mut config, "hostcalls", 1);
    config.plugin.call_timeout = std::time::Duration::from_secs(2);
    let gw = common::TestGateway::start(config).await;
    let mut spinner = gw.connect("hostcalls").await;
    let mut burst = gw.connect("hostcalls").await;
    let before = direct_calls(&plugin(&gw, "hostcalls").await);
    spinner.send_text("spin:300").await;
    // The spin is under way (its call holds the instance) before the burst starts.
    wait_plugin(&gw, "hostcalls", "the spin runs", busy).await;
    const BURST: usize = 30;
    for n in 0..BURST {
        burst.send_text(&format!("b{n}")).await;
    }
    for n in 0..BURST {
        let reply = burst.recv_text().await;
        assert_eq!(
            reply,
            format!("echo:b{n}"),
            "queued behind the spin, in order"
        );
    }
    assert_eq!(spinner.recv_text().await, "spun");
    let queued = plugin(&gw, "hostcalls").await;
    // The spin itself may have been direct; none of the burst was.
    assert!(
        direct_calls(&queued) - before <= 1,
        "the burst found the instance busy and waited in its queue: {queued}"
    );
    // Idle again (once the lane's task has finished its turn): the next messages are direct,
    // and come after the queued ones.
    let queued = wait_plugin(&gw, "hostcalls", "idle", |p| !busy(p)).await;
    for n in 0..5 {
        burst.send_text(&format!("c{n}")).await;
        assert_eq!(burst.recv_text().await, format!("echo:c{n}"));
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

/// A direct call that traps drops the instance; the lane's task makes the next one at once
/// (its memory shows again), not when the next event arrives, and that event is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_trap_in_a_direct_call_the_next_instance_is_made_at_once() {
    let dir = folder();
    install(dir.path(), "panicker", PANICKER);
    let mut config = config(dir.path());
    instances(&mut config, "panicker", 1);
    let gw = common::TestGateway::start(config).await;
    let mut client = gw.connect("panicker").await;
    wait_plugin(&gw, "panicker", "connect handled, idle", |p| {
        p["eventsHandled"] == 1 && !busy(p)
    })
    .await;
    client.send_text("panic").await;
    let entry = wait_plugin(&gw, "panicker", "trapped, then a new instance", |p| {
        p["traps"] == 1 && p["memoryBytes"].as_u64() > Some(0)
    })
    .await;
    assert_eq!(
        direct_calls(&entry),
        1,
        "the panic was a direct call: {entry}"
    );
    assert_eq!(entry["eventsHandled"], 2, "nothing else was sent: {entry}");
    client.send_text("still there?").await;
    assert_eq!(client.recv_text().await, "still there?");
    gw.stop().await;
}

/// A reply to the sender of a directly called message goes to the queue its connection lent
/// the call (`plugin::state::Caller`), not through a lookup of the client: here the client is
/// no longer in the gateway's tables while its queue lives on, so only that queue can deliver
/// the reply (the lookup answers "unknown client", and a queued message, which carries no
/// queue, is not answered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_to_the_sender_goes_through_the_queue_its_connection_lent() {
    use tokio_tungstenite::tungstenite::Message;
    use wasmgate::gateway::Taken;

    let dir = folder();
    install(dir.path(), "hostcalls", HOSTCALLS);
    let mut config = config(dir.path());
    instances(&mut config, "hostcalls", 1);
    let tg = common::TestGateway::start(config).await;
    let gw = &tg.gateway;
    let (id, mut rx) = gw.connect("hostcalls", None).await.unwrap();
    gw.disconnect("hostcalls", &id, 1000, "gone").await;
    // The close goes through the instance's queue: until its lane is idle again a message is
    // queued, and (carrying no queue) its reply finds no client. Try until one is called
    // directly.
    let mut direct = None;
    for n in 0..200 {
        let text = format!("m{n}");
        match gw.client_message("hostcalls", &id, Message::text(text.clone()), &rx) {
            Taken::Call(call) => {
                call.await;
                direct = Some(text);
                break;
            }
            Taken::Queued => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            _ => panic!("the plugin serves this system"),
        }
    }
    let text = direct.expect("an idle instance is called directly");
    let mut replies = Vec::new();
    while let Some(m) = rx.try_recv() {
        replies.push(m);
    }
    assert_eq!(replies, vec![Message::text(format!("echo:{text}"))]);
    drop(rx);
    tg.stop().await;
}
