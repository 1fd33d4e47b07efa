#!/usr/bin/env bash
# Builds a JavaScript plugin into a wasmgate component.
#
#   scripts/build-js-plugin.sh <plugin dir> <out.wasm>
#
# <plugin dir>/plugin.js is the entry: a plain ES module exporting init, onConnect, onMessage,
# onClose and onTimer (any of them may be left out: a missing handler does nothing). It may import
# other files of <plugin dir> with relative paths. The host API is `import * as host from
# "wasmgate:plugin/host@0.2.0"`.
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
cp "$REPO"/wit/0.2.0/*.wit "$WORK/wit/"
sed -i 's/^\(\s*\)export init: func/\1export wasmgate-init: func/' "$WORK/wit/plugin.wit"
grep -q 'export wasmgate-init: func' "$WORK/wit/plugin.wit" || {
    echo "build-js-plugin: could not find 'export init: func' in wit/plugin.wit" >&2
    exit 1
}

# 2. The plugin's files, plus an entry module that maps the world's exports onto them.
mkdir -p "$WORK/app"
(cd "$SRC" && tar --exclude='*.wasm' -cf - .) | (cd "$WORK/app" && tar -xf -)

# The QuickJS runtime has neither `console` nor TextEncoder/TextDecoder: the prelude defines them
# (console.* goes to host.log; the codecs are UTF-8 only) before plugin.js is evaluated.
cat >"$WORK/app/__wasmgate_prelude.js" <<'EOF'
import * as host from "wasmgate:plugin/host@0.2.0";

if (typeof globalThis.console === "undefined") {
  const show = (v) => {
    if (typeof v === "string") return v;
    if (v instanceof Error) return String(v.stack || v);
    try {
      const s = JSON.stringify(v);
      return s === undefined ? String(v) : s;
    } catch {
      return String(v);
    }
  };
  const at = (level) => (...args) => host.log(level, args.map(show).join(" "));
  globalThis.console = {
    trace: at("trace"),
    debug: at("debug"),
    log: at("info"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
  };
}

if (typeof globalThis.TextEncoder === "undefined") {
  globalThis.TextEncoder = class TextEncoder {
    get encoding() {
      return "utf-8";
    }
    encode(input = "") {
      const s = String(input);
      const out = [];
      for (let i = 0; i < s.length; i++) {
        let c = s.charCodeAt(i);
        if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
          const d = s.charCodeAt(i + 1);
          if (d >= 0xdc00 && d <= 0xdfff) {
            c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
            i++;
          }
        }
        if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
        if (c < 0x80) out.push(c);
        else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
        else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
        else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
      }
      return new Uint8Array(out);
    }
  };
}

if (typeof globalThis.TextDecoder === "undefined") {
  const cont = (b, i) => i < b.length && (b[i] & 0xc0) === 0x80;
  globalThis.TextDecoder = class TextDecoder {
    get encoding() {
      return "utf-8";
    }
    decode(input) {
      if (input === undefined) return "";
      const b = input instanceof Uint8Array ? input : new Uint8Array(input.buffer ?? input);
      let s = "";
      for (let i = 0; i < b.length; ) {
        const c = b[i];
        let cp = 0xfffd;
        let n = 1;
        if (c < 0x80) {
          cp = c;
        } else if (c >= 0xc2 && c < 0xe0 && cont(b, i + 1)) {
          cp = ((c & 31) << 6) | (b[i + 1] & 63);
          n = 2;
        } else if (c >= 0xe0 && c < 0xf0 && cont(b, i + 1) && cont(b, i + 2)) {
          cp = ((c & 15) << 12) | ((b[i + 1] & 63) << 6) | (b[i + 2] & 63);
          n = 3;
          if (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)) cp = 0xfffd;
        } else if (c >= 0xf0 && c < 0xf5 && cont(b, i + 1) && cont(b, i + 2) && cont(b, i + 3)) {
          cp = ((c & 7) << 18) | ((b[i + 1] & 63) << 12) | ((b[i + 2] & 63) << 6) | (b[i + 3] & 63);
          n = 4;
          if (cp < 0x10000 || cp > 0x10ffff) cp = 0xfffd;
        }
        s += String.fromCodePoint(cp);
        i += n;
      }
      return s;
    }
  };
}
EOF

# The entry maps the world's exports onto plugin.js; a handler plugin.js leaves out does nothing.
cat >"$WORK/app/__wasmgate_entry.js" <<'EOF'
import "./__wasmgate_prelude.js";
import * as plugin from "./plugin.js";

export function wasmgateInit(config) {
  if (typeof plugin.init === "function") plugin.init(config);
}
export function onConnect(client, context) {
  if (typeof plugin.onConnect === "function") plugin.onConnect(client, context);
}
export function onMessage(client, msg) {
  if (typeof plugin.onMessage === "function") plugin.onMessage(client, msg);
}
export function onClose(client, reason) {
  if (typeof plugin.onClose === "function") plugin.onClose(client, reason);
}
export function onTimer(timer) {
  if (typeof plugin.onTimer === "function") plugin.onTimer(timer);
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
