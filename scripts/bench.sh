#!/usr/bin/env bash
# Benchmark wasmgate against Node `ws` and Socket.IO: every scenario, one command.
#
#   scripts/bench.sh [--smoke] [--soak] [--runs N] [--only LIST] [--layout pinned|free]
#                    [--plugin-instances N] [--release|--debug] [--servers LIST] [--install-peers]
#                    [-- ARGS...]
#
# Builds the load generator, the gateway and the echo plugins (Rust: the `hostcalls` test guest;
# JavaScript and Python: bench/plugins/{js,py}-echo, whose toolchains scripts/toolchains.sh
# installs), installs the peers (`npm ci` in bench/peers), then runs `wasmgate-bench all` N times
# (every scenario against every server in each run) with the load generator on CPU 0 and each
# server on CPU 1 (`taskset`). Prints a Markdown table of medians and per-run ratios and writes
# it, with every run's raw JSON, to bench/results/latest.{md,json} (smoke runs:
# bench/results/smoke.{md,json}; --only runs: bench/results/only-<list>-<layout>.{md,json}).
#
#   --smoke          tiny sizes (tens of connections); under a minute once built. Builds the
#                    debug profile unless --release is given (it shares `cargo test`'s artefacts).
#   --soak           only the soak (wasmgate with the chat plugin, 10 minutes; with --smoke 15 s):
#                    churn, chat and pushes, fails on any error or end RSS > 1.10 x warm-up RSS.
#                    Results in bench/results/soak.{md,json} (soak-smoke.* with --smoke);
#                    shorter: -- --soak-duration 60
#   --runs N         runs (default 5; --smoke and --soak: 1). Medians over the runs, ratios
#                    to Node ws (without it, of the cluster to one wasmgate) computed inside
#                    each run (median and min–max shown)
#   --only LIST      only these scenarios: idle, fanout, fanout-group, latency, echo
#                    (= echo-native + echo-app), echo-native, echo-app, scaling, storm, reload
#   --layout L       pinned (default): load generator on CPU 0, servers on CPU 1;
#                    free: servers on every core, the load generator unpinned (one thread;
#                    bench/README.md has the measurements behind this). The scaling scenario
#                    pins its one-core half to CPU 1 in both layouts.
#   --plugin-instances N   [plugins.echo] instances = N in the gateways of the scaling and
#                    hot-reload scenarios (left out by default)
#   --client-threads N     worker threads of the load generator (default 1)
#   --release        build the release profile (default for full runs)
#   --debug          build the debug profile
#   --servers LIST   comma-separated subset of wasmgate,ws,socketio (default: all three), or
#                    cluster: three wasmgate nodes on a redis-server of the run's own (issue 12;
#                    idle, fanout, fanout-group and latency only)
#   --install-peers  only install the peers' npm packages, then exit
#   -- ARGS          passed to wasmgate-bench (e.g. -- --fanout-clients 5000)
# CARGO_TARGET_DIR is honoured. WASMGATE_BIN overrides the gateway binary (to compare a variant
# build against the peers the same way). WASMGATE_ECHO_WASM, WASMGATE_JS_ECHO_WASM and
# WASMGATE_PY_ECHO_WASM override the Rust, JavaScript and Python echo plugins, WASMGATE_CHAT_WASM
# the soak's chat plugin.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
smoke=0
soak=0
profile=""
servers="wasmgate,ws,socketio"
install_only=0
runs=""
only=""
layout=pinned
instances=""
client_threads=""
extra=()

