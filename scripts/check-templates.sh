#!/usr/bin/env bash
# Build every plugin template (templates/{rust,js,python,c}) and check that each is a component
# implementing the wasmgate plugin world, so a user who copies one starts from something that works.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
out="${1:-$target/templates}"
mkdir -p "$out"
cargo build -q -p wasmgate-template --target wasm32-wasip2 --release
cp "$target/wasm32-wasip2/release/wasmgate_template.wasm" "$out/rust-template.wasm"
scripts/build-js-plugin.sh templates/js "$out/js-template.wasm"
scripts/build-py-plugin.sh templates/python "$out/py-template.wasm"
scripts/build-c-plugin.sh templates/c "$out/c-template.wasm"
for f in "$out"/*-template.wasm; do
  scripts/check-plugin.sh "$f"
done
# The published forms of the contract (WIT package files, the SDK's copy) match wit/.
scripts/wit-packages.sh --check
echo "templates: 4 built and checked; WIT packages up to date"
