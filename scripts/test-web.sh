#!/usr/bin/env bash
# The browser-side tests: the JS client library against a real gateway (node --test), then the
# quiz demo and the dashboard in headless Chromium through playwright-core.
# Installs what is missing: Debian's chromium (+ chromium-driver) when /usr/bin/chromium is absent,
# and playwright-core at the version pinned in clients/js/package-lock.json.
# Builds target/debug/wasmgate and the example Rust plugins (quiz, chat) into target/web-plugins/
# (under $CARGO_TARGET_DIR when it is set).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if [ ! -x /usr/bin/chromium ]; then
  echo "== installing Debian chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium chromium-driver >/dev/null
fi
if [ ! -d clients/js/node_modules/playwright-core ]; then
  echo "== npm ci (playwright-core)"
  (cd clients/js && npm ci --no-audit --no-fund)
fi

echo "== building the gateway and the example plugins"
cargo build -p wasmgate
target="${CARGO_TARGET_DIR:-$root/target}"
plugins="$target/web-plugins"
scripts/build-rust-plugins.sh "$plugins" >/dev/null

export WEBTEST_BIN="$target/debug/wasmgate"
export WEBTEST_PLUGINS="$plugins"
echo "== client library and browser tests"
cd clients/js
exec node --experimental-websocket --test --test-concurrency=1 test/