while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1; shift ;;
    --soak) soak=1; servers=wasmgate; shift ;;
    --release) profile=release; shift ;;
    --debug) profile=debug; shift ;;
    --servers)
      [ $# -ge 2 ] || { echo "--servers needs a list" >&2; exit 2; }
      servers="$2"; shift 2 ;;
    --install-peers) install_only=1; shift ;;
    --runs|--only|--layout|--plugin-instances|--client-threads)
      [ $# -ge 2 ] || { echo "$1 needs a value" >&2; exit 2; }
      case "$1" in
        --runs) runs="$2" ;;
        --only) only="$2" ;;
        --layout) layout="$2" ;;
        --plugin-instances) instances="$2" ;;
        --client-threads) client_threads="$2" ;;
      esac
      shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,40p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$profile" ]; then
  if [ "$smoke" = 1 ]; then profile=debug; else profile=release; fi
fi
if [ -z "$runs" ]; then
  if [ "$smoke" = 1 ] || [ "$soak" = 1 ]; then runs=1; else runs=5; fi
fi
case "$layout" in pinned|free) ;; *) echo "--layout is pinned or free" >&2; exit 2 ;; esac

log() { echo "bench.sh: $*" >&2; }

# --- peers ---------------------------------------------------------------------------------
install_peers() {
  local peers="$root/bench/peers"
  command -v node >/dev/null || { log "node not found: install Node.js 18+ (apt-get install nodejs npm)"; exit 1; }
  command -v npm >/dev/null || { log "npm not found: install npm (apt-get install npm)"; exit 1; }
  # `npm ci` when the installed tree is missing or older than the lock file.
  if [ ! -f "$peers/node_modules/.package-lock.json" ] \
     || [ "$peers/package-lock.json" -nt "$peers/node_modules/.package-lock.json" ]; then
    log "installing the peers' npm packages (npm ci in bench/peers)"
    (cd "$peers" && npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
}
if [ "$install_only" = 1 ]; then install_peers; exit 0; fi
# The soak runs wasmgate alone: no Node peers needed.
[ "$soak" = 1 ] || install_peers

# --- builds --------------------------------------------------------------------------------
command -v cargo >/dev/null || { log "cargo not found: install Rust with rustup"; exit 1; }
target_dir="${CARGO_TARGET_DIR:-$root/target}"
profile_flag=()
[ "$profile" = release ] && profile_flag=(--release)
packages=(-p wasmgate-bench)
case ",$servers," in *,wasmgate,*|*,cluster,*) packages+=(-p wasmgate) ;; esac
log "building ${packages[*]} ($profile)"
(cd "$root" && cargo build "${profile_flag[@]}" "${packages[@]}" >&2)
bench_bin="$target_dir/$profile/wasmgate-bench"
scenario=all
[ "$soak" = 1 ] && scenario=soak
args=("$scenario" --servers "$servers")
[[ ",$servers," == *,wasmgate,* || ",$servers," == *,cluster,* ]] && args+=(--wasmgate-bin "${WASMGATE_BIN:-$target_dir/$profile/wasmgate}")

# The guests' target folder the tests crate's build script uses: shared, so an up-to-date
# guest costs nothing here.
guests_target="$target_dir/guests"
ensure_wasip2() {
  rustup target list --installed 2>/dev/null | grep -q wasm32-wasip2 || rustup target add wasm32-wasip2 >&2
}

if [ "$soak" = 1 ]; then
  chat_wasm="${WASMGATE_CHAT_WASM:-}"
  if [ -z "$chat_wasm" ]; then
    log "building the chat plugin (plugins/chat, wasm32-wasip2 release)"
    ensure_wasip2
    (cd "$root" && cargo build --target wasm32-wasip2 --release -p chat --target-dir "$guests_target" >&2)
    chat_wasm="$guests_target/wasm32-wasip2/release/chat.wasm"
  fi
  args+=(--chat-wasm "$chat_wasm")
fi

echo_wasm="${WASMGATE_ECHO_WASM:-}"
if [ "$soak" = 0 ] && [ -z "$echo_wasm" ] && [[ ",$servers," == *,wasmgate,* ]]; then
  if [ -f "$root/tests/guests/hostcalls/Cargo.toml" ]; then
    log "building the echo plugin (test guest hostcalls, wasm32-wasip2 release)"
    ensure_wasip2
    (cd "$root" && cargo build --target wasm32-wasip2 --release -p hostcalls --target-dir "$guests_target" >&2)
    echo_wasm="$guests_target/wasm32-wasip2/release/hostcalls.wasm"
  else
    log "tests/guests/hostcalls is absent: the plugin rows will be skipped"
  fi
