#!/usr/bin/env bash
# Builds the WIT package files of the plugin contracts, the form an outside project depends on
# (a version, not a path into this repository):
#
#   wit/0.1.0/plugin.wit -> wit/wasmgate-plugin-0.1.0.wasm
#   wit/0.2.0/plugin.wit -> wit/wasmgate-plugin-0.2.0.wasm
#
#   scripts/wit-packages.sh           regenerate them (commit the result)
#   scripts/wit-packages.sh --check   fail if a committed file differs from its WIT
#
# Each is `wasm-tools component wit --wasm wit/<version>` (wasm-tools from the toolchains of
# scripts/toolchains.sh). It also checks that the copy shipped in the Rust SDK
# (guest-sdk/wit/plugin.wit) is the current contract.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TC="${WASMGATE_TOOLCHAINS:-$REPO/.cache/toolchains}"
WASM_TOOLS="$TC/cargo/bin/wasm-tools"
[ -x "$WASM_TOOLS" ] || "$REPO/scripts/toolchains.sh" js >/dev/null
CHECK="${1:-}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

status=0
for version in 0.1.0 0.2.0; do
    out="$REPO/wit/wasmgate-plugin-$version.wasm"
    "$WASM_TOOLS" component wit --wasm "$REPO/wit/$version" -o "$WORK/pkg.wasm"
    if [ "$CHECK" = "--check" ]; then
        if ! cmp -s "$WORK/pkg.wasm" "$out"; then
            echo "wit-packages: $out is stale: run scripts/wit-packages.sh and commit it" >&2
            status=1
        fi
    else
        cp "$WORK/pkg.wasm" "$out"
        echo "wrote $out" >&2
    fi
done
if ! cmp -s "$REPO/wit/0.2.0/plugin.wit" "$REPO/guest-sdk/wit/plugin.wit"; then
    echo "wit-packages: guest-sdk/wit/plugin.wit differs from wit/0.2.0/plugin.wit" >&2
    status=1
fi
exit "$status"
