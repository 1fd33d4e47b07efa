//! One client cannot starve the others on its plugin: a client past its share of the plugin's
//! queue, or past its rate limits, is slowed (its socket is not read) instead of anyone's
//! events being dropped; `on-close` always reaches the plugin; a client that keeps exceeding
//! its rate limits is closed with 1008.
//!
//! Before: 8 clients sending 60 KB frames filled the shared queue, other clients' events were
//! dropped, a victim lost requests, new clients were refused with 1013 and RSS grew by the
//! queue's 4096 × 60 KB. Every test here fails on that code.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;
mod plugin_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Client, TestGateway};
use futures_util::{SinkExt, StreamExt};
use plugin_support::*;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// The tests measure the process's memory and load both cores: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const DROPPED_QUEUE_FULL: &str =
    "wasmgate_messages_dropped_total{system=\"hostcalls\",reason=\"plugin_queue_full\"}";

/// Resident memory of this process (the gateway runs in it), in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// A gateway serving `hostcalls`, configured by `tune`.
async fn gateway(tune: impl FnOnce(&mut wasmgate::Config)) -> (TestGateway, tempfile::TempDir) {
    let dir = folder();
    install(dir.path(), "hostcalls", HOSTCALLS);
    let mut cfg = config(dir.path());
    tune(&mut cfg);
    let gw = TestGateway::start(cfg).await;
    wait_plugin(&gw, "hostcalls", "loaded", |p| !p["version"].is_null()).await;
    (gw, dir)
}

/// A client that sends `frame` as fast as the gateway reads it until `stop`, reading whatever
/// comes back; how many frames it got out and how many `spun` answers it received.
struct Flooder {
    sent: Arc<AtomicU64>,
    answers: Arc<AtomicU64>,
    tasks: [JoinHandle<()>; 2],
}

