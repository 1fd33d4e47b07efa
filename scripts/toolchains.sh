#!/usr/bin/env bash
# Installs (once) and checks the toolchains that build wasmgate plugins in JavaScript, Python and C.
#
#   scripts/toolchains.sh [js|python|c|all] [--check]
#
# Everything lands under .cache/toolchains/ in the repository (gitignored), or under
# $WASMGATE_TOOLCHAINS when set. Every step checks the installed version first, so running the
# script again costs a second. --check installs nothing and exits non-zero when something is
# missing, saying what and how to get it.
#
# Pinned versions (change them here, and in scripts/js-toolchain/package.json for JavaScript):
#   wasm-tools                                 1.254.2  (wasmparser 0.254, as in wasmtime 48)
#   wit-bindgen-cli                            0.61.1   (C bindings; same generator as the Rust guest)
#   wasi-preview1-component-adapter-provider  48.0.8   (reactor adapter matching wasmtime 48.0.8)
#   componentize-py (PyPI)                     0.25.1
#   componentize-qjs (npm)                     0.4.5    (see scripts/js-toolchain/package.json)
#   clang, lld, wasi-libc, libclang-rt-dev-wasm32 from Debian (bookworm: clang 14, wasi-libc 2022)
set -euo pipefail

WASM_TOOLS_VERSION=1.254.2
WIT_BINDGEN_VERSION=0.61.1
ADAPTER_VERSION=48.0.8
COMPONENTIZE_PY_VERSION=0.25.1
NODE_MIN_MAJOR=18
APT_PACKAGES=(clang lld wasi-libc libclang-rt-dev-wasm32)

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TC="${WASMGATE_TOOLCHAINS:-$REPO/.cache/toolchains}"
CARGO_ROOT="$TC/cargo"
CHECK_ONLY=0
MISSING=0

say() { printf 'toolchains: %s\n' "$*" >&2; }
missing() {
    say "MISSING: $*"
    MISSING=1
}
die() {
    say "ERROR: $*"
    exit 1
}

