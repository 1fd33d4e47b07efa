#!/usr/bin/env bash
# Builds a C plugin into a wasmgate component.
#
#   scripts/build-c-plugin.sh <plugin dir> <out.wasm>
#
# Every *.c file of <plugin dir> is compiled; `#include "plugin.h"` gives the generated bindings
# (wit-bindgen c, world `plugin`): implement the exports_plugin_* functions and call the
# wasmgate_plugin_host_* functions. Extra compiler flags may be passed in $CFLAGS.
#
# How: wit-bindgen c generates plugin.h/plugin.c/plugin_component_type.o from wit/; Debian's
# clang 14 compiles for wasm32-wasi (WASI preview 1: Debian's wasi-libc has no wasip2 target) as
# a reactor (a library with no main); `wasm-tools component new` wraps the core module into a
# component, turning its preview1 imports into WASI 0.2 imports with the reactor adapter of
# wasmtime 48 (crate wasi-preview1-component-adapter-provider). scripts/check-plugin.sh checks
# the result. To see the bindings: .cache/toolchains/cargo/bin/wit-bindgen c wit --world plugin
set -euo pipefail

if [[ $# -ne 2 ]]; then
    sed -n '2,4p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
SRC="$(cd "$1" && pwd)"
OUT="$2"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TC="${WASMGATE_TOOLCHAINS:-$REPO/.cache/toolchains}"

"$REPO/scripts/toolchains.sh" c
WIT_BINDGEN="$TC/cargo/bin/wit-bindgen"
WASM_TOOLS="$TC/cargo/bin/wasm-tools"
ADAPTER="$TC/adapter/wasi_snapshot_preview1.reactor.wasm"

shopt -s nullglob
sources=("$SRC"/*.c)
((${#sources[@]} > 0)) || {
    echo "build-c-plugin: no .c file in $SRC" >&2
    exit 1
}

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

"$WIT_BINDGEN" c "$REPO/wit/0.2.0" --world plugin --out-dir "$WORK/gen" >/dev/null 2>"$WORK/bindgen.log" || {
    cat "$WORK/bindgen.log" >&2
    exit 1
}
# shellcheck disable=SC2086 # CFLAGS is a list of flags
clang --target=wasm32-wasi -mexec-model=reactor -std=c11 -Os -Wall -Wextra -Werror=implicit-function-declaration \
    -I "$WORK/gen" -I "$SRC" ${CFLAGS:-} \
    "${sources[@]}" "$WORK/gen/plugin.c" "$WORK/gen/plugin_component_type.o" \
    -Wl,--strip-debug -o "$WORK/core.wasm"
"$WASM_TOOLS" component new "$WORK/core.wasm" \
    --adapt "wasi_snapshot_preview1=$ADAPTER" -o "$WORK/out.wasm"
"$REPO/scripts/check-plugin.sh" "$WORK/out.wasm"
mkdir -p "$(dirname "$OUT")"
mv "$WORK/out.wasm" "$OUT"
echo "built $OUT ($(stat -c %s "$OUT") bytes)" >&2
