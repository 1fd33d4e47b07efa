// wasmgate chat plugin in JavaScript (world wasmgate:plugin/plugin@0.2.0).
//
// Speaks the same JSON protocol as the Rust chat plugin (plugins/chat): a client sends text
// frames `{"event": <name>, "data": {...}}` and gets replies
// `{"event": <name>, "code": 0, "msg": "success", "data": {...}}` or
// `{"event": <name>, "code": <non-zero>, "msg": "<why>", "data": null}`.
//
// Build: scripts/build-js-plugin.sh plugins/js-chat plugins/js-chat.wasm

import * as host from "wasmgate:plugin/host@0.2.0";

const LANG = "javascript";

// Error codes shared by the JS, Python and C examples.
const BAD_REQUEST = 400; // malformed JSON or a missing field
const FORBIDDEN = 403; // saying something in a room you did not join
const NOT_FOUND = 404; // unknown event, or nobody to whisper to
const CONFLICT = 409; // nickname already taken by another client
const HOST_ERROR = 500; // a host call failed; msg says why

// Field limits, in characters (as the Rust chat).
const MAX_NAME = 32;
const MAX_ROOM = 64;
const MAX_TEXT = 2000;

// Plugin memory: lost on a trap or a reload, and private to one instance of a pool
// (`instances = N`), so only the config lives here (every instance reads the same config).
// Names and rooms live in the gateway's registry, which every instance shares.
let configVersion = "1";

// The key `nick` reads to take the plugin's key-value lock: the first kv call of an event holds
// it until the event returns, across every instance of a pool, so the "is the name free?"
// check and the bind cannot interleave with another instance's `nick`. Never written.
const NICK_LOCK = "lock:nick";

/** Thrown by handlers to produce an error reply. */
class Reply extends Error {
  constructor(code, msg) {
    super(msg);
    this.code = code;
  }
}

/** Turns a host `error` variant (thrown by a host call) into a readable string. */
function describe(err) {
  if (err && typeof err === "object" && "tag" in err) {
    return `${err.tag}: ${err.val}`;
  }
  if (err && typeof err === "object" && "payload" in err) {
    return describe(err.payload);
  }
  return String(err);
}

/** Calls a host function, mapping its error to a 500 reply. */
function call(fn) {
  try {
    return fn();
  } catch (err) {
    if (err instanceof Reply) throw err;
    throw new Reply(HOST_ERROR, describe(err));
  }
}

function text(s) {
  return { tag: "text", val: s };
}

function send(client, obj) {
  try {
    host.sendToClient(client, text(JSON.stringify(obj)));
  } catch (err) {
    host.log("warn", `send to ${client} failed: ${describe(err)}`);
  }
}

/** A required string field of `data`: present, not blank, at most `max` characters. */
function field(data, name, max) {
  const v = data[name];
  if (typeof v !== "string" || v.trim().length === 0) {
    throw new Reply(BAD_REQUEST, `missing field '${name}'`);
  }
  if ([...v].length > max) {
    throw new Reply(BAD_REQUEST, `field '${name}' is longer than ${max} characters`);
  }
  return v;
}

/** The nickname of a client (its uid), or its client id when it has none. */
function nameOf(client) {
  const uid = call(() => host.getUidByClientId(client));
  return uid ?? client;
}

