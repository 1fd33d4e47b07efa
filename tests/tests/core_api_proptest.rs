//! Property test of the typed API layer: random operations, headers, bodies, names, close
//! codes and pushed payloads go through `app()` (with `oneshot`, no socket) into one gateway
//! whose state carries over from case to case. Every answer must be a 200
//! `{"code":0,"msg":"success","data"}` or a 4xx JSON `{code,msg}` with `code` equal to the
//! status (never a 5xx, never a body that is not JSON); every frame queued to a client must be
//! a well-formed envelope; and after every case the registry must be consistent and within its
//! limits (counts match lists, every member is a client, groups and info within bounds).
//!
//! `PROPTEST_CASES` sets the number of cases: 2000 by default (about a second), 100000 for the
//! long run (`PROPTEST_CASES=100000 cargo test -p wasmgate-tests --test core_api_proptest`).
mod oneshot;

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::Request;
use oneshot::App;
use proptest::collection::{hash_map, vec};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{
    Config as RunnerConfig, RngAlgorithm, TestCaseError, TestRng, TestRunner,
};
use serde_json::{Map, Value, json};
use wasmgate::api::Op;
use wasmgate::outbound::OutboundRx;

/// Clients admitted before the run; bodies name them as `$0`..`$3`.
const CLIENTS: usize = 4;
const MAX_GROUPS_PER_CLIENT: usize = 4;
const MAX_GROUPS_PER_SYSTEM: usize = 8;
const MAX_INFO_ENTRIES: usize = 4;
const MAX_INFO_BYTES: usize = 128;
const MAX_SYSTEMS: usize = 5;
const MAX_NAME_BYTES: usize = 32;
const MAX_BODY: usize = 4096;

/// One random API call.
#[derive(Debug, Clone)]
struct Call {
    method: &'static str,
    op: String,
    system: Option<String>,
    body: Vec<u8>,
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-d]{1,2}",
        1 => Just(String::new()),
        1 => (MAX_NAME_BYTES - 2..MAX_NAME_BYTES + 3).prop_map(|n| "n".repeat(n)),
        1 => any::<String>(),
    ]
}

fn client_ref() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => (0..CLIENTS).prop_map(|i| json!(format!("${i}"))),
        1 => Just(json!("")),
        1 => "[0-9a-f]{32}".prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            hash_map(".{0,6}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn info() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => hash_map("[a-f]{1,3}", ".{0,40}", 0..7)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k, json!(v))).collect())),
        1 => json_value(),
    ]
}

/// A body built from the fields the operations read, each present or not, right or wrong.
fn body_object() -> impl Strategy<Value = Value> {
    (
        proptest::option::of(client_ref()),
        proptest::option::of(vec(client_ref(), 0..5)),
        proptest::option::of(prop_oneof![4 => name().prop_map(Value::from), 1 => json_value()]),
        proptest::option::of(prop_oneof![4 => name().prop_map(Value::from), 1 => json_value()]),
        proptest::option::of(info()),
        proptest::option::of(prop_oneof![
            select(vec![
                999i64, 1000, 1001, 1005, 1006, 2999, 3000, 4999, 5000, 70000, -1
            ]),
            any::<i64>(),
        ]),
        proptest::option::of(".{0,130}"),
        proptest::option::of(json_value()),
        proptest::option::of(name()),
        (
            proptest::option::of(".{0,40}"),
            proptest::option::of(".{0,200}"),
        ),
    )
        .prop_map(
            |(client, clients, group, uid, info, code, reason, data, system, (user, extend))| {
                let mut m = Map::new();
                let mut put = |k: &str, v: Option<Value>| {
                    if let Some(v) = v {
                        m.insert(k.to_owned(), v);
                    }
                };
                put("clientId", client);
                put("clientIds", clients.map(Value::Array));
                put("groupName", group);
                put("uid", uid);
                put("info", info);
                put("code", code.map(Value::from));
                put("reason", reason.map(Value::from));
                put("data", data);
                put("systemId", system.map(Value::from));
                put("userId", user.map(Value::from));
                put("extend", extend.map(Value::from));
                Value::Object(m)
            },
        )
}

