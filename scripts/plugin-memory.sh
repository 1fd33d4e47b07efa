#!/usr/bin/env bash
# Memory of a gateway per example plugin (issue 11): RSS of the release gateway with no plugin,
# then with each example plugin alone, on a cold compile (empty cache folder) and on a cache hit
# (second start on the same folder). Prints one table row per run:
#
#   scripts/plugin-memory.sh [PLUGIN...]        # default: chat c-chat js-chat py-chat
#
# Columns (KiB, from /proc/PID/status and /proc/PID/smaps_rollup, read SETTLE seconds after the
# plugin serves): VmRSS; RssAnon (heap, compiled code, instance memory written); RssFile (the
# binary, file-mapped code); RssShmem (memfd memory images the instances touched); Pss; the
# increase of VmRSS over the bare gateway; memfd, the size of the memfd files wasmtime made for
# copy-on-write linear-memory images (system memory, shmem, that VmRSS shows only as far as
# instances touch it); and codeBytes from /api/plugins when present.
#
# Environment: WASMGATE_BIN (default target/release/wasmgate, built if missing), SETTLE (default
# 3 s), INSTANCES (sets WASMGATE_PLUGIN__INSTANCES for every run when non-empty), PLUGINS_DIR
# (where the .wasm files are, default plugins/; build them with scripts/build-plugins.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${WASMGATE_BIN:-target/release/wasmgate}"
settle="${SETTLE:-3}"
src="${PLUGINS_DIR:-plugins}"
if [ $# -gt 0 ]; then plugins=("$@"); else plugins=(chat c-chat js-chat py-chat); fi
[ -x "$bin" ] || cargo build --release -p wasmgate
[ -n "${INSTANCES:-}" ] && export WASMGATE_PLUGIN__INSTANCES="$INSTANCES"

work="$(mktemp -d)"
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

field() { awk -v k="$1:" '$1==k {print $2}' "$2"; }

# KiB of memfd memory images: per memfd inode, its largest mapping.
memfd_kib() {
  awk '/^[0-9a-f]+-[0-9a-f]+ / { name = $6; inode = $5 }
       /^Size:/ { if (name ~ /memfd:/ && $2 > size[inode]) size[inode] = $2 }
       END { t = 0; for (i in size) t += size[i]; print t }' "/proc/$1/smaps"
}

# start NAME PLUGDIR CACHEDIR: run the gateway, wait until NAME serves (or the API answers when
# NAME is empty), wait SETTLE s; sets $pid, $port, $loaded_in.
start() {
  local name="$1" dir="$2" cache="$3"
  port="$(free_port)"
  WASMGATE_CACHE_DIR="$cache" WASMGATE_KV_DIR="$work/kv" \
    "$bin" --listen "127.0.0.1:$port" --plugins "$dir" --log-level warn \
    >"$work/gateway.log" 2>&1 &
  pid=$!
  local t0 deadline
  t0=$(date +%s.%N)
  deadline=$(( $(date +%s) + 600 ))
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "gateway exited; log:" >&2; cat "$work/gateway.log" >&2; exit 1
    fi
    body="$(curl -sf "http://127.0.0.1:$port/api/plugins" 2>/dev/null || true)"
    if [ -n "$body" ]; then
      if [ -z "$name" ]; then break; fi
      if python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if any(p["name"]==sys.argv[2] and p.get("version") for p in d["data"]["list"]) else 1)' "$body" "$name"; then
        break
      fi
    fi
    if [ "$(date +%s)" -gt "$deadline" ]; then echo "timed out waiting for $name" >&2; exit 1; fi
    sleep 0.05
  done
  loaded_in=$(python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.1f}')" "$t0" "$(date +%s.%N)")
  sleep "$settle"
}

stop() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
}

base_rss=""
# row LABEL NAME CODE: print the row of the running gateway.
row() {
  local label="$1" name="$2" code="$3"
  local st="/proc/$pid/status" sm="/proc/$pid/smaps_rollup"
  local rss anon file shmem pss code_bytes memfd
  rss=$(field VmRSS "$st"); anon=$(field RssAnon "$st"); file=$(field RssFile "$st")
  shmem=$(field RssShmem "$st"); pss=$(field Pss "$sm"); memfd=$(memfd_kib "$pid")
  [ -z "$base_rss" ] && base_rss="$rss"
  code_bytes="-"
  if [ -n "$name" ]; then
    code_bytes=$(curl -sf "http://127.0.0.1:$port/api/plugins" | python3 -c 'import json,sys; d=json.load(sys.stdin); p=[p for p in d["data"]["list"] if p["name"]==sys.argv[1]][0]; print(p.get("codeBytes","-"))' "$name")
  fi
  printf '%-10s %-11s %9s %9s %9s %9s %9s %9s %7s %12s %7s\n' "$label" "$code" "$rss" "$anon" \
    "$file" "$shmem" "$pss" "+$((rss - base_rss))" "$memfd" "$code_bytes" "${loaded_in}s"
}

printf '%-10s %-11s %9s %9s %9s %9s %9s %9s %7s %12s %7s\n' plugin code VmRSS RssAnon RssFile \
  RssShmem Pss delta memfd codeBytes ready
mkdir -p "$work/none" "$work/kv"
start "" "$work/none" "$work/cache-none"
row "(none)" "" "-"
stop
for name in "${plugins[@]}"; do
  wasm="$src/$name.wasm"
  if [ ! -f "$wasm" ]; then echo "$wasm missing: run scripts/build-plugins.sh" >&2; continue; fi
  mkdir -p "$work/$name"
  cp "$wasm" "$work/$name/$name.wasm"
  rm -rf "$work/cache-$name"
  start "$name" "$work/$name" "$work/cache-$name"
  row "$name" "$name" compiler
  stop
  start "$name" "$work/$name" "$work/cache-$name"
  row "$name" "$name" disk-cache
  stop
done