const handlers = {
  nick(client, data) {
    const name = field(data, "name", MAX_NAME);
    call(() => host.kvGet(NICK_LOCK));
    const owners = host.getClientIdsByUid(name);
    if (owners.some((c) => c !== client)) {
      throw new Reply(CONFLICT, `nick '${name}' is taken`);
    }
    const old = call(() => host.getUidByClientId(client));
    if (old !== null && old !== undefined && old !== name) {
      call(() => host.unbindUid(client));
    }
    call(() => host.bindUid(client, name));
    return { name };
  },
  join(client, data) {
    const room = field(data, "room", MAX_ROOM);
    call(() => host.joinGroup(client, room, { userId: "", extend: "" }));
    return { room };
  },
  leave(client, data) {
    const room = field(data, "room", MAX_ROOM);
    call(() => host.leaveGroup(client, room));
    return { room };
  },
  say(client, data) {
    const room = field(data, "room", MAX_ROOM);
    const said = field(data, "text", MAX_TEXT);
    if (!host.getClientIdsByGroup(room).includes(client)) {
      throw new Reply(FORBIDDEN, `not in room '${room}'`);
    }
    const from = nameOf(client);
    const msg = JSON.stringify({ event: "said", data: { room, from, text: said } });
    const delivered = call(() => host.sendToGroup(room, text(msg), []));
    return { room, delivered };
  },
  whisper(client, data) {
    const to = field(data, "to", MAX_NAME);
    const said = field(data, "text", MAX_TEXT);
    const from = nameOf(client);
    const msg = JSON.stringify({ event: "whisper", data: { from, text: said } });
    const delivered = call(() => host.sendToUid(to, text(msg)));
    if (delivered === 0) {
      throw new Reply(NOT_FOUND, `'${to}' is not online`);
    }
    return { to, delivered };
  },
  who(_client, data) {
    const room = field(data, "room", MAX_ROOM);
    return { room, uids: host.getUidsByGroup(room) };
  },
  "info-set"(client, data) {
    const key = field(data, "key", MAX_ROOM);
    const value = data.value;
    if (typeof value !== "string") {
      throw new Reply(BAD_REQUEST, "missing field 'value'");
    }
    call(() => host.updateInfo(client, [[key, value]]));
    return { key, value };
  },
  "info-get"(client) {
    const info = call(() => host.getInfo(client));
    return Object.fromEntries(info);
  },
  "kv-incr"(_client, data) {
    const key = field(data, "key", MAX_ROOM);
    return { value: call(() => host.kvIncr(key, 1)) };
  },
  timer(client, data) {
    const ms = data.ms;
    if (!Number.isInteger(ms) || ms < 0) {
      throw new Reply(BAD_REQUEST, "missing field 'ms'");
    }
    const payload = data.payload ?? null;
    const id = call(() => host.setTimer(ms, JSON.stringify({ client, payload }), null));
    return { id };
  },
  version() {
    return { version: configVersion };
  },
};

/** A frame that is no JSON event: answered with event "error". */
function badRequest(client, why) {
  send(client, { event: "error", code: BAD_REQUEST, msg: `bad request: ${why}`, data: null });
}

function handleText(client, frame) {
  if (frame === "hello") {
    host.sendToClient(client, text(`hello from ${LANG}`));
    return;
  }
  let req;
  try {
    req = JSON.parse(frame);
  } catch {
    return badRequest(client, "not JSON");
  }
  if (req === null || typeof req !== "object" || Array.isArray(req)) {
    return badRequest(client, "not a JSON object");
  }
  if (!("event" in req)) return badRequest(client, "no `event` field");
  if (typeof req.event !== "string") return badRequest(client, "`event` is not a string");
  const event = req.event;
  const data = req.data !== null && typeof req.data === "object" ? req.data : {};
  const handler = Object.hasOwn(handlers, event) ? handlers[event] : undefined;
  if (!handler) {
    send(client, { event, code: NOT_FOUND, msg: "unknown event", data: null });
    return;
  }
  try {
    const result = handler(client, data);
    send(client, { event, code: 0, msg: "success", data: result });
  } catch (err) {
    const code = err instanceof Reply ? err.code : HOST_ERROR;
    const msg = err instanceof Reply ? err.message : describe(err);
    send(client, { event, code, msg, data: null });
  }
}

export function init(config) {
  if (config.trim().length > 0) {
    try {
      const parsed = JSON.parse(config);
      if (parsed && typeof parsed === "object" && parsed.version !== undefined) {
        const v = parsed.version;
        configVersion = typeof v === "string" ? v : JSON.stringify(v);
      }
    } catch {
      // Not JSON: keep the default version.
    }
  }
  host.log("info", `${LANG} chat ready, version ${configVersion}`);
}

export function onConnect(_client, _context) {
  // Everyone is welcome.
}

export function onMessage(client, msg) {
  if (msg.tag === "text") {
    handleText(client, msg.val);
  } else {
    // Binary frames are echoed back as they came.
    try {
      host.sendToClient(client, msg);
    } catch (err) {
      host.log("warn", `echo failed: ${describe(err)}`);
    }
  }
}

export function onClose(client, reason) {
  host.log("debug", `${client} left (${reason.code})`);
}

export function onTimer(timer) {
  const payload = timer.payload;
  let parsed;
  try {
    parsed = JSON.parse(payload);
  } catch {
    host.log("warn", `bad timer payload ${payload}`);
    return;
  }
  send(parsed.client, { event: "timer", data: { payload: parsed.payload } });
}
