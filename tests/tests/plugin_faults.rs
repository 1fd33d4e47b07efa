//! Misbehaving guests — an endless loop, a memory hog, a panicking guest, a send spammer, a
//! plugin that keeps trapping, a plugin that falls behind — cost only themselves: the gateway,
//! the other plugins and every connection keep working.
#![allow(clippy::unwrap_used)]

mod common;
mod plugin_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Client, TestGateway};
use plugin_support::*;

/// A client of `hostcalls` that keeps doing echo round trips until told to stop; the number of
/// round trips and the slowest one.
fn observe(
    mut client: Client,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(Client, u32, Duration)> {
    tokio::spawn(async move {
        let (mut n, mut worst) = (0u32, Duration::ZERO);
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            client.send_text(&format!("obs-{n}")).await;
            assert_eq!(client.recv_text().await, format!("echo:obs-{n}"));
            worst = worst.max(started.elapsed());
            n += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (client, n, worst)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_guests_trap_and_recover_while_everything_else_keeps_working() {
    let dir = folder();
    for (name, src) in [
        ("looper", LOOPER),
        ("hog", HOG),
        ("panicker", PANICKER),
        ("spammer", SPAMMER),
        ("hostcalls", HOSTCALLS),
    ] {
        install(dir.path(), name, src);
    }
    let mut cfg = config(dir.path());
    cfg.plugin.max_memory_bytes = 16 << 20;
    let gw = TestGateway::start(cfg).await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut observers = Vec::new();
    for _ in 0..3 {
        observers.push(observe(gw.connect("hostcalls").await, stop.clone()));
    }

    let looper = async {
        let mut c = gw.connect("looper").await;
        let started = Instant::now();
        c.send_text("loop").await;
        c.send_text("after-loop").await;
        assert_eq!(c.recv_text().await, "after-loop");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(100),
            "the loop ran its deadline: {took:?}"
        );
        c
    };
    let hog = async {
        let mut c = gw.connect("hog").await;
        c.send_text("hog").await;
        let got = c.recv_text().await;
        let mib: u32 = got
            .strip_prefix("hog:")
            .and_then(|n| n.parse().ok())
            .expect("hog:<MiB>");
        assert!(
            (1..16).contains(&mib),
            "allocation stopped at the 16 MiB cap: {got}"
        );
        c.send_text("hog-abort").await;
        c.send_text("after-hog").await;
        assert_eq!(c.recv_text().await, "after-hog");
        c
    };
    let panicker = async {
        let mut c = gw.connect("panicker").await;
        for _ in 0..3 {
            c.send_text("panic").await;
        }
        c.send_text("after-panic").await;
        assert_eq!(c.recv_text().await, "after-panic");
        c
    };
    let spammer = async {
        let mut c = gw.connect("spammer").await;
        c.send_text("spam").await;
        c.send_text("after-spam").await;
        let mut spam = 0;
        loop {
            match c.recv_text().await.as_str() {
                "spam" => spam += 1,
                "after-spam" => break,
                other => panic!("unexpected {other}"),
            }
        }
        // One event may send at most max_queue_messages (1024) frames: never enough to
        // overflow the queue of a client that keeps up.
        assert!((1..=1024).contains(&spam), "{spam} frames of spam");
        c
    };
    let (mut looper, mut hog, mut panicker, mut spammer) =
        tokio::join!(looper, hog, panicker, spammer);
    stop.store(true, Ordering::Relaxed);
    for o in observers {
        let (mut client, n, worst) = o.await.expect("observer");
        assert!(n > 5, "observer made {n} round trips");
        assert!(
            worst < Duration::from_secs(1),
            "slowest observer round trip {worst:?}"
        );
        client.send_text("last").await;
        assert_eq!(client.recv_text().await, "echo:last");
    }
    // Every faulty plugin's client is still connected and served.
    for (c, name) in [
        (&mut looper, "looper"),
        (&mut hog, "hog"),
        (&mut panicker, "panicker"),
        (&mut spammer, "spammer"),
    ] {
        c.send_text("still-there").await;
        assert_eq!(c.recv_text().await, "still-there", "{name}");
    }

    let looper = plugin(&gw, "looper").await;
    assert_eq!(looper["traps"], 1, "{looper}");
    assert!(
        looper["lastError"].as_str().unwrap().contains("deadline"),
        "{looper}"
    );
    let hog = plugin(&gw, "hog").await;
    assert_eq!(hog["traps"], 1, "{hog}");
    assert_eq!(plugin(&gw, "panicker").await["traps"], 3);
    assert_eq!(plugin(&gw, "hostcalls").await["traps"], 0);
    assert!(
        metric(
            &gw,
            "wasmgate_plugin_budget_exceeded_total{plugin=\"spammer\""
        ) > 0.0,
        "{}",
        metrics(&gw)
    );
    assert!(metric(&gw, "wasmgate_plugin_traps_total{plugin=\"looper\"}") >= 1.0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_keeps_trapping_is_backed_off_alone() {
    let dir = folder();
    install(dir.path(), "panicker", PANICKER);
    install(dir.path(), "hostcalls", HOSTCALLS);
    let gw = TestGateway::start(config(dir.path())).await;
    let mut bad = gw.connect("panicker").await;
    let mut good = gw.connect("hostcalls").await;

    let started = Instant::now();
    for _ in 0..8 {
        bad.send_text("panic").await;
    }
    bad.send_text("after").await;
    // Meanwhile the other plugin answers at once.
    good.send_text("quick").await;
    assert_eq!(good.recv_text().await, "echo:quick");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    // Eight traps in a row: re-instantiation waited 10+20+40+80+160+320 ms, events queued.
    assert_eq!(bad.recv_text().await, "after");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(630),
        "backed off for {took:?}"
    );
    // A successful call ends the backoff.
    let again = Instant::now();
    bad.send_text("fine").await;
    assert_eq!(bad.recv_text().await, "fine");
    assert!(again.elapsed() < Duration::from_millis(500));
    let entry = plugin(&gw, "panicker").await;
    assert_eq!(entry["traps"], 8, "{entry}");
    assert!(
        entry["lastError"]
            .as_str()
            .unwrap()
            .contains("panicker was asked to panic"),
        "{entry}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_falls_behind_slows_its_client_instead_of_buffering_or_dropping() {
    let dir = folder();
    install(dir.path(), "looper", LOOPER);
    let mut cfg = config(dir.path());
    cfg.plugin.queue_capacity = 4;
    // One instance, so that both clients below share it.
    instances(&mut cfg, "looper", 1);
    // The loop holds the instance for a whole second: time for every frame below to arrive.
    cfg.plugin.call_timeout = Duration::from_secs(1);
    let gw = TestGateway::start(cfg).await;
    let mut looping = gw.connect("looper").await;
    let mut c = gw.connect("looper").await;
    // Another client's loop: `c`'s events find the instance busy and queue (its own loop would
    // be called from its own connection task, which then reads nothing at all).
    looping.send_text("loop").await;
    wait_plugin(&gw, "looper", "the loop holds the instance", |p| {
        p["instances"][0]["busy"] == true
    })
    .await;
    for i in 0..50 {
        c.send_text(&format!("m{i}")).await;
    }
    c.send_text("final").await;
    // While the loop runs the queue holds 4 of them; the rest wait in the client's socket,
    // which the gateway stops reading.
    wait_plugin(&gw, "looper", "the queue filled", |p| p["queued"] == 4).await;
    for _ in 0..20 {
        let queued = plugin(&gw, "looper").await["queued"].as_u64().unwrap();
        assert!(queued <= 4, "{queued} queued");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Nothing is lost: the fresh instance answers everything, in order.
    for i in 0..50 {
        assert_eq!(c.recv_text().await, format!("m{i}"));
    }
    assert_eq!(c.recv_text().await, "final");
    let dropped = metric(
        &gw,
        "wasmgate_messages_dropped_total{system=\"looper\",reason=\"plugin_queue_full\"}",
    );
    assert_eq!(dropped, 0.0);
    assert_eq!(plugin(&gw, "looper").await["traps"], 1);
    gw.stop().await;
}
