#!/usr/bin/env bash
# Run every test: unit, end-to-end (real sockets, real components built from source, JavaScript,
# Python and C plugins through the gateway) and the benchmark smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup" >&2; exit 1; }
rustup target list --installed 2>/dev/null | grep -q wasm32-wasip2 || rustup target add wasm32-wasip2
scripts/toolchains.sh all
# The cluster tests start their own redis-server on a free port (never the machine's 6379).
command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p wasmgate --all-targets --features bench-support -- -D warnings
cargo test --workspace --all-targets
cargo test --workspace --doc
# Every plugin test again with every plugin pooled (instances = 2): order per client, reload
# under load, traps, timers and fairness must hold for N > 1 too.
WASMGATE_TEST_PLUGIN_INSTANCES=2 cargo test -p wasmgate-tests \
  --test plugin_apps --test plugin_fairness --test plugin_faults --test plugin_hostcalls \
  --test plugin_reload --test plugin_watch --test lang_plugins --test plugin_direct
scripts/test-web.sh
scripts/check-templates.sh