fn call() -> impl Strategy<Value = Call> {
    let ops: Vec<String> = Op::ALL.iter().map(|op| op.name().to_owned()).collect();
    (
        prop_oneof![12 => Just("POST"), 1 => Just("GET"), 1 => Just("PUT")],
        prop_oneof![12 => select(ops), 1 => "[a-z_%/]{0,12}"],
        prop_oneof![
            8 => Just(Some("app".to_owned())),
            1 => Just(None),
            2 => name().prop_map(Some),
        ],
        prop_oneof![
            12 => body_object().prop_map(|v| v.to_string().into_bytes()),
            1 => vec(any::<u8>(), 0..64),
            1 => (MAX_BODY - 8..MAX_BODY + 64).prop_map(|n| {
                format!("{{\"data\":\"{}\"}}", "x".repeat(n)).into_bytes()
            }),
            1 => json_value().prop_map(|v| v.to_string().into_bytes()),
        ],
    )
        .prop_map(|(method, op, system, body)| Call {
            method,
            op,
            system,
            body,
        })
}

struct World {
    app: App,
    /// Answers by status, reported at the end (a run that never reached 200 or a limit would
    /// prove little).
    statuses: std::collections::BTreeMap<u16, u32>,
    clients: Vec<String>,
    queues: Vec<OutboundRx>,
}

impl World {
    async fn new() -> World {
        let mut config = App::config_with(&["app"]);
        config.max_body_size = MAX_BODY;
        config.max_queue_bytes = 64 * 1024;
        config.limits.max_name_bytes = MAX_NAME_BYTES;
        config.limits.max_groups_per_client = MAX_GROUPS_PER_CLIENT;
        config.limits.max_groups_per_system = MAX_GROUPS_PER_SYSTEM;
        config.limits.max_info_entries = MAX_INFO_ENTRIES;
        config.limits.max_info_bytes = MAX_INFO_BYTES;
        config.limits.max_systems = MAX_SYSTEMS;
        let app = App::new(config).await;
        let mut clients = Vec::new();
        let mut queues = Vec::new();
        for _ in 0..CLIENTS {
            let (id, rx) = app.client("app").await;
            clients.push(id);
            queues.push(rx);
        }
        World {
            app,
            statuses: Default::default(),
            clients,
            queues,
        }
    }

    /// `$i` placeholders replaced by client ids.
    fn resolve(&self, body: &[u8]) -> Vec<u8> {
        let mut text = String::from_utf8_lossy(body).into_owned();
        if !text.contains('$') || std::str::from_utf8(body).is_err() {
            return body.to_vec();
        }
        for (i, id) in self.clients.iter().enumerate() {
            text = text.replace(&format!("\"${i}\""), &format!("\"{id}\""));
        }
        text.into_bytes()
    }

    async fn run(&mut self, c: &Call) -> Result<(), String> {
        let mut req = Request::builder()
            .method(c.method)
            .uri(format!("/api/websocket/{}", c.op));
        if let Some(system) = &c.system {
            req = req.header("systemId", system.as_bytes());
        }
        let Ok(req) = req.body(Body::from(self.resolve(&c.body))) else {
            return Ok(()); // not a request an HTTP client could send (bad header or URI)
        };
        let a = self.app.send(req).await;
        *self.statuses.entry(a.status).or_default() += 1;
        match a.status {
            200 => {
                if a.json["code"] != 0 || a.json["msg"] != "success" || a.json.get("data").is_none()
                {
                    return Err(format!("bad success: {}", a.text));
                }
            }
            400..=499 if a.is_error_json() => {}
            _ => return Err(format!("{} {}", a.status, a.text)),
        }
        self.check_frames()?;
        self.check_state().await
    }

