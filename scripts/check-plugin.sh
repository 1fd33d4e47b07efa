#!/usr/bin/env bash
# Checks that a component implements the wasmgate plugin world, whatever language built it.
#
#   scripts/check-plugin.sh <component.wasm>
#
# Passes when the component exports every function of `wasmgate:plugin/plugin@0.2.0` with the
# same signature, and imports nothing but `wasmgate:plugin/*` and WASI 0.2 interfaces (the
# gateway's WASI context has no preopened directory and denies sockets, so a WASI import gives a
# plugin no filesystem and no network).
# (`wasm-tools component targets` cannot say this: it also rejects the WASI imports that every
# guest language's runtime brings.) Used by scripts/build-{js,py,c}-plugin.sh.
set -euo pipefail

[[ $# -eq 1 ]] || {
    echo "usage: scripts/check-plugin.sh <component.wasm>" >&2
    exit 2
}
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TC="${WASMGATE_TOOLCHAINS:-$REPO/.cache/toolchains}"
WASM_TOOLS="$TC/cargo/bin/wasm-tools"
[[ -x "$WASM_TOOLS" ]] || "$REPO/scripts/toolchains.sh" js >/dev/null

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# The world as a component of its own: same printer, so the lines compare as text.
"$WASM_TOOLS" component embed --dummy "$REPO/wit/0.2.0" --world plugin -o "$WORK/dummy-core.wasm"
"$WASM_TOOLS" component new "$WORK/dummy-core.wasm" -o "$WORK/dummy.wasm"

# The `world root { ... }` block of a component's WIT: its import and export lines.
world_lines() {
    "$WASM_TOOLS" component wit "$1" | awk '/^world root \{/{on=1; next} on && /^\}/{exit} on' |
        sed 's/^ *//' | grep -E '^(import|export|use) ' | sort
}
world_lines "$WORK/dummy.wasm" >"$WORK/want"
world_lines "$1" >"$WORK/have"

status=0
# Every export of the world, with the same signature. Extra exports are allowed (component
# subtyping: the gateway never looks at them); componentize-py leaves its own `exports` interface.
missing_exports="$(comm -23 <(grep '^export ' "$WORK/want") <(grep '^export ' "$WORK/have"))"
if [[ -n "$missing_exports" ]]; then
    echo "check-plugin: $1 lacks these exports of the plugin world (or has them with another signature):" >&2
    echo "$missing_exports" >&2
    echo "check-plugin: its exports are:" >&2
    grep '^export ' "$WORK/have" | cut -c1-160 >&2
    status=1
fi
extra="$(grep '^import ' "$WORK/have" | grep -v -E '^import (wasi:[a-z-]+/[a-z-]+@0\.2\.[0-9]+|wasmgate:plugin/(types|host)@0\.[12]\.0);$' || true)"
if [[ -n "$extra" ]]; then
    echo "check-plugin: $1 has imports the gateway does not provide:" >&2
    echo "$extra" >&2
    status=1
fi
exit $status