fi
[ -n "$echo_wasm" ] && args+=(--echo-wasm "$echo_wasm")

# The JavaScript and Python echo plugins, rebuilt only when their source, the build scripts or
# the WIT changed since the last build (the Python build takes ~20 s).
build_lang_echo() { # <lang: js|py> <override> -> prints the component's path
  local lang="$1" override="$2" src="$root/bench/plugins/$1-echo"
  if [ -n "$override" ]; then echo "$override"; return; fi
  local out="$target_dir/bench-plugins/$lang-echo.wasm"
  if [ ! -f "$out" ] || [ -n "$(find "$src" "$root/wit" "$root/scripts/build-$lang-plugin.sh" \
        "$root/scripts/check-plugin.sh" "$root/scripts/toolchains.sh" \
        "$root/scripts/js-toolchain/package-lock.json" -newer "$out" \
        -not -path '*/__pycache__*' -print -quit)" ]; then
    log "building the $lang echo plugin (bench/plugins/$lang-echo)"
    # `set -e` does not reach into the command substitution the caller runs this in.
    "$root/scripts/build-$lang-plugin.sh" "$src" "$out" >&2 || return 1
  fi
  echo "$out"
}
if [ "$soak" = 0 ] && [[ ",$servers," == *,wasmgate,* ]]; then
  js_echo="$(build_lang_echo js "${WASMGATE_JS_ECHO_WASM:-}")" || { log "the js echo plugin did not build"; exit 1; }
  py_echo="$(build_lang_echo py "${WASMGATE_PY_ECHO_WASM:-}")" || { log "the py echo plugin did not build"; exit 1; }
  args+=(--js-echo-wasm "$js_echo" --py-echo-wasm "$py_echo")
fi

# --- run -----------------------------------------------------------------------------------
results="$root/bench/results"
mkdir -p "$results"
name=latest
if [ "$smoke" = 1 ]; then
  args+=(--smoke)
  name=smoke
fi
if [ "$soak" = 1 ]; then
  name=soak
  [ "$smoke" = 1 ] && name=soak-smoke
fi
if [ -n "$only" ] && [ "$soak" = 0 ]; then
  args+=(--only "$only")
  name="only-${only//,/+}-$layout"
  [ "$smoke" = 1 ] && name="smoke-$name"
fi
args+=(--runs "$runs" --layout "$layout")
[ -n "$instances" ] && args+=(--plugin-instances "$instances")
[ -n "$client_threads" ] && args+=(--client-threads "$client_threads")
args+=(--markdown "$results/$name.md" --json "$results/$name.json")

# One process may hold at most the hard limit of open files; the idle scenario needs ~19k.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

pin=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  pin=(taskset -c 0)
  if [ "$layout" = pinned ]; then
    args+=(--server-cpu 1)
  else
    # free: the servers may use every core (given explicitly: a child would inherit a pinned
    # load generator's affinity). The load generator is left to the scheduler: pinned to CPU 0
    # it made every server thread landing there share with it (wasmgate's every-core echo came
    # out at 0.90x its one-core echo, bench/README.md); FREE_CLIENT_PIN="taskset -c 0" restores
    # that placement.
    args+=(--server-cpu "0-$(( $(nproc) - 1 ))")
    read -r -a pin <<< "${FREE_CLIENT_PIN:-}"
  fi
fi
log "running: ${pin[*]} $bench_bin ${args[*]} ${extra[*]}"
"${pin[@]}" "$bench_bin" "${args[@]}" "${extra[@]}"
log "written: $results/$name.md and $results/$name.json"