usage() {
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# --- shared tools (wasm-tools) -------------------------------------------------------------

# Installs a crates.io binary at an exact version under $CARGO_ROOT unless it is already there.
cargo_tool() {
    local crate=$1 bin=$2 version=$3
    local have=""
    if [[ -x "$CARGO_ROOT/bin/$bin" ]]; then
        have="$("$CARGO_ROOT/bin/$bin" --version 2>/dev/null | awk '{print $2}')"
    fi
    if [[ "$have" == "$version" ]]; then
        return 0
    fi
    if ((CHECK_ONLY)); then
        missing "$bin $version (have: ${have:-none}); run scripts/toolchains.sh to install it"
        return 0
    fi
    command -v cargo >/dev/null || die "cargo is needed to install $crate: install Rust (rustup)"
    say "installing $crate $version into $CARGO_ROOT (a few minutes, once)"
    cargo install "$crate" --version "=$version" --locked --root "$CARGO_ROOT" --quiet \
        || die "cargo install $crate $version failed"
}

need_wasm_tools() { cargo_tool wasm-tools wasm-tools "$WASM_TOOLS_VERSION"; }

# --- JavaScript ----------------------------------------------------------------------------

js() {
    command -v node >/dev/null || {
        missing "node (>= $NODE_MIN_MAJOR) and npm: apt-get install nodejs npm"
        return 0
    }
    local major
    major="$(node -p 'process.versions.node.split(".")[0]')"
    ((major >= NODE_MIN_MAJOR)) || missing "node >= $NODE_MIN_MAJOR (have $(node --version))"
    command -v npm >/dev/null || {
        missing "npm: apt-get install npm"
        return 0
    }
    local src="$REPO/scripts/js-toolchain" dst="$TC/js"
    local want have=""
    want="$(sha256sum "$src/package-lock.json" | cut -d' ' -f1)"
    [[ -f "$dst/.lock-sha256" ]] && have="$(cat "$dst/.lock-sha256")"
    if [[ "$want" == "$have" && -x "$dst/node_modules/.bin/componentize-qjs" ]]; then
        return 0
    fi
    if ((CHECK_ONLY)); then
        missing "componentize-qjs (npm, pinned in scripts/js-toolchain/package-lock.json)"
        return 0
    fi
    say "installing the JavaScript toolchain (npm, from the lock file) into $dst"
    mkdir -p "$dst"
    cp "$src/package.json" "$src/package-lock.json" "$dst/"
    # Only componentize-qjs is needed to build; jco (for `jco types`) is a dev dependency.
    # `npm install` rather than `npm ci`: the lock names optional per-platform bindings that were
    # never published for some platforms, which `npm ci` refuses; `npm install` still takes the
    # exact versions of the lock (package.json pins them too).
    (cd "$dst" && npm install --omit=dev --no-audit --no-fund --loglevel=error >&2) \
        || die "npm install failed in $dst"
    [[ -x "$dst/node_modules/.bin/componentize-qjs" ]] \
        || die "componentize-qjs did not install: is there a prebuilt binding for $(uname -sm)?"
    echo "$want" >"$dst/.lock-sha256"
}

# Installs jco as well (dev dependency) to regenerate the TypeScript declarations of the WIT.
js_types() {
    js
    local dst="$TC/js"
    [[ -x "$dst/node_modules/.bin/jco" ]] && return 0
    ((CHECK_ONLY)) && {
        missing "jco (npm dev dependency)"
        return 0
    }
    say "installing jco (dev dependency) into $dst"
    (cd "$dst" && npm install --no-audit --no-fund --loglevel=error >&2) || die "npm install failed in $dst"
}

# --- Python --------------------------------------------------------------------------------

python() {
    local venv="$TC/py/venv"
    local have=""
    if [[ -x "$venv/bin/componentize-py" ]]; then
        have="$("$venv/bin/componentize-py" --version 2>/dev/null | awk '{print $2}')"
    fi
    [[ "$have" == "$COMPONENTIZE_PY_VERSION" ]] && return 0
    if ((CHECK_ONLY)); then
        missing "componentize-py $COMPONENTIZE_PY_VERSION (have: ${have:-none})"
        return 0
    fi
    command -v python3 >/dev/null || die "python3 (>= 3.9, with venv) is needed: apt-get install python3 python3-venv"
    say "installing componentize-py $COMPONENTIZE_PY_VERSION into $venv"
    if [[ ! -x "$venv/bin/pip" ]]; then
        python3 -m venv "$venv" || die "python3 -m venv failed: apt-get install python3-venv"
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "componentize-py==$COMPONENTIZE_PY_VERSION" || die "pip install componentize-py failed"
}

# --- C -------------------------------------------------------------------------------------

apt_c() {
    local absent=()
    local p
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || absent+=("$p")
    done
    ((${#absent[@]} == 0)) && return 0
    if ((CHECK_ONLY)); then
        missing "Debian packages ${absent[*]}: apt-get install ${absent[*]}"
        return 0
    fi
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
        die "Debian packages ${absent[*]} are missing: run as root: apt-get update && apt-get install -y ${absent[*]}"
    fi
    say "installing Debian packages: ${absent[*]}"
    apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${absent[@]}" >/dev/null \
        || die "apt-get install ${absent[*]} failed"
}

# Fetches the preview1 -> preview2 reactor adapter from crates.io and copies it next to the tools.
adapter() {
    local out="$TC/adapter/wasi_snapshot_preview1.reactor.wasm"
    local stamp="$TC/adapter/version"
    if [[ -f "$out" && "$(cat "$stamp" 2>/dev/null)" == "$ADAPTER_VERSION" ]]; then
        return 0
    fi
    if ((CHECK_ONLY)); then
        missing "the preview1 reactor adapter (crate wasi-preview1-component-adapter-provider $ADAPTER_VERSION)"
        return 0
    fi
    command -v cargo >/dev/null || die "cargo is needed to fetch the preview1 adapter: install Rust (rustup)"
    local fetch="$TC/adapter/fetch"
    mkdir -p "$fetch/src"
    cat >"$fetch/Cargo.toml" <<EOF
[package]
name = "adapter-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
wasi-preview1-component-adapter-provider = "=$ADAPTER_VERSION"

# Not part of the repository's workspace.
[workspace]
EOF
    : >"$fetch/src/lib.rs"
    say "fetching wasi-preview1-component-adapter-provider $ADAPTER_VERSION"
    (cd "$fetch" && cargo fetch --quiet) || die "cargo fetch of the adapter crate failed"
    local manifest
    manifest="$(cd "$fetch" && cargo metadata --format-version 1 --quiet | python3 -c '
import json, sys
meta = json.load(sys.stdin)
for p in meta["packages"]:
    if p["name"] == "wasi-preview1-component-adapter-provider":
        print(p["manifest_path"])
')"
    local src
    src="$(dirname "$manifest")/artefacts/wasi_snapshot_preview1.reactor.wasm"
    [[ -f "$src" ]] || die "adapter not found at $src"
    cp "$src" "$out"
    echo "$ADAPTER_VERSION" >"$stamp"
}

c() {
    apt_c
    cargo_tool wit-bindgen-cli wit-bindgen "$WIT_BINDGEN_VERSION"
    need_wasm_tools
    adapter
    if ((!CHECK_ONLY)); then
        [[ -f /usr/lib/wasm32-wasi/libc.a ]] || die "wasi-libc is installed but /usr/lib/wasm32-wasi/libc.a is missing"
        # The Debian wasm32 builtins live in the clang resource dir; check that linking works.
        local probe
        probe="$(mktemp -d)"
        printf 'int f(long long a, long long b){return (int)(a/b);}\n' >"$probe/p.c"
        clang --target=wasm32-wasi -mexec-model=reactor -O2 "$probe/p.c" -o "$probe/p.wasm" 2>"$probe/err" \
            || {
                cat "$probe/err" >&2
                rm -rf "$probe"
                die "clang cannot link for wasm32-wasi: is libclang-rt-dev-wasm32 installed?"
            }
        rm -rf "$probe"
    fi
}

# --- main ----------------------------------------------------------------------------------

what=all
for arg in "$@"; do
    case "$arg" in
    js | python | c | all | js-types) what=$arg ;;
    --check) CHECK_ONLY=1 ;;
    -h | --help) usage ;;
    *) usage ;;
    esac
done

mkdir -p "$TC"
# One installer at a time: builds of several plugins may start together.
exec 9>"$TC/.lock"
flock 9

case "$what" in
js) need_wasm_tools && js ;;
js-types) js_types ;;
python) need_wasm_tools && python ;;
c) c ;;
all)
    need_wasm_tools
    js
    python
    c
    ;;
esac

if ((MISSING)); then
    say "some toolchains are missing (see above)"
    exit 1
fi
if ((CHECK_ONLY)); then
    say "$what: all present"
fi
