// wasmgate client: one WebSocket to a wasmgate gateway, with the clientId handshake, automatic
// reconnect (jittered exponential backoff), an application-level ping/pong heartbeat that
// detects dead links, `{"event","data"}` messaging and typed API pushes.
// ES module, no dependencies; works in browsers and in Node >= 20 (pass `WebSocket` on Node 20
// unless it runs with --experimental-websocket; Node 22+ has it built in).

/** Code of the notice sent to a group's members when a client joins it. */
export const NOTICE_JOIN = 1001;
/** Code of the notice sent to a group's members when a client leaves it or disconnects. */
export const NOTICE_LEAVE = 1002;

const DEFAULTS = {
  reconnect: true,
  minBackoffMs: 250,
  maxBackoffMs: 10000,
  pingIntervalMs: 20000,
  pongTimeoutMs: 10000,
  welcomeTimeoutMs: 10000,
};

/** An error with a stable `kind` a program can branch on. */
export class WasmgateError extends Error {
  /**
   * @param {string} kind "unknown-system" | "unauthorized" | "refused" | "unreachable" | "closed" | "timeout" | "protocol"
   * @param {string} message
   * @param {number} [status]
   */
  constructor(kind, message, status) {
    super(message);
    this.name = "WasmgateError";
    this.kind = kind;
    this.status = status;
  }
}

/** The WebSocket URL for `systemId` on the gateway at `url` (http(s):// or ws(s)://). */
export function socketUrl(url, systemId, token) {
  const u = new URL(url);
  if (u.protocol === "http:") u.protocol = "ws:";
  if (u.protocol === "https:") u.protocol = "wss:";
  if (!u.pathname.endsWith("/api/websocket/ws")) u.pathname = "/api/websocket/ws";
  u.search = "";
  u.searchParams.set("systemId", systemId);
  if (token) u.searchParams.set("token", token);
  return u.toString();
}

/** Ask the gateway why a connection failed before its welcome (GET /client/check). */
async function diagnose(url, systemId, token) {
  const u = new URL(url);
  if (u.protocol === "ws:") u.protocol = "http:";
  if (u.protocol === "wss:") u.protocol = "https:";
  u.pathname = "/client/check";
  u.search = "";
  u.searchParams.set("systemId", systemId);
  if (token) u.searchParams.set("token", token);
  let res;
  try {
    res = await fetch(u.toString());
  } catch {
    return new WasmgateError("unreachable", `gateway unreachable at ${u.origin}`);
  }
  let body = null;
  try {
    body = await res.json();
  } catch {
    /* not JSON: an older gateway or another server */
  }
  const msg = body && typeof body.msg === "string" ? body.msg : `HTTP ${res.status}`;
  if (res.status === 404) return new WasmgateError("unknown-system", msg, 404);
  if (res.status === 401) return new WasmgateError("unauthorized", msg, 401);
  if (res.ok) return null;
  return new WasmgateError("refused", msg, res.status);
}

/**
 * A connection to one system of a gateway. Create with {@link connect}.
 */
export class Client {
  constructor(options) {
    if (!options || !options.url || !options.systemId) {
      throw new TypeError("connect({url, systemId}) needs url and systemId");
    }
    this.options = { ...DEFAULTS, ...options };
    this.WebSocket = options.WebSocket || globalThis.WebSocket;
    if (!this.WebSocket) {
      throw new TypeError(
        "no WebSocket: pass {WebSocket} or run Node 20 with --experimental-websocket",
      );
    }
    /** @type {string|null} */
    this.clientId = null;
    /** @type {"idle"|"connecting"|"connected"|"disconnected"|"closed"} */
    this.state = "idle";
    this.handlers = new Map();
    this.attempt = 0;
    this.ws = null;
    this.timers = { retry: null, ping: null, pong: null, welcome: null };
    this.closedByUser = false;
  }

  /** Register `handler` for `event`; returns a function that removes it. */
  on(event, handler) {
    let set = this.handlers.get(event);
    if (!set) this.handlers.set(event, (set = new Set()));
    set.add(handler);
    return () => set.delete(handler);
  }

