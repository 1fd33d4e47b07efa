//! The test kit enforces the gateway's limits: each host call that breaks one is run against a
//! real gateway and against the kit with the same configuration, and the kit must answer the
//! same WIT error with the same message (names, member data, close codes and reasons, info
//! maps, groups per client and per system, key-value keys and counters, timer delays and
//! payloads, reject codes), and stop sends at the same per-event budget. Before the kit reused
//! the gateway's rules it answered `ok` to all of these but names and close codes, and capped
//! names at 128 bytes where the gateway allows 256.
#![allow(clippy::unwrap_used)]

mod common;
mod plugin_support;

use common::{Client, TestGateway};
use plugin_support::*;
use serde_json::{Value, json};
use wasmgate::Config;
use wasmgate::config::PluginConfig;
use wasmgate_testkit::{Frame, KitError, Sim};

/// Limits low enough to reach with a few calls.
fn limited(mut config: Config) -> Config {
    config.limits.max_name_bytes = 8;
    config.limits.max_groups_per_client = 2;
    config.limits.max_groups_per_system = 3;
    config.limits.max_info_entries = 2;
    config.limits.max_info_bytes = 10;
    config.max_message_size = 256 * 1024;
    config
}

/// One host call by client `who` (0 or 1).
struct Call {
    who: usize,
    call: &'static str,
    args: Value,
}

fn call(who: usize, call: &'static str, args: Value) -> Call {
    Call { who, call, args }
}

/// The calls; every one past the first few breaks a limit.
fn calls() -> Vec<Call> {
    vec![
        // names: 8 bytes pass, 9 do not, empty does not
        call(0, "join-group", json!({"group": "g2345678"})),
        call(0, "join-group", json!({"group": "g23456789"})),
        call(0, "join-group", json!({"group": ""})),
        call(0, "bind-uid", json!({"uid": "u23456789"})),
        call(
            0,
            "send-to-group",
            json!({"group": "g23456789", "msg": "x"}),
        ),
        call(0, "send-to-uid", json!({"uid": "", "msg": "x"})),
        // groups per client (2) and per system (3)
        call(0, "join-group", json!({"group": "b"})),
        call(0, "join-group", json!({"group": "c"})),
        call(1, "join-group", json!({"group": "d"})),
        call(1, "join-group", json!({"group": "e"})),
        // info maps: 2 entries, 10 bytes
        call(
            0,
            "set-info",
            json!({"info": {"a": "1", "b": "2", "c": "3"}}),
        ),
        call(0, "set-info", json!({"info": {"k": "0123456789"}})),
        call(0, "set-info", json!({"info": {"a": "1"}})),
        call(0, "update-info", json!({"info": {"b": "2", "c": "3"}})),
        // close codes and reasons
        call(1, "close-client", json!({"client": "nobody", "code": 999})),
        call(
            1,
            "close-client",
            json!({"client": "nobody", "code": 4000, "reason": "r".repeat(124)}),
        ),
        // key-value keys and counters
        call(0, "kv-set", json!({"key": "", "value": "v"})),
        call(0, "kv-get", json!({"key": "k".repeat(1025)})),
        call(0, "kv-set", json!({"key": "n", "value": "not a number"})),
        call(0, "kv-incr", json!({"key": "n"})),
        call(
            0,
            "kv-set",
            json!({"key": "max", "value": i64::MAX.to_string()}),
        ),
        call(0, "kv-incr", json!({"key": "max"})),
        // timers: delay and payload
        call(
            0,
            "set-timer",
            json!({"delay-ms": 31u64 * 24 * 3600 * 1000}),
        ),
        call(
            0,
            "set-timer",
            json!({"delay-ms": 10, "payload": "p".repeat(64 * 1024 + 1)}),
        ),
    ]
}

/// The reply to a hostcalls command, with the callers' ids replaced by `$0`/`$1`.
fn normalized(reply: &Value, ids: &[String]) -> Value {
    let mut text = reply.to_string();
    for (i, id) in ids.iter().enumerate() {
        text = text.replace(id.as_str(), &format!("${i}"));
    }
    let mut v: Value = serde_json::from_str(&text).unwrap();
    if let Value::Object(map) = &mut v {
        map.remove("id");
    }
    v
}

