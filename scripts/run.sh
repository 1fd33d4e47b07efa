#!/usr/bin/env bash
# Quick start: build the example plugins and run the gateway with them on 127.0.0.1:8080.
# Extra arguments go to wasmgate (e.g. --listen 127.0.0.1:9000).
set -euo pipefail
cd "$(dirname "$0")/.."
# build-plugins.sh (through build-rust-plugins.sh) adds the wasm32-wasip2 target when the
# installed toolchain lacks it.
scripts/build-plugins.sh
exec cargo run --release -p wasmgate -- --config examples/wasmgate.toml --plugins plugins "$@"