impl Flooder {
    fn start(client: Client, frame: String, stop: Arc<AtomicBool>) -> Flooder {
        let (mut tx, mut rx) = client.ws.split();
        let sent = Arc::new(AtomicU64::new(0));
        let answers = Arc::new(AtomicU64::new(0));
        let (s, a) = (sent.clone(), answers.clone());
        let writer = tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if tx.send(Message::text(frame.as_str())).await.is_err() {
                    return;
                }
                s.fetch_add(1, Ordering::Relaxed);
            }
            let _ = tx.close().await;
        });
        let reader = tokio::spawn(async move {
            while let Some(Ok(msg)) = rx.next().await {
                if msg.to_text().is_ok_and(|t| t == "spun") {
                    a.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Flooder {
            sent,
            answers,
            tasks: [writer, reader],
        }
    }

    fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// `n` echo round trips; each must come back (within the harness's 5 s wait).
async fn round_trips(c: &mut Client, tag: &str, n: u32) {
    for i in 0..n {
        c.send_text(&format!("{tag}-{i}")).await;
        assert_eq!(
            c.recv_text().await,
            format!("echo:{tag}-{i}"),
            "{tag} request {i}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_flooders_with_60_kb_frames_starve_nobody() {
    let _serial = SERIAL.lock().await;
    // Rate limits off: the queue shares alone must protect the others.
    let (gw, _dir) = gateway(|c| {
        c.limits.client_messages_per_second = 0;
        c.limits.client_bytes_per_second = 0;
    })
    .await;
    let mut victim = gw.connect("hostcalls").await;
    round_trips(&mut victim, "warm", 2).await;
    let before = rss();

    // Each frame keeps the plugin busy for 2 ms: it handles 500 a second, the flooders send
    // many times that.
    let frame = format!("spin:2:{}", "x".repeat(60_000));
    let stop = Arc::new(AtomicBool::new(false));
    let mut flooders = Vec::new();
    for _ in 0..8 {
        let c = gw.connect("hostcalls").await;
        flooders.push(Flooder::start(c, frame.clone(), stop.clone()));
    }
    let peak = Arc::new(AtomicU64::new(before));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // Let the flood fill whatever it can fill.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // The victim gets every answer, and new clients are let in and served.
    round_trips(&mut victim, "victim", 17).await;
    for n in 0..3 {
        let mut newcomer = gw.connect("hostcalls").await;
        round_trips(&mut newcomer, &format!("new{n}"), 1).await;
    }
    let queued = plugin(&gw, "hostcalls").await["queued"].as_u64().unwrap();

    stop.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    let sent: u64 = flooders
        .iter()
        .map(|f| f.sent.load(Ordering::Relaxed))
        .sum();
    let answered: u64 = flooders
        .iter()
        .map(|f| f.answers.load(Ordering::Relaxed))
        .sum();
    for f in &flooders {
        f.stop();
    }
    let grew = peak.load(Ordering::Relaxed).saturating_sub(before);
    eprintln!(
        "flood: {sent} frames sent, {answered} answered, {queued} queued while the victim ran, \
         RSS +{} MB at the peak",
        grew >> 20
    );
    assert!(answered > 0, "the flooders were served too");
    assert_eq!(metric(&gw, DROPPED_QUEUE_FULL), 0.0, "nothing dropped");
    // 8 shares of 256 KiB (+ one frame each) is ~2.5 MB of queue; the old queue took 4096
    // frames, 245 MB. The bound leaves room for buffers, the allocator and the instance.
    assert!(grew < 64 << 20, "RSS grew by {} MB", grew >> 20);
    // Each flooder holds at most its 64-event share, whatever happens.
    assert!(queued <= 8 * 64 + 1, "{queued} events queued");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_close_reaches_a_plugin_whose_queue_is_full() {
    let _serial = SERIAL.lock().await;
    // One instance: every leaver's close meets the full queue.
    let (gw, _dir) = gateway(|c| {
        c.plugin.queue_capacity = 8;
        c.plugin.instances = wasmgate::config::Instances::Count(1);
    })
    .await;
    let mut watcher = gw.connect("hostcalls").await;
    ok(
        &mut watcher,
        "join-group",
        json!({"group": "close-watchers"}),
    )
    .await;
    let mut leavers = Vec::new();
    for _ in 0..30 {
        leavers.push(gw.connect("hostcalls").await);
    }

    // Clients that keep the queue at its bound: 20 ms per event. One alone would not: each of
    // its events finds the instance idle and is called from its own connection task, which
    // reads nothing meanwhile (direct calls, `actor.rs`); the others' events queue behind it.
    let stop = Arc::new(AtomicBool::new(false));
    let mut flooders = Vec::new();
    for _ in 0..4 {
        flooders.push(Flooder::start(
            gw.connect("hostcalls").await,
            "spin:20".into(),
            stop.clone(),
        ));
    }
    wait_plugin(&gw, "hostcalls", "the queue is full", |p| {
        p["queued"].as_u64() >= Some(7)
    })
    .await;

    let mut ids: Vec<String> = Vec::new();
    for c in leavers {
        ids.push(c.id.clone());
        c.close().await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut closed = Vec::new();
    while closed.len() < ids.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(Ok(msg))) = tokio::time::timeout(left, watcher.ws.next()).await else {
            break;
        };
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(msg.to_text().unwrap_or(""))
            && let Some(id) = v["closed"].as_str()
        {
            closed.push(id.to_owned());
        }
    }
    stop.store(true, Ordering::Relaxed);
    for flooder in &flooders {
        flooder.stop();
    }
    closed.sort();
    ids.sort();
    assert_eq!(closed, ids, "the plugin heard every on-close");
    assert_eq!(metric(&gw, DROPPED_QUEUE_FULL), 0.0, "nothing dropped");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rates_is_slowed_and_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let (gw, _dir) = gateway(|c| {
        c.limits.client_messages_per_second = 20;
        c.limits.client_bytes_per_second = 100_000;
    })
    .await;

    // 60 messages at 20 a second: the first 20 pass at once, 40 wait two seconds.
    let mut c = gw.connect("hostcalls").await;
    let started = Instant::now();
    for i in 0..60 {
        c.send_text(&format!("m{i}")).await;
    }
    for i in 0..60 {
        assert_eq!(c.recv_text().await, format!("echo:m{i}"));
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "60 messages in {took:?}"
    );

    // 25 × 10 KB at 100 KB a second (a fresh client, so a full bucket): 150 KB wait 1.5 s.
    let mut c = gw.connect("hostcalls").await;
    let big = "b".repeat(10_000);
    let started = Instant::now();
    for _ in 0..25 {
        c.send_text(&big).await;
    }
    for _ in 0..25 {
        assert_eq!(c.recv_text().await.len(), 10_005);
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1400), "250 KB in {took:?}");
    assert_eq!(metric(&gw, DROPPED_QUEUE_FULL), 0.0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_keeps_exceeding_its_rate_is_closed_with_1008() {
    let _serial = SERIAL.lock().await;
    let (gw, _dir) = gateway(|c| {
        c.limits.client_messages_per_second = 50;
        c.limits.client_throttle_timeout = Duration::from_secs(1);
    })
    .await;
    let mut bystander = gw.connect("hostcalls").await;

    let offender = gw.connect("hostcalls").await;
    let (mut tx, mut rx) = offender.ws.split();
    // Stamped before the writer can send anything: the gateway's run of holds begins after the
    // first second's burst, so after this (stamped after the spawn, a test thread descheduled
    // on a loaded machine let the writer start first and the close came "early": CI failure).
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        for i in 0u64.. {
            if tx.send(Message::text(format!("o{i}"))).await.is_err() {
                return;
            }
        }
    });
    let close = tokio::time::timeout(Duration::from_secs(8), async {
        while let Some(Ok(msg)) = rx.next().await {
            if let Message::Close(frame) = msg {
                return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
            }
        }
        None
    })
    .await
    .expect("the offender is closed");
    writer.abort();
    assert_eq!(close, Some((1008, "rate limit exceeded".to_owned())));
    // A burst of a second's worth, then a second of holds.
    assert!(started.elapsed() >= Duration::from_secs(1));

    // Nobody else noticed.
    round_trips(&mut bystander, "bystander", 3).await;
    gw.stop().await;
}
