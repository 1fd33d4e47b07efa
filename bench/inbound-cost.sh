#!/usr/bin/env bash
# Server CPU per MB a gateway spends reading client frames, for two gateway binaries, measured
# alternately (A, B, A, B, ...) so that each run has both: the median per binary and of the
# per-run ratio B ÷ A, with its min–max. No plugin, rate limits off; 20 Node `ws` clients send
# as fast as their socket takes for 5 s.
#   bench/inbound-cost.sh BIN_A BIN_B [SIZE ...]      (default sizes: 100 60000; 5 runs)
# Needs node and bench/peers/node_modules (scripts/bench.sh --install-peers).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
a=$1; b=$2; shift 2
if [ $# -gt 0 ]; then sizes=("$@"); else sizes=(100 60000); fi
runs=${RUNS:-5}

one() { # BIN SIZE -> "<ms per MB>"
  local bin=$1 size=$2 d port pid line n c0 c1
  d=$(mktemp -d); mkdir "$d/plugins"
  printf '[systems.bench]\n[limits]\nclient_messages_per_second = 0\nclient_bytes_per_second = 0\n' >"$d/c.toml"
  port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  "$bin" --listen "127.0.0.1:$port" --plugins "$d/plugins" --config "$d/c.toml" >"$d/log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -sf "127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  coproc F { cd "$here" && node inbound-flood.mjs "$port" "$size" 20 5 2>/dev/null; }
  read -r line <&"${F[0]}"                      # GO
  c0=$(awk '{print $14+$15}' "/proc/$pid/stat")
  read -r line <&"${F[0]}"                      # SENT <bytes>
  c1=$(awk '{print $14+$15}' "/proc/$pid/stat")
  n=${line#SENT }
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$d"
  python3 -c "print(($c1-$c0)*1000/$(getconf CLK_TCK)/($n/1e6))"
}

for size in "${sizes[@]}"; do
  out=()
  for i in $(seq "$runs"); do
    out+=("$(one "$a" "$size") $(one "$b" "$size")")
  done
  printf '%s\n' "${out[@]}" | python3 -c "
import sys, statistics as st
rows = [tuple(map(float, l.split())) for l in sys.stdin if l.strip()]
r = [b / a for a, b in rows]
print(f'$size B frames: A {st.median(x for x, _ in rows):.3f} ms/MB, B {st.median(y for _, y in rows):.3f} ms/MB, '
      f'B/A {st.median(r):.2f}x ({min(r):.2f}-{max(r):.2f}) over {len(rows)} runs')"
done
