#!/usr/bin/env python3
"""Reload figures of the plugins folder watcher (issue 14's closing note).

    scripts/reload-figures.py [--bin target/release/wasmgate] [--plugin chat.wasm] [--runs 5]

Starts a gateway on a free port with a fresh plugins folder and one Rust plugin, then measures:
  (a) atomic rename (write a temporary file, rename it over the plugin),
  (b) `cp` over the plugin file,
  (c) an in-place write in 10 chunks 100 ms apart (timed from the last write's close),
as write -> new version serving (p50 / max over --runs changes, the plugin's `reloads` in
GET /api/plugins going up), and loads per change (wasmgate_plugin_reloads_total, every result,
and wasmgate_plugin_file_reads_total); then the file reads of the idle gateway over 60 s
(/proc/PID/io rchar and syscr before and after).

"Cached": two versions of the plugin (the second has an extra custom section, so another
hash, same code) are each loaded once before measuring, so every measured reload swaps to a
compiled version kept in memory; the figures are the watcher's and the swap's, not Cranelift's.
Run it under `chrt -i 0 nice -n 19` on a shared machine (the figures then include waiting for
a CPU).
"""

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def leb(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def variant(data, tag):
    """`data` with a custom section named `tag` appended: another hash, the same component."""
    name = tag.encode()
    body = leb(len(name)) + name + b"x"
    return data + b"\x00" + leb(len(body)) + body


class Gateway:
    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

    def get(self, path):
        for _ in range(2):
            try:
                self.conn.request("GET", path)
                resp = self.conn.getresponse()
                return resp.read().decode()
            except (ConnectionError, http.client.HTTPException, OSError):
                self.conn.close()
        raise RuntimeError(f"GET {path} failed")

    def plugin(self, name):
        body = json.loads(self.get("/api/plugins"))
        for p in body["data"]["list"]:
            if p["name"] == name:
                return p
        return None

    def metric(self, prefix):
        total = 0.0
        for line in self.get("/metrics").splitlines():
            if line.startswith(prefix):
                total += float(line.rsplit(" ", 1)[1])
        return total


def wait_reloads(gw, name, above, timeout=60.0):
    """Poll every 2 ms until `name` has more than `above` reloads; the time it happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = gw.plugin(name)
        if p and p["reloads"] > above and p["version"]:
            return time.monotonic()
        time.sleep(0.002)
    raise RuntimeError(f"{name} did not reload within {timeout} s")


def write_rename(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    start = time.monotonic()
    os.rename(tmp, path)
    return start


def write_cp(path, data, scratch):
    with open(scratch, "wb") as f:
        f.write(data)
    start = time.monotonic()
    subprocess.run(["cp", scratch, path], check=True)
    return start


def write_chunked(path, data):
    n = 10
    step = (len(data) + n - 1) // n
    with open(path, "r+b") as f:
        f.truncate(0)
        for i in range(n):
            f.write(data[i * step:(i + 1) * step])
            f.flush()
            if i < n - 1:
                time.sleep(0.1)
    return time.monotonic()


def main():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=None)
    ap.add_argument("--plugin", default=None)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--idle", type=float, default=60.0)
    args = ap.parse_args()
    binary = args.bin or next(
        (p for p in (f"{repo}/target/release/wasmgate", f"{repo}/target/debug/wasmgate")
         if os.path.exists(p)), None)
    plugin = args.plugin or f"{repo}/target/wasm32-wasip2/release/chat.wasm"
    if not binary or not os.path.exists(plugin):
        sys.exit("need a gateway binary (--bin) and a Rust plugin component (--plugin)")
    a = open(plugin, "rb").read()
    b = variant(a, "reload-figures")
    name = "fig"

    work = tempfile.mkdtemp(prefix="wasmgate-reload-")
    plugins = os.path.join(work, "plugins")
    os.makedirs(plugins)
    path = os.path.join(plugins, f"{name}.wasm")
    with open(path, "wb") as f:
        f.write(a)
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--listen", f"127.0.0.1:{port}", "--plugins", plugins, "--log-level", "warn"],
        stdout=subprocess.DEVNULL)
    try:
        gw = Gateway(port)
        deadline = time.monotonic() + 120
        while True:
            try:
                p = gw.plugin(name)
                if p and p["version"]:
                    break
            except RuntimeError:
                pass
            if time.monotonic() > deadline:
                sys.exit("the gateway did not load the plugin")
            time.sleep(0.05)
        # Warm both versions (B compiles once here), back to A.
        versions = [b, a]
        for v in versions:
            before = gw.plugin(name)["reloads"]
            write_rename(path, v)
            wait_reloads(gw, name, before)
        print(f"gateway {binary}, plugin {plugin} ({len(a)} bytes), {args.runs} changes each")
        scratch = os.path.join(work, "scratch.wasm")
        methods = [
            ("rename", lambda d: write_rename(path, d)),
            ("cp", lambda d: write_cp(path, d, scratch)),
            ("chunked 10x100ms", lambda d: write_chunked(path, d)),
        ]
        nxt = 0
        for label, write in methods:
            times = []
            loads0 = gw.metric(f'wasmgate_plugin_reloads_total{{plugin="{name}"')
            reads0 = gw.metric(f'wasmgate_plugin_file_reads_total{{plugin="{name}"')
            for _ in range(args.runs):
                data = versions[nxt % 2]
                nxt += 1
                before = gw.plugin(name)["reloads"]
                start = write(data)
                done = wait_reloads(gw, name, before)
                times.append((done - start) * 1000)
                time.sleep(0.3)  # let late events show up in the counters
            loads = gw.metric(f'wasmgate_plugin_reloads_total{{plugin="{name}"') - loads0
            reads = gw.metric(f'wasmgate_plugin_file_reads_total{{plugin="{name}"') - reads0
            print(f"{label:18} p50 {statistics.median(times):7.1f} ms  max {max(times):7.1f} ms"
                  f"  loads/change {loads / args.runs:.1f}  reads/change {reads / args.runs:.1f}")
        def io():
            fields = dict(line.split(": ") for line in open(f"/proc/{proc.pid}/io").read().splitlines())
            return int(fields["rchar"]), int(fields["syscr"])
        r0, s0 = io()
        time.sleep(args.idle)
        r1, s1 = io()
        print(f"idle {args.idle:.0f} s: rchar +{r1 - r0} bytes, syscr +{s1 - s0}"
              " (the gateway's own reads; this script asked nothing meanwhile)")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