  /** Handle API pushes `{messageId,sendUserId,code,msg,data}` (1001/1002 notices included). */
  onPush(handler) {
    return this.on("push", handler);
  }

  /** Send `{"event": event, "data": data}`. Throws when not connected. */
  emit(event, data) {
    this.send(JSON.stringify({ event, data: data === undefined ? null : data }));
  }

  /**
   * Send `{"event","data"}` and resolve with the reply's `data` when the plugin answers with the
   * same event and code 0 (reject with a WasmgateError of kind "protocol" otherwise). Replies are
   * matched in order per event name.
   */
  request(event, data, timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new WasmgateError("timeout", `no reply to ${event} within ${timeoutMs} ms`));
      }, timeoutMs);
      const off = this.on("reply:" + event, (reply) => {
        clearTimeout(timer);
        off();
        if (reply.code === 0) resolve(reply.data);
        else {
          const err = new WasmgateError("protocol", `${event}: ${reply.msg}`, reply.code);
          reject(err);
        }
      });
      try {
        this.emit(event, data);
      } catch (e) {
        clearTimeout(timer);
        off();
        reject(e);
      }
    });
  }

  /** Send a raw text frame. */
  send(text) {
    if (!this.ws || this.state !== "connected") {
      throw new WasmgateError("closed", "not connected");
    }
    this.ws.send(text);
  }

  /** Close for good (no reconnect). */
  close(code = 1000, reason = "") {
    this.closedByUser = true;
    this.clearTimers();
    if (this.ws) {
      try {
        this.ws.close(code, reason);
      } catch {
        /* already closing */
      }
    }
    this.setState("closed", { code, reason });
  }

  fire(event, ...args) {
    const set = this.handlers.get(event);
    if (!set) return;
    for (const h of [...set]) {
      try {
        h(...args);
      } catch (e) {
        setTimeout(() => {
          throw e;
        });
      }
    }
  }

  setState(state, detail = {}) {
    this.state = state;
    this.fire("state", state, detail);
    this.fire(state, detail);
  }

  clearTimers() {
    for (const k of Object.keys(this.timers)) {
      clearTimeout(this.timers[k]);
      this.timers[k] = null;
    }
  }

  /** The delay before reconnect attempt `n` (1-based): full jitter over an exponential cap. */
  backoff(n) {
    const { minBackoffMs, maxBackoffMs } = this.options;
    const cap = Math.min(maxBackoffMs, minBackoffMs * 2 ** Math.max(0, n - 1));
    return minBackoffMs / 2 + Math.random() * (cap - minBackoffMs / 2);
  }

  /** Open one socket; resolves with the clientId of the welcome, rejects with a WasmgateError. */
  open() {
    const { url, systemId, token, welcomeTimeoutMs } = this.options;
    this.setState("connecting", { attempt: this.attempt });
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new this.WebSocket(socketUrl(url, systemId, token));
      } catch (e) {
        reject(new WasmgateError("refused", String(e && e.message ? e.message : e)));
        return;
      }
      this.ws = ws;
      let welcomed = false;
      let opened = false;
      this.timers.welcome = setTimeout(() => {
        if (!welcomed) {
          reject(new WasmgateError("timeout", `no welcome within ${welcomeTimeoutMs} ms`));
          try {
            ws.close();
          } catch {
            /* ignore */
          }
        }
      }, welcomeTimeoutMs);
      ws.onopen = () => {
        opened = true;
      };
      ws.onmessage = (ev) => {
        if (typeof ev.data !== "string") {
          this.fire("binary", ev.data);
          return;
        }
        this.armHeartbeat();
        if (ev.data === "pong") return;
        let msg;
        try {
          msg = JSON.parse(ev.data);
        } catch {
          this.fire("text", ev.data);
          return;
        }
        if (!welcomed) {
          const id = msg && msg.data && msg.data.clientId;
          if (msg && msg.code === 0 && typeof id === "string") {
            welcomed = true;
            clearTimeout(this.timers.welcome);
            const previous = this.clientId;
            this.clientId = id;
            this.attempt = 0;
            this.setState("connected", { clientId: id, previousClientId: previous });
            resolve(id);
            return;
          }
        }
        this.dispatch(msg);
      };
      const failed = (code, reason) => {
        clearTimeout(this.timers.welcome);
        clearTimeout(this.timers.ping);
        clearTimeout(this.timers.pong);
        if (this.ws !== ws) return;
        this.ws = null;
        if (!welcomed) {
          try {
            ws.close();
          } catch {
            /* not open */
          }
          // A refused upgrade shows as a bare failure in a browser: ask the gateway why.
          diagnose(url, systemId, token).then((err) =>
            reject(
              err ||
                new WasmgateError(
                  "refused",
                  opened
                    ? `closed before the welcome (${code} ${reason})`.trim()
                    : "connection refused (system full, or a proxy in the way?)",
                  code,
                ),
            ),
          );
          return;
        }
        this.onLost(code, reason);
      };
      ws.onclose = (ev) => failed(ev.code, ev.reason || "");
      // Before the welcome an error is the refusal (Node's WebSocket may report the close late).
      ws.onerror = () => {
        if (!welcomed) failed(1006, "");
      };
    });
  }

  dispatch(msg) {
    if (msg && typeof msg.event === "string") {
      if ("code" in msg) this.fire("reply:" + msg.event, msg);
      this.fire("message", msg);
      if (!("code" in msg) || msg.code === 0) this.fire(msg.event, msg.data, msg);
      return;
    }
    if (msg && "messageId" in msg) {
      this.fire("push", msg);
      if (msg.code === NOTICE_JOIN) this.fire("join-notice", msg.data, msg);
      if (msg.code === NOTICE_LEAVE) this.fire("leave-notice", msg.data, msg);
      return;
    }
    this.fire("message", msg);
  }

  armHeartbeat() {
    const { pingIntervalMs, pongTimeoutMs } = this.options;
    clearTimeout(this.timers.ping);
    clearTimeout(this.timers.pong);
    if (!pingIntervalMs) return;
    this.timers.ping = setTimeout(() => {
      if (!this.ws || this.state !== "connected") return;
      try {
        this.ws.send("ping");
      } catch {
        return;
      }
      this.timers.pong = setTimeout(() => {
        // Nothing heard for pingIntervalMs + pongTimeoutMs: the link is dead.
        const ws = this.ws;
        this.ws = null;
        try {
          ws && ws.close(4000, "heartbeat timeout");
        } catch {
          /* ignore */
        }
        this.onLost(4000, "heartbeat timeout");
      }, pongTimeoutMs);
    }, pingIntervalMs);
  }

  onLost(code, reason) {
    this.clearTimers();
    if (this.closedByUser) return;
    this.setState("disconnected", { code, reason, willReconnect: !!this.options.reconnect });
    if (this.options.reconnect) this.scheduleReconnect();
  }

  scheduleReconnect() {
    this.attempt += 1;
    const delay = this.backoff(this.attempt);
    this.fire("reconnecting", { attempt: this.attempt, delayMs: delay });
    this.timers.retry = setTimeout(() => {
      if (this.closedByUser) return;
      this.open().catch((err) => {
        this.fire("error", err);
        if (this.closedByUser) return;
        this.setState("disconnected", {
          code: err.status || 1006,
          reason: err.message,
          error: err,
          willReconnect: true,
        });
        this.scheduleReconnect();
      });
    }, delay);
  }
}

/**
 * Connect to `systemId` on the gateway at `url`. Resolves with a connected {@link Client} (its
 * `clientId` set) once the welcome frame arrived; rejects with a {@link WasmgateError} when the
 * first connection fails (unknown system, bad token, gateway unreachable). Later losses reconnect
 * on their own unless `reconnect: false`.
 */
export async function connect(options) {
  const client = new Client(options);
  try {
    await client.open();
  } catch (err) {
    client.closedByUser = true;
    client.clearTimers();
    client.setState("closed", { code: err.status || 1006, reason: err.message, error: err });
    throw err;
  }
  return client;
}
