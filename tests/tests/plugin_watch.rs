//! The plugins folder watcher: an idle gateway reads no plugin file, a bad file left in place is
//! tried once, a complete file (renamed into place or closed after writing) loads without
//! waiting for the settle time, and an in-place write that keeps its file open loads once.
#![allow(clippy::unwrap_used)]

mod common;
mod plugin_support;

use std::io::Write;
use std::time::Duration;

use common::TestGateway;
use plugin_support::*;

/// Reads of `name`'s file by the loader so far.
fn reads(gw: &TestGateway, name: &str) -> f64 {
    metric(
        gw,
        &format!("wasmgate_plugin_file_reads_total{{plugin=\"{name}\"}}"),
    )
}

/// Failed loads of `name` so far.
fn failed_loads(gw: &TestGateway, name: &str) -> f64 {
    metric(
        gw,
        &format!("wasmgate_plugin_reloads_total{{plugin=\"{name}\",result=\"error\""),
    )
}

#[tokio::test]
async fn an_idle_gateway_reads_no_plugin_file() {
    let dir = folder();
    install(dir.path(), "echo", HOSTCALLS);
    install_bytes(dir.path(), "broken", b"not a component");
    let gw = TestGateway::start(config(dir.path())).await;
    wait_plugin(&gw, "echo", "loaded", |p| p["version"].is_string()).await;
    // Let any event of the initial load pass, then nothing may be read for a while. Before the
    // fix the loader's own read raised an access event that scheduled another read 50 ms later
    // (the test's settle time), forever, and the bad file was retried and logged as often.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (echo, broken, errors) = (
        reads(&gw, "echo"),
        reads(&gw, "broken"),
        failed_loads(&gw, "broken"),
    );
    let flushes = metric(&gw, "wasmgate_plugin_store_flushes_total");
    assert!(echo >= 1.0 && broken >= 1.0, "initial load read each file");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(reads(&gw, "echo"), echo, "idle: no read of echo.wasm");
    assert_eq!(reads(&gw, "broken"), broken, "idle: no read of broken.wasm");
    assert_eq!(
        failed_loads(&gw, "broken"),
        errors,
        "a bad file is not retried"
    );
    // The key-value flush waits for a change instead of checking every 200 ms.
    assert_eq!(
        metric(&gw, "wasmgate_plugin_store_flushes_total"),
        flushes,
        "idle: no key-value flush pass"
    );
}

#[tokio::test]
async fn a_store_change_is_written_after_it_happened() {
    let dir = folder();
    install(dir.path(), "hostcalls", HOSTCALLS);
    let gw = TestGateway::start(config(dir.path())).await;
    wait_plugin(&gw, "hostcalls", "loaded", |p| p["version"].is_string()).await;
    let before = metric(&gw, "wasmgate_plugin_store_flushes_total");
    let mut client = gw.connect("hostcalls").await;
    ok(
        &mut client,
        "kv-set",
        serde_json::json!({"key": "k", "value": "v1"}),
    )
    .await;
    let store = dir.path().join(".kv").join("hostcalls.json");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&store).unwrap_or_default();
        if text.contains("v1") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "store not written: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(metric(&gw, "wasmgate_plugin_store_flushes_total") > before);
    gw.stop().await;
}

#[tokio::test]
async fn a_complete_file_loads_without_the_settle_wait() {
    let dir = folder();
    let mut cfg = config(dir.path());
    // A settle time no test would wait for: only an immediate load can pass.
    cfg.plugin.reload_debounce = Duration::from_secs(600);
    let gw = TestGateway::start(cfg).await;
    install(dir.path(), "renamed", HOSTCALLS);
    std::fs::copy(HOSTCALLS, dir.path().join("copied.wasm")).unwrap();
    wait_plugin(&gw, "renamed", "loaded after a rename", |p| {
        p["version"].is_string()
    })
    .await;
    wait_plugin(&gw, "copied", "loaded after a copy", |p| {
        p["version"].is_string()
    })
    .await;
}

#[tokio::test]
async fn an_open_in_place_write_loads_once_at_its_close() {
    let dir = folder();
    let mut cfg = config(dir.path());
    cfg.plugin.reload_debounce = Duration::from_millis(400);
    let gw = TestGateway::start(cfg).await;
    let bytes = std::fs::read(HOSTCALLS).unwrap();
    let mut f = std::fs::File::create(dir.path().join("chunked.wasm")).unwrap();
    let chunk = bytes.len().div_ceil(10);
    for part in bytes.chunks(chunk) {
        f.write_all(part).unwrap();
        f.flush().unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(f);
    wait_plugin(&gw, "chunked", "loaded", |p| p["version"].is_string()).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        failed_loads(&gw, "chunked"),
        0.0,
        "no load of the half-written file"
    );
    assert_eq!(reads(&gw, "chunked"), 1.0, "one complete write, one read");
}
