#!/usr/bin/env bash
# Builds a JavaScript plugin into a wasmgate component.
#
#   scripts/build-js-plugin.sh <plugin dir> <out.wasm>
#
# <plugin dir>/plugin.js is the entry: a plain ES module exporting init, onConnect, onMessage,
# onClose and onTimer (any of them may be left out: a missing handler does nothing). It may import
# other files of <plugin dir> with relative paths. The host API is `import * as host from
# "wasmgate:plugin/host@0.1.0"`.
#
# How: componentize-qjs (QuickJS, snapshotted with Wizer) with its non-async runtime (`--sync`:
# no component-model-async needed in the host). componentize-qjs 0.4.5 exports an `init` function
# of its own (the Wizer entry point) that clashes with the world's `init`, so the plugin is built
# against a copy of the WIT whose `init` is called `wasmgate-init`, and the finished component is
# rewritten (wasm-tools print/parse) to drop the internal `init` export and rename
# `wasmgate-init` to `init`. The result is checked against the real world by
# scripts/check-plugin.sh.
set -euo pipefail

if [[ $# -ne 2 ]]; then
    sed -n '2,4p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
SRC="$(cd "$1" && pwd)"
OUT="$2"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TC="${WASMGATE_TOOLCHAINS:-$REPO/.cache/toolchains}"

"$REPO/scripts/toolchains.sh" js
QJS="$TC/js/node_modules/.bin/componentize-qjs"
WASM_TOOLS="$TC/cargo/bin/wasm-tools"

[[ -f "$SRC/plugin.js" ]] || {
    echo "build-js-plugin: $SRC/plugin.js not found (the entry module of a JavaScript plugin)" >&2
    exit 1
}

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# 1. The WIT with the clashing export renamed.
mkdir -p "$WORK/wit"
cp "$REPO"/wit/*.wit "$WORK/wit/"
sed -i 's/^\(\s*\)export init: func/\1export wasmgate-init: func/' "$WORK/wit/plugin.wit"
grep -q 'export wasmgate-init: func' "$WORK/wit/plugin.wit" || {
    echo "build-js-plugin: could not find 'export init: func' in wit/plugin.wit" >&2
    exit 1
}

# 2. The plugin's files, plus an entry module that maps the world's exports onto them.
mkdir -p "$WORK/app"
(cd "$SRC" && tar --exclude=node_modules --exclude='*.wasm' -cf - .) | (cd "$WORK/app" && tar -xf -)
cat >"$WORK/app/__wasmgate_entry.js" <<'EOF'
import * as plugin from "./plugin.js";

export function wasmgateInit(config) {
  if (typeof plugin.init === "function") plugin.init(config);
}
export function onConnect(client) {
  if (typeof plugin.onConnect === "function") plugin.onConnect(client);
}
export function onMessage(client, msg) {
  if (typeof plugin.onMessage === "function") plugin.onMessage(client, msg);
}
export function onClose(client, reason) {
  if (typeof plugin.onClose === "function") plugin.onClose(client, reason);
}
export function onTimer(id, payload) {
  if (typeof plugin.onTimer === "function") plugin.onTimer(id, payload);
}
EOF

# 3. Componentize.
(cd "$WORK/app" && "$QJS" --wit "$WORK/wit" --js __wasmgate_entry.js --world plugin --sync \
    -o "$WORK/raw.wasm" >"$WORK/qjs.log" 2>&1) || {
    cat "$WORK/qjs.log" >&2
    echo "build-js-plugin: componentize-qjs failed" >&2
    exit 1
}

# 4. Drop the runtime's own `init` export and rename `wasmgate-init` to `init`.
"$WASM_TOOLS" print "$WORK/raw.wasm" -o "$WORK/raw.wat"
python3 - "$WORK/raw.wat" "$WORK/fixed.wat" <<'EOF'
import re
import sys

src, dst = sys.argv[1], sys.argv[2]
with open(src, encoding="utf-8") as f:
    lines = f.read().split("\n")
while lines and lines[-1] == "":
    lines.pop()
if not lines or lines[-1] != ")":
    sys.exit("unexpected end of component text")

alias_re = re.compile(r'^  \(alias export (\d+) "([^"]+)" \(func \(;\d+;\)\)\)$')
export_re = re.compile(r'^  \(export \(;\d+;\) "([^"]+)" \(func \d+\)\)$')

# The component ends with pairs `(alias export I "name" (func))` / `(export "name" (func))`.
end = len(lines) - 1
start = end
while start >= 2 and alias_re.match(lines[start - 2]) and export_re.match(lines[start - 1]):
    start -= 2
pairs = []
for k in range(start, end, 2):
    a = alias_re.match(lines[k])
    e = export_re.match(lines[k + 1])
    if a.group(2) != e.group(1):
        sys.exit(f"alias/export mismatch: {lines[k]} / {lines[k + 1]}")
    pairs.append((a.group(1), a.group(2)))
names = [name for _, name in pairs]
if "wasmgate-init" not in names or "init" not in names:
    sys.exit(f"expected exports init and wasmgate-init, found {names}")

tail = []
for instance, name in pairs:
    if name == "init":
        continue  # the Wizer entry point of componentize-qjs: already run at build time
    public = "init" if name == "wasmgate-init" else name
    ident = "$wg-" + public
    tail.append(f'  (alias export {instance} "{name}" (func {ident}))')
    tail.append(f'  (export "{public}" (func {ident}))')
with open(dst, "w", encoding="utf-8") as f:
    f.write("\n".join(lines[:start] + tail + [")", ""]))
EOF
mkdir -p "$(dirname "$OUT")"
"$WASM_TOOLS" parse "$WORK/fixed.wat" -o "$WORK/out.wasm"
"$WASM_TOOLS" validate "$WORK/out.wasm"

# 5. Check that the result implements exactly the plugin world.
"$REPO/scripts/check-plugin.sh" "$WORK/out.wasm"
mv "$WORK/out.wasm" "$OUT"
echo "built $OUT ($(stat -c %s "$OUT") bytes)" >&2
