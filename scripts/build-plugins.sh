#!/usr/bin/env bash
# Build every example plugin under plugins/ into plugins/<name>.wasm (the folder the gateway loads).
# Rust plugins need only rustup's wasm32-wasip2 target (rust-toolchain.toml brings it); JavaScript,
# Python and C toolchains are installed or checked by scripts/toolchains.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
out=plugins
scripts/build-rust-plugins.sh "$out"
for dir in plugins/js-*/; do
  [ -d "$dir" ] && scripts/build-js-plugin.sh "$dir" "$out/$(basename "$dir").wasm"
done
for dir in plugins/py-*/; do
  [ -d "$dir" ] && scripts/build-py-plugin.sh "$dir" "$out/$(basename "$dir").wasm"
done
for dir in plugins/c-*/; do
  [ -d "$dir" ] && scripts/build-c-plugin.sh "$dir" "$out/$(basename "$dir").wasm"
done
ls -l "$out"/*.wasm
