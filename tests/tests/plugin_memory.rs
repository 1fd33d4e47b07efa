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
