//! Memory per plugin (issue 11): `GET /api/plugins` shows the size of each serving version's
//! compiled image as `codeBytes`. That the serving engine never compiles (so keeps no compiler
//! memory) is tested in `engine.rs`; the RSS figures are measured by `scripts/plugin-memory.sh`.
#![allow(clippy::unwrap_used)]

mod common;
mod plugin_support;

use common::TestGateway;
use plugin_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_show_the_size_of_their_compiled_code() {
    let dir = folder();
    install(dir.path(), "chat", CHAT);
    install(dir.path(), "versioned", VERSIONED_1);
    let gw = TestGateway::start(config(dir.path())).await;
    let chat = wait_plugin(&gw, "chat", "loaded", |p| p["version"].is_string()).await;
    let small = wait_plugin(&gw, "versioned", "loaded", |p| p["version"].is_string()).await;
    let chat_bytes = chat["codeBytes"].as_u64().expect("codeBytes is a number");
    let small_bytes = small["codeBytes"].as_u64().expect("codeBytes is a number");
    // The chat component is 0.3 MB of wasm; its machine code and metadata are larger than its
    // wasm, and far from the 100 MB a whole Python runtime would take.
    let wasm = std::fs::metadata(CHAT).unwrap().len();
    assert!(
        chat_bytes > wasm && chat_bytes < 100 << 20,
        "chat: {chat_bytes} B of code for {wasm} B of wasm"
    );
    assert!(small_bytes > 0, "versioned: {small}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_without_a_serving_version_shows_no_code_size() {
    let dir = folder();
    install_bytes(dir.path(), "broken", b"not wasm at all");
    let gw = TestGateway::start(config(dir.path())).await;
    let broken = wait_plugin(&gw, "broken", "failed", |p| p["lastError"].is_string()).await;
    assert!(broken["codeBytes"].is_null(), "{broken}");
    gw.stop().await;
}

/// `wasmgate compile-plugin`: a component on standard input is compiled into the cache folder
/// (`compiler`), found there the second time (`disk-cache`); what does not compile fails with
/// the compiler's error and exit status 1.
#[test]
fn the_compile_plugin_command_fills_the_disk_cache() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let bin = common::wasmgate_bin();
    let cache = tempfile::tempdir().unwrap();
    let run = |bytes: &[u8]| {
        let mut child = Command::new(&bin)
            .arg("compile-plugin")
            .arg("--cache-dir")
            .arg(cache.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        child.wait_with_output().unwrap()
    };
    let chat = std::fs::read(CHAT).unwrap();
    let first = run(&chat);
    assert!(first.status.success(), "{first:?}");
    assert_eq!(String::from_utf8_lossy(&first.stdout).trim(), "compiler");
    let second = run(&chat);
    assert!(second.status.success(), "{second:?}");
    assert_eq!(String::from_utf8_lossy(&second.stdout).trim(), "disk-cache");
    let bad = run(b"not wasm at all");
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.starts_with("compile:"), "{stderr}");
    assert!(bad.stdout.is_empty(), "{bad:?}");
}

/// The `wasmgate` binary compiles a new plugin version in a child process (the compiler's
/// memory never becomes the gateway's) and serves it from the cache entry the child wrote;
/// a component that does not compile is reported in `/api/plugins` with the compiler's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_compiles_plugins_in_a_child_process() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = folder();
    install(dir.path(), "chat", CHAT);
    install_bytes(dir.path(), "broken", b"not wasm at all");
    let cache = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = common::KillOnDrop(
        Command::new(common::wasmgate_bin())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--plugins")
            .arg(dir.path())
            .args(["--log-level", "warn,wasmgate::plugin=debug"])
            .env("WASMGATE_CACHE_DIR", cache.path())
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let out = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let api = format!("http://127.0.0.1:{port}/api/plugins");
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let (chat, broken) = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "plugins not loaded in time"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let Ok(resp) = http.get(&api).send().await else {
            continue;
        };
        let Ok(body) = resp.json::<serde_json::Value>().await else {
            continue;
        };
        let list = body["data"]["list"].as_array().cloned().unwrap_or_default();
        let find = |name: &str| list.iter().find(|p| p["name"] == name).cloned();
        if let (Some(c), Some(b)) = (find("chat"), find("broken"))
            && c["version"].is_string()
            && b["lastError"].is_string()
        {
            break (c, b);
        }
    };
    drop(child);
    // The reader ends when the gateway's standard output closes.
    let lines: Vec<String> = rx.iter().collect();
    assert_eq!(chat["code"], "compiler", "{chat}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("plugin compiled by a child process") && l.contains("compiler")),
        "the gateway logged the child's compile: {lines:#?}"
    );
    let err = broken["lastError"].as_str().unwrap();
    assert!(err.contains("compile:"), "{broken}");
}
