//! Measures the chat plugins in Rust, C, JavaScript and Python through a real gateway, for
//! BENCHMARKS.md (no assertions on timings anywhere: this only prints).
//!
//! ```sh
//! cargo run --release -p wasmgate-tests --example lang_bench [-- <messages per language>]
//! ```
//!
//! 1. **Hot reload**: time from writing a new `.wasm` file (atomic rename) to `GET /api/plugins`
//!    showing the new version serving, with the reload debounce at 50 ms, for code that must be
//!    compiled (a fresh compile cache), code read from the disk cache (a second gateway on the
//!    same cache folder) and code this gateway already holds in memory (swapping back).
//! 2. **Cost of one `on-message` that calls `send-to-group` once**: the chat event `say` to a
//!    room whose only member is the sender (JSON parse, `get-client-ids-by-group`,
//!    `get-uid-by-client-id`, one `send-to-group` to one client, one `send-to-client` reply),
//!    and the plain `hello` (one `send-to-client`) for reference. Per message: the mean plugin
//!    call as timed by the gateway (`wasmgate_plugin_call_seconds`), the CPU time of the
//!    plugin's actor thread, and the CPU time of the whole gateway (its tokio runtime plus the
//!    actor; the 5 ms epoch ticker excluded); plus the round trip of one client sending one
//!    message at a time.
//!
//! The gateway runs in this process on its own single-worker tokio runtime (threads named
//! `gw`), the load on another (`load`): the per-thread CPU times of `/proc/self/task` separate
//! them. The components come from the same builds as the tests (`tests/tests/lang`).
#![allow(clippy::unwrap_used, clippy::print_stdout, dead_code)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/lang/mod.rs"]
mod lang;
#[path = "../tests/plugin_support/mod.rs"]
mod plugin_support;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Client, TestGateway, metric_sum};
use futures_util::{SinkExt, StreamExt};
use lang::Lang;
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::Message;
use wasmgate::Config;

/// Reload measurements per code source.
const RELOADS: usize = 3;
/// Concurrent clients of the throughput run, and messages each keeps in flight.
const CLIENTS: usize = 4;
const WINDOW: usize = 8;
/// Sequential round trips of the latency run.
const ROUND_TRIPS: usize = 1000;

/// One plugin under measurement.
struct Subject {
    /// Row label.
    label: &'static str,
    /// Plugin (and system) name.
    name: &'static str,
    /// Version 1 and a different build (version 2 for the languages; for Rust, the same code
    /// with other bytes).
    v1: Vec<u8>,
    v2: Vec<u8>,
    /// What `version` answers in `v2`.
    v2_answers: &'static str,
    /// The answer to `hello`.
    hello: String,
}

fn subjects(load: &Runtime) -> Vec<Subject> {
    let mut out = vec![Subject {
        label: "Rust",
        name: "chat",
        v1: std::fs::read(plugin_support::CHAT).unwrap(),
        v2: plugin_support::variant(plugin_support::CHAT, "bench-2"),
        v2_answers: "1",
        hello: "hello from rust".into(),
    }];
    for (label, lang) in [
        ("C", Lang::C),
        ("JavaScript", Lang::Js),
        ("Python", Lang::Python),
    ] {
        let v1 = load.block_on(lang::component(lang, 1));
        let v2 = load.block_on(lang::component(lang, 2));
        out.push(Subject {
            label,
            name: lang.plugin(),
            v1: std::fs::read(v1).unwrap(),
            v2: std::fs::read(v2).unwrap(),
            v2_answers: "2",
            hello: lang.hello().into(),
        });
    }
    out
}

fn config(dir: &Path, cache: &Path) -> Config {
    let mut config = Config {
        plugins_dir: Some(dir.to_path_buf()),
        cache_dir: Some(cache.to_path_buf()),
        ..Config::default()
    };
    config.plugin.reload_debounce = Duration::from_millis(50);
    config
}

/// Start a gateway on the `gw` runtime.
fn start(gw_rt: &Runtime, config: Config) -> TestGateway {
    gw_rt.block_on(TestGateway::start(config))
}

