#!/usr/bin/env bash
# Builds a Python plugin into a wasmgate component.
#
#   scripts/build-py-plugin.sh <plugin dir> <out.wasm>
#
# <plugin dir>/app.py is the entry module: it defines `class WitWorld(wit_world.WitWorld)` with
# the methods init, on_connect, on_message, on_close and on_timer, and calls the gateway through
# `from wit_world.imports import host`. Other modules and pure-Python packages in <plugin dir> are
# bundled too. componentize-py snapshots the interpreter after importing app.py, so module-level
# code runs at build time, not at load time.
#
# How: componentize-py (CPython compiled to WASI, snapshotted with Wizer) against the repository's
# wit/ directory, world `plugin`; the result is checked by scripts/check-plugin.sh.
#
# To get the generated bindings for your editor (type hints of `host`, `Message_Text`, ...):
#   .cache/toolchains/py/venv/bin/componentize-py -d wit -w plugin bindings <plugin dir>/.bindings
set -euo pipefail

if [[ $# -ne 2 ]]; then
    sed -n '2,4p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
SRC="$(cd "$1" && pwd)"
OUT="$2"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TC="${WASMGATE_TOOLCHAINS:-$REPO/.cache/toolchains}"

"$REPO/scripts/toolchains.sh" python
CPY="$TC/py/venv/bin/componentize-py"

[[ -f "$SRC/app.py" ]] || {
    echo "build-py-plugin: $SRC/app.py not found (the entry module of a Python plugin)" >&2
    exit 1
}

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

mkdir -p "$(dirname "$OUT")"
# -p: the plugin's own directory only (no virtualenv site-packages leak into the component).
(cd "$WORK" && env -u VIRTUAL_ENV "$CPY" -d "$REPO/wit/0.2.0" -w plugin componentize -p "$SRC" app \
    -o "$WORK/out.wasm" >"$WORK/cpy.log" 2>&1) || {
    cat "$WORK/cpy.log" >&2
    echo "build-py-plugin: componentize-py failed" >&2
    exit 1
}
"$REPO/scripts/check-plugin.sh" "$WORK/out.wasm"
mv "$WORK/out.wasm" "$OUT"
echo "built $OUT ($(stat -c %s "$OUT") bytes)" >&2
