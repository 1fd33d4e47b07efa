#!/usr/bin/env bash
# Quick start: build the example plugins and run the gateway with them on 127.0.0.1:8080.
# Extra arguments go to wasmgate (e.g. --listen 127.0.0.1:9000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-plugins.sh
exec cargo run --release -p wasmgate -- --config examples/wasmgate.toml --plugins plugins "$@"