/// The replies a real gateway gives.
async fn gateway_replies(calls: &[Call]) -> Vec<Value> {
    let dir = folder();
    install(dir.path(), "hostcalls", HOSTCALLS);
    let mut config = limited(config(dir.path()));
    config.plugins.insert(
        "hostcalls".into(),
        PluginConfig {
            systems: vec!["hc".into()],
            ..Default::default()
        },
    );
    let gw = TestGateway::start(config).await;
    let mut clients = [gw.connect("hc").await, gw.connect("hc").await];
    let ids: Vec<String> = clients.iter().map(|c| c.id.clone()).collect();
    let mut out = Vec::new();
    for c in calls {
        let client: &mut Client = &mut clients[c.who];
        let (reply, _) = call_collect(client, c.call, c.args.clone()).await;
        out.push(normalized(&reply, &ids));
    }
    gw.stop().await;
    out
}

/// The replies the kit gives, with the same limits.
fn kit_replies(calls: &[Call]) -> Vec<Value> {
    let mut sim = Sim::builder(HOSTCALLS)
        .system("hc")
        .gateway_config(limited(Config::default()))
        .build()
        .unwrap();
    let ids = [sim.connect().unwrap(), sim.connect().unwrap()];
    let mut out = Vec::new();
    for (n, c) in calls.iter().enumerate() {
        let client = &ids[c.who];
        let req = json!({"call": c.call, "args": c.args, "id": n});
        sim.send_text(client, &req.to_string()).unwrap();
        let reply = sim
            .take_received(client)
            .iter()
            .filter_map(Frame::json)
            .find(|v| v["call"] == c.call)
            .unwrap_or_else(|| panic!("no reply to {}", c.call));
        out.push(normalized(&reply, &ids));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kit_refuses_what_the_gateway_refuses_with_the_same_error() {
    let calls = calls();
    let gateway = gateway_replies(&calls).await;
    let kit = kit_replies(&calls);
    let mut refused = 0;
    for ((c, gw), kit) in calls.iter().zip(&gateway).zip(&kit) {
        assert_eq!(
            kit, gw,
            "{} {}: the kit answered {kit}, the gateway {gw}",
            c.call, c.args
        );
        if gw.get("err").is_some() {
            refused += 1;
        }
    }
    // The calls that break a limit were refused (not silently accepted by both).
    assert!(refused >= 18, "only {refused} refusals: {gateway:#?}");
}

#[test]
fn an_invalid_reject_code_becomes_4000_and_a_long_reason_is_cut() {
    let mut sim = Sim::builder(CONTRACT02).build().unwrap();
    let mut ctx = wasmgate_testkit::empty_context();
    ctx.query = vec![("reject".into(), "1006".into())];
    match sim.connect_with(ctx) {
        Err(KitError::Rejected { code, .. }) => assert_eq!(code, 4000),
        other => panic!("expected a reject, got {other:?}"),
    }
    ctx = wasmgate_testkit::empty_context();
    ctx.query = vec![("reject".into(), "4001".into())];
    assert!(matches!(
        sim.connect_with(ctx),
        Err(KitError::Rejected { code: 4001, .. })
    ));
}

#[test]
fn member_data_is_held_to_the_gateways_limits() {
    let mut sim = Sim::builder(CONTRACT02)
        .gateway_config(limited(Config::default()))
        .build()
        .unwrap();
    let ann = sim.connect().unwrap();
    let ask = |sim: &mut Sim, user: &str, extend: &str| {
        let req = json!({"call": "join-group", "id": 1,
            "args": {"client": ann, "group": "g", "userId": user, "extend": extend}});
        sim.send_text(&ann, &req.to_string()).unwrap();
        sim.take_received(&ann)
            .iter()
            .filter_map(Frame::json)
            .find(|v| v["call"] == "join-group")
            .unwrap()
    };
    assert!(ask(&mut sim, "u2345678", "0123456789").get("ok").is_some());
    let long_user = ask(&mut sim, "u23456789", "");
    assert_eq!(long_user["kind"], "invalid-argument", "{long_user}");
    let long_extend = ask(&mut sim, "u", "0123456789a");
    assert_eq!(long_extend["kind"], "quota-exceeded", "{long_extend}");
}

#[test]
fn an_event_sends_at_most_its_budget() {
    let config = Config {
        max_queue_messages: 5,
        ..Config::default()
    };
    let mut sim = Sim::builder(SPAMMER)
        .gateway_config(config)
        .build()
        .unwrap();
    let ann = sim.connect().unwrap();
    sim.send_text(&ann, "spam").unwrap();
    let spam = sim
        .take_received(&ann)
        .iter()
        .filter(|f| f.as_text() == Some("spam"))
        .count();
    assert_eq!(spam, 5, "sends past max_queue_messages are refused");
}