    /// Every frame queued to a client is an envelope `{messageId,sendUserId,code,msg,data}`.
    fn check_frames(&mut self) -> Result<(), String> {
        for rx in &mut self.queues {
            while let Some(msg) = rx.try_recv() {
                let text = msg.to_text().map_err(|e| format!("frame not text: {e}"))?;
                let v: Value =
                    serde_json::from_str(text).map_err(|e| format!("frame not JSON: {e}"))?;
                let keys: BTreeSet<&str> = v
                    .as_object()
                    .map(|o| o.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                let want: BTreeSet<&str> = ["messageId", "sendUserId", "code", "msg", "data"]
                    .into_iter()
                    .collect();
                if keys != want {
                    return Err(format!("frame is not an envelope: {text}"));
                }
            }
        }
        Ok(())
    }

    async fn check_state(&self) -> Result<(), String> {
        let app = &self.app;
        let reg = app.gateway.registry();
        let online = app.ok("get_online_list", "app", json!({})).await;
        let count = app.ok("get_all_client_count", "app", json!({})).await;
        if online["count"] != count["count"]
            || online["count"] != online["list"].as_array().map_or(0, Vec::len)
        {
            return Err(format!("counts differ: {online} {count}"));
        }
        let clients: BTreeSet<String> = reg
            .clients("app")
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .collect();
        let groups = app.ok("get_all_groups", "app", json!({})).await;
        let list = groups["list"].as_array().cloned().unwrap_or_default();
        if groups["count"] != list.len() || list.len() > MAX_GROUPS_PER_SYSTEM {
            return Err(format!("groups: {groups}"));
        }
        for g in &list {
            let g = g.as_str().unwrap_or_default();
            let members = reg
                .group_clients("app", g)
                .await
                .map_err(|e| e.to_string())?;
            if members.is_empty() || members.iter().any(|m| !clients.contains(m)) {
                return Err(format!("group {g} has members {members:?}"));
            }
            let n = app
                .ok("get_client_count_by_group", "app", json!({"groupName": g}))
                .await;
            if n["count"] != members.len() {
                return Err(format!("group {g}: count {n} vs {}", members.len()));
            }
        }
        for c in &clients {
            let in_groups = reg
                .client_groups("app", c)
                .await
                .map_err(|e| e.to_string())?;
            if in_groups.len() > MAX_GROUPS_PER_CLIENT {
                return Err(format!("client {c} in {} groups", in_groups.len()));
            }
            for g in &in_groups {
                let members = reg
                    .group_clients("app", g)
                    .await
                    .map_err(|e| e.to_string())?;
                if !members.contains(c) {
                    return Err(format!("client {c} thinks it is in {g}"));
                }
            }
            let info = reg.info("app", c).await.map_err(|e| e.to_string())?;
            let bytes: usize = info.iter().map(|(k, v)| k.len() + v.len()).sum();
            if info.len() > MAX_INFO_ENTRIES || bytes > MAX_INFO_BYTES {
                return Err(format!("client {c} info {info:?}"));
            }
        }
        for uid in reg.uids("app").await.map_err(|e| e.to_string())? {
            let bound = reg
                .clients_by_uid("app", &uid)
                .await
                .map_err(|e| e.to_string())?;
            if bound.is_empty() || bound.iter().any(|b| !clients.contains(b)) {
                return Err(format!("uid {uid} bound to {bound:?}"));
            }
        }
        if reg.systems().await.expect("local registry answers").len() > MAX_SYSTEMS {
            return Err("too many systems".into());
        }
        Ok(())
    }
}

#[test]
fn random_api_calls_answer_200_or_4xx_json_and_keep_the_registry_consistent() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let world = std::cell::RefCell::new(rt.block_on(World::new()));
    // A fixed seed: the run must reach every status class below (a limit's 429 among
    // them), and with a random seed 2000 cases once did not (CI, 2026-11-29). Longer or other
    // runs: PROPTEST_CASES, PROPTEST_SEED.
    let seed: u64 = std::env::var("PROPTEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        RunnerConfig {
            cases,
            failure_persistence: None,
            ..RunnerConfig::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let started = std::time::Instant::now();
    let result = runner.run(&call(), |c| {
        rt.block_on(world.borrow_mut().run(&c))
            .map_err(TestCaseError::fail)
    });
    let statuses = world.borrow().statuses.clone();
    report(cases, started.elapsed(), &statuses);
    for status in [200, 400, 404, 413, 429] {
        assert!(
            statuses.contains_key(&status),
            "no {status} in {statuses:?}"
        );
    }
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Say how long the run took and what it answered (visible with `--nocapture`).
#[allow(clippy::print_stderr)]
fn report(cases: u32, took: std::time::Duration, statuses: &std::collections::BTreeMap<u16, u32>) {
    eprintln!("{cases} cases in {took:.1?}, answers by status: {statuses:?}");
}
