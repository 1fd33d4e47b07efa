#!/usr/bin/env bash
# Build the Rust plugins (and optionally the Rust test guests) as wasm32-wasip2 components.
#
#   scripts/build-rust-plugins.sh [OUT_DIR] [--test-guests DIR]
#
# OUT_DIR (default: plugins/) receives chat.wasm and quiz.wasm. With --test-guests DIR, the test
# guests under tests/guests/ are built too and copied to DIR/<name>.wasm. Builds are --release.
# CARGO_TARGET_DIR is honoured (default: the workspace's target/).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out_dir=""
guests_dir=""

while [ $# -gt 0 ]; do
  case "$1" in
    --test-guests)
      [ $# -ge 2 ] || { echo "--test-guests needs a directory" >&2; exit 2; }
      guests_dir="$2"
      shift 2
      ;;
    -h|--help)
      sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    -*)
      echo "unknown option: $1" >&2
      exit 2
      ;;
    *)
      [ -z "$out_dir" ] || { echo "only one OUT_DIR" >&2; exit 2; }
      out_dir="$1"
      shift
      ;;
  esac
done
out_dir="${out_dir:-$root/plugins}"

plugins=(chat quiz)
guests=()
if [ -n "$guests_dir" ]; then
  for manifest in "$root"/tests/guests/*/Cargo.toml; do
    guests+=("$(basename "$(dirname "$manifest")")")
  done
fi

target_dir="${CARGO_TARGET_DIR:-$root/target}"
packages=()
for p in "${plugins[@]}" "${guests[@]}"; do
  packages+=(-p "$p")
done

# rust-toolchain.toml lists the target, but rustup adds it only when it installs the toolchain:
# a 1.95.0 already installed without it fails with "can't find crate for std".
(cd "$root" && { rustup target list --installed 2>/dev/null | grep -q wasm32-wasip2 || rustup target add wasm32-wasip2; })
(cd "$root" && cargo build --target wasm32-wasip2 --release "${packages[@]}")

built="$target_dir/wasm32-wasip2/release"
mkdir -p "$out_dir"
for p in "${plugins[@]}"; do
  cp "$built/$p.wasm" "$out_dir/$p.wasm"
  echo "$out_dir/$p.wasm"
done
if [ -n "$guests_dir" ]; then
  mkdir -p "$guests_dir"
  for g in "${guests[@]}"; do
    cp "$built/$g.wasm" "$guests_dir/$g.wasm"
    echo "$guests_dir/$g.wasm"
  done
fi
