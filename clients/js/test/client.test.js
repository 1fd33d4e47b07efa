// The client library against a real gateway (target/debug/wasmgate with the example plugins).
// Run: node --experimental-websocket --test clients/js/test/   (scripts/test-web.sh does it)
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer, connect as tcpConnect } from "node:net";
import { connect, WasmgateError, NOTICE_JOIN, NOTICE_LEAVE } from "../src/wasmgate.js";
import { Gateway, jwt } from "./gateway.js";

let gw;
before(async () => {
  gw = await Gateway.start();
});
after(async () => {
  await gw?.cleanup();
});

const opts = (extra = {}) => ({ url: gw.url, systemId: "quiz", ...extra });

function once(client, event, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${event} within ${timeoutMs} ms`)), timeoutMs);
    const off = client.on(event, (...args) => {
      clearTimeout(t);
      off();
      resolve(args);
    });
  });
}

async function api(op, system, body) {
  const res = await fetch(`${gw.url}/api/websocket/${op}`, {
    method: "POST",
    headers: { systemId: system, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return res.json();
}

test("connect resolves after the welcome with a 32-hex clientId and reports its states", async () => {
  const states = [];
  const client = await connect(opts());
  assert.match(client.clientId, /^[0-9a-f]{32}$/);
  assert.equal(client.state, "connected");
  client.on("state", (s) => states.push(s));
  client.close();
  assert.deepEqual(states, ["closed"]);
});

test("emit/on and request speak the plugin's {event,data} protocol", async () => {
  const a = await connect(opts());
  const joined = await a.request("join", { room: "unit-1", name: "unit-ann" });
  assert.deepEqual(joined, { room: "unit-1", name: "unit-ann", running: false });
  const question = once(a, "question");
  a.emit("start", { room: "unit-1", questionMs: 5000 });
  const [q] = await question;
  assert.equal(q.text, "What is 2 + 2?");
  assert.equal(q.index, 0);
  const result = once(a, "result");
  assert.deepEqual(await a.request("answer", { choice: 1 }), { index: 0 });
  const [r] = await result;
  assert.equal(r.correct, 1);
  assert.equal(r.leaderboard[0].name, "unit-ann");
  // A refusal rejects with the plugin's code and message.
  await assert.rejects(a.request("answer", { choice: 1 }), (e) => e instanceof WasmgateError && e.status === 409);
  a.close();
});

test("onPush receives API pushes and typed 1001/1002 group notices", async () => {
  const a = await connect(opts({ systemId: "app" }));
  const b = await connect(opts({ systemId: "app" }));
  const pushed = once(a, "push");
  const sent = await api("send_to_client", "app", { clientId: a.clientId, sendUserId: "srv", code: 7, msg: "hi", data: { x: 1 } });
  assert.equal(sent.code, 0);
  const [p] = await pushed;
  assert.equal(p.messageId, sent.data.messageId);
  assert.deepEqual([p.sendUserId, p.code, p.msg, p.data], ["srv", 7, "hi", { x: 1 }]);

  await api("bind_to_group", "app", { clientId: a.clientId, groupName: "g", userId: "ua" });
  const joined = once(a, "join-notice");
  await api("bind_to_group", "app", { clientId: b.clientId, groupName: "g", userId: "ub" });
  const [j, jmsg] = await joined;
  assert.equal(jmsg.code, NOTICE_JOIN);
  assert.equal(j.clientId, b.clientId);
  assert.equal(j.userId, "ub");
  const left = once(a, "leave-notice");
  b.close();
  const [, lmsg] = await left;
  assert.equal(lmsg.code, NOTICE_LEAVE);
  a.close();
});

test("a client closed by the server reconnects with backoff and gets a new clientId", async () => {
  const client = await connect(opts({ minBackoffMs: 20, maxBackoffMs: 100 }));
  const first = client.clientId;
  const lost = once(client, "disconnected");
  const back = once(client, "connected");
  await api("close_client", "quiz", { clientId: first, code: 4001, reason: "bye" });
  const [d] = await lost;
  assert.equal(d.code, 4001);
  assert.equal(d.reason, "bye");
  assert.equal(d.willReconnect, true);
  const [c] = await back;
  assert.equal(c.previousClientId, first);
  assert.notEqual(client.clientId, first);
  client.close();
});

test("the heartbeat keeps a live link and detects a dead one", async () => {
  // A TCP relay that can go silent in both directions, like a dropped network path.
  let silent = false;
  const relay = createServer((down) => {
    const up = tcpConnect(gw.port, "127.0.0.1");
    down.on("data", (d) => silent || up.write(d));
    up.on("data", (d) => silent || down.write(d));
    down.on("error", () => up.destroy());
    up.on("error", () => down.destroy());
    down.on("close", () => up.destroy());
    up.on("close", () => down.destroy());
  });
  await new Promise((r) => relay.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${relay.address().port}`;
  const client = await connect(opts({ url, pingIntervalMs: 100, pongTimeoutMs: 300, minBackoffMs: 20, maxBackoffMs: 50 }));
  const lost = [];
  client.on("disconnected", (d) => lost.push(d));
  await new Promise((r) => setTimeout(r, 600)); // several ping/pong rounds
  assert.deepEqual(lost, [], "pongs keep the link up");
  silent = true;
  const [d] = await once(client, "disconnected", 3000);
  assert.equal(d.code, 4000);
  assert.equal(d.reason, "heartbeat timeout");
  silent = false;
  await once(client, "connected", 5000);
  client.close();
  relay.close();
});

test("clear errors: unknown system, bad token, no gateway", async () => {
  await assert.rejects(connect(opts({ systemId: "nope" })), (e) => {
    assert.equal(e.kind, "unknown-system");
    assert.match(e.message, /unknown system: nope/);
    return true;
  });
  await assert.rejects(connect(opts({ systemId: "secure", token: "garbage" })), (e) => {
    assert.equal(e.kind, "unauthorized");
    assert.match(e.message, /invalid or expired token/);
    return true;
  });
  await assert.rejects(connect(opts({ systemId: "secure" })), (e) => e.kind === "unauthorized");
  const ok = await connect(opts({ systemId: "secure", token: jwt("alice") }));
  ok.close();
  const port = await new Promise((r) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => r(p));
    });
  });
  await assert.rejects(connect({ url: `http://127.0.0.1:${port}`, systemId: "quiz" }), (e) => e.kind === "unreachable");
});

test("a gateway that goes away is reported as a disconnect with reconnect attempts", async () => {
  const other = await Gateway.start();
  try {
    const client = await connect({ url: other.url, systemId: "quiz", minBackoffMs: 20, maxBackoffMs: 50 });
    const lost = once(client, "disconnected");
    const errors = once(client, "error", 5000);
    await other.stop();
    const [d] = await lost;
    assert.equal(d.code, 1001);
    const [err] = await errors;
    assert.equal(err.kind, "unreachable");
    client.close();
  } finally {
    await other.cleanup();
  }
});