/// Poll `/api/plugins` every 2 ms until `name` serves a version other than `old`.
async fn wait_version(gw: &TestGateway, name: &str, old: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let p = plugin_support::plugin(gw, name).await;
        if p["version"].is_string() && p["version"] != *old {
            return p;
        }
        assert!(Instant::now() < deadline, "{name} never reloaded: {p}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Write `bytes` as the plugin's file; the time until the new version serves, and its code
/// source.
async fn reload(gw: &TestGateway, dir: &Path, name: &str, bytes: &[u8]) -> (Duration, String) {
    let old = plugin_support::plugin(gw, name).await["version"].clone();
    let t = Instant::now();
    plugin_support::install_bytes(dir, name, bytes);
    let entry = wait_version(gw, name, &old).await;
    let took = t.elapsed();
    assert_eq!(entry["lastError"], Value::Null, "{entry}");
    (took, entry["code"].as_str().unwrap_or_default().to_owned())
}

fn fmt_times(times: &[Duration]) -> String {
    let ms: Vec<String> = times
        .iter()
        .map(|d| format!("{:.0}", d.as_secs_f64() * 1000.0))
        .collect();
    format!("{} ms", ms.join(" / "))
}

/// Hot reload times for one plugin: compile, disk cache, memory.
fn reloads(gw_rt: &Runtime, load: &Runtime, s: &Subject) -> [String; 4] {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Distinct bytes per measurement: each a version no cache has seen.
    let fresh: Vec<Vec<u8>> = (0..RELOADS)
        .map(|k| with_tag(&s.v2, &format!("reload-{k}")))
        .collect();

    plugin_support::install_bytes(dir.path(), s.name, &s.v1);
    let t = Instant::now();
    let gw = start(gw_rt, config(dir.path(), cache.path()));
    let first_start = t.elapsed();
    let mut compiled = Vec::new();
    let mut memory = Vec::new();
    load.block_on(async {
        // The new build answers its new version.
        let mut c = gw.connect(s.name).await;
        for bytes in &fresh {
            let (took, code) = reload(&gw, dir.path(), s.name, bytes).await;
            assert_eq!(code, "compiler");
            compiled.push(took);
            c.send_text(r#"{"event":"version"}"#).await;
            assert_eq!(c.recv_json().await["data"]["version"], s.v2_answers);
            // Back to version 1: this gateway compiled it at start.
            let (took, code) = reload(&gw, dir.path(), s.name, &s.v1).await;
            assert_eq!(code, "memory");
            memory.push(took);
        }
        c.close().await;
    });
    load.block_on(gw.stop());

    // A second gateway, same cache folder: every version is on disk.
    let dir = tempfile::tempdir().unwrap();
    plugin_support::install_bytes(dir.path(), s.name, &s.v1);
    let gw = start(gw_rt, config(dir.path(), cache.path()));
    let mut disk = Vec::new();
    load.block_on(async {
        for bytes in &fresh {
            let (took, code) = reload(&gw, dir.path(), s.name, bytes).await;
            assert_eq!(code, "disk-cache");
            disk.push(took);
        }
    });
    load.block_on(gw.stop());
    [
        format!("{:.0} ms", first_start.as_secs_f64() * 1000.0),
        fmt_times(&compiled),
        fmt_times(&disk),
        fmt_times(&memory),
    ]
}

/// `bytes` with a custom section naming `tag` appended: same code, another version.
fn with_tag(bytes: &[u8], tag: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.wasm");
    std::fs::write(&path, bytes).unwrap();
    plugin_support::variant(path.to_str().unwrap(), tag)
}

/// CPU time (user + system) of this process's threads whose name `pick` accepts.
fn cpu(pick: impl Fn(&str) -> bool) -> Duration {
    let ticks_per_s = 100.0; // USER_HZ on Linux
    let mut ticks = 0u64;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    for task in tasks.filter_map(Result::ok) {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !pick(comm.trim()) {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // Fields after the command name: state is field 3; utime and stime are 14 and 15.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        ticks += num(11) + num(12);
    }
    Duration::from_secs_f64(ticks as f64 / ticks_per_s)
}

/// The actor thread's name as the kernel keeps it (15 bytes).
fn actor_comm(name: &str) -> String {
    format!("plugin-{name}").chars().take(15).collect()
}

/// What one message costs, measured over a run.
struct Cost {
    /// Messages handled.
    messages: u64,
    /// Wall time of the run.
    wall: Duration,
    /// Mean plugin call, as timed by the gateway.
    call: Duration,
    /// CPU of the plugin's actor thread, per message.
    actor: Duration,
    /// CPU of the whole gateway, per message.
    gateway: Duration,
}

fn call_totals(gw: &TestGateway, name: &str) -> (f64, f64) {
    let text = gw.gateway.metrics().render();
    (
        metric_sum(
            &text,
            &format!("wasmgate_plugin_call_seconds_sum{{plugin=\"{name}\""),
        ),
        metric_sum(
            &text,
            &format!("wasmgate_plugin_call_seconds_count{{plugin=\"{name}\""),
        ),
    )
}

/// Frames the plugin sends back per request: `say` → the `said` push and the reply; `hello` →
/// its answer.
fn frames_per_request(frame: &str) -> usize {
    if frame == "hello" { 1 } else { 2 }
}

/// Each client keeps [`WINDOW`] copies of its frame in flight until `per_client` requests are
/// answered.
async fn drive(clients: &mut [Client], frames: &[String], per_client: usize) {
    let runs = clients.iter_mut().zip(frames).map(|(c, frame)| async move {
        let per_request = frames_per_request(frame);
        let (mut sent, mut received) = (0usize, 0usize);
        while received < per_client * per_request {
            while sent < per_client && sent - received / per_request < WINDOW {
                c.ws.feed(Message::text(frame.as_str())).await.unwrap();
                sent += 1;
            }
            c.ws.flush().await.unwrap();
            match c.ws.next().await {
                Some(Ok(Message::Text(_))) => received += 1,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    });
    futures_util::future::join_all(runs).await;
}

fn measure(gw: &TestGateway, load: &Runtime, s: &Subject, frame: &str, per_client: usize) -> Cost {
    let comm = actor_comm(s.name);
    load.block_on(async {
        let mut clients = Vec::new();
        for i in 0..CLIENTS {
            let mut c = gw.connect(s.name).await;
            c.send_text(&json!({"event": "join", "data": {"room": format!("r{i}")}}).to_string())
                .await;
            assert_eq!(c.recv_json().await["code"], 0);
            clients.push(c);
        }
        // Each client says things in its own room, where it is alone.
        let frames: Vec<String> = (0..CLIENTS)
            .map(|i| {
                if frame == "hello" {
                    "hello".to_owned()
                } else {
                    json!({"event": "say", "data": {"room": format!("r{i}"), "text": "hi"}})
                        .to_string()
                }
            })
            .collect();
        drive(&mut clients, &frames, 200).await; // warm-up
        let (sum0, n0) = call_totals(gw, s.name);
        let actor0 = cpu(|t| t == comm);
        let gw0 = cpu(|t| t == "gw" || t == comm);
        let t = Instant::now();
        drive(&mut clients, &frames, per_client).await;
        let wall = t.elapsed();
        let (sum1, n1) = call_totals(gw, s.name);
        let messages = (n1 - n0) as u64;
        let per = |d: Duration| d / u32::try_from(messages.max(1)).unwrap_or(u32::MAX);
        let cost = Cost {
            messages,
            wall,
            call: Duration::from_secs_f64((sum1 - sum0) / (n1 - n0).max(1.0)),
            actor: per(cpu(|t| t == comm) - actor0),
            gateway: per(cpu(|t| t == "gw" || t == comm) - gw0),
        };
        for c in clients {
            c.close().await;
        }
        cost
    })
}

/// Median round trip of one client sending `say` (or `hello`) one at a time.
fn round_trip(gw: &TestGateway, load: &Runtime, s: &Subject, frame: &str) -> Duration {
    load.block_on(async {
        let mut c = gw.connect(s.name).await;
        c.send_text(r#"{"event":"join","data":{"room":"rt"}}"#)
            .await;
        c.recv_json().await;
        let text = if frame == "hello" {
            "hello"
        } else {
            r#"{"event":"say","data":{"room":"rt","text":"hi"}}"#
        };
        let replies = frames_per_request(frame);
        let mut times = Vec::with_capacity(ROUND_TRIPS);
        for k in 0..ROUND_TRIPS + 100 {
            let t = Instant::now();
            c.send_text(text).await;
            for _ in 0..replies {
                c.recv().await;
            }
            if k >= 100 {
                times.push(t.elapsed());
            }
        }
        c.close().await;
        times.sort();
        times[times.len() / 2]
    })
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let per_client: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .map_or(5000, |n: usize| n / CLIENTS);
    let gw_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("gw")
        .enable_all()
        .build()
        .unwrap();
    let load = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("load")
        .enable_all()
        .build()
        .unwrap();
    let subjects = subjects(&load);

    println!("## Hot reload: file written → new version serving (debounce 50 ms)\n");
    println!(
        "| plugin | size | first start (compile + start) | reload, compiled | reload, disk cache | reload, memory |"
    );
    println!("|---|---|---|---|---|---|");
    for s in &subjects {
        let [first, compiled, disk, memory] = reloads(&gw_rt, &load, s);
        println!(
            "| {} | {} B | {first} | {compiled} | {disk} | {memory} |",
            s.label,
            s.v1.len()
        );
    }

    println!(
        "\n## One on-message through the gateway ({CLIENTS} clients × {WINDOW} in flight, {} messages per row)\n",
        per_client * CLIENTS
    );
    println!(
        "| plugin | frame | plugin call (mean) | actor CPU / msg | gateway CPU / msg | msgs/s | round trip (p50) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for s in &subjects {
        plugin_support::install_bytes(dir.path(), s.name, &s.v1);
    }
    let gw = start(&gw_rt, config(dir.path(), cache.path()));
    for s in &subjects {
        load.block_on(async {
            let mut c = gw.connect(s.name).await;
            c.send_text("hello").await;
            assert_eq!(c.recv_text().await, s.hello);
        });
        for frame in ["say", "hello"] {
            let cost = measure(&gw, &load, s, frame, per_client);
            let rtt = round_trip(&gw, &load, s, frame);
            println!(
                "| {} | `{frame}` | {} | {} | {} | {:.0} | {} |",
                s.label,
                us(cost.call),
                us(cost.actor),
                us(cost.gateway),
                cost.messages as f64 / cost.wall.as_secs_f64(),
                us(rtt),
            );
        }
    }
    load.block_on(gw.stop());
}
