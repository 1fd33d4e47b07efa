// @ts-check
// A minimal wasmgate plugin in JavaScript: echoes text frames and counts messages.
// Build: scripts/build-js-plugin.sh <this dir> <out.wasm>   (see README.md)
import * as host from "wasmgate:plugin/host@0.2.0";

/** @typedef {import("./types/plugin.js").ClientId} ClientId */
/** @typedef {import("./types/plugin.js").Message} Message */
/** @typedef {import("./types/plugin.js").CloseReason} CloseReason */
/** @typedef {import("./types/plugin.js").ConnectContext} ConnectContext */
/** @typedef {import("./types/plugin.js").Timer} Timer */

// Module state lives as long as the instance: a trap or a reload starts afresh, and with
// `instances = N` each instance has its own (init runs in each). Keep what must survive, or what
// other clients need, in the key-value store (host.kvSet / host.kvIncr) or the registry.
let prefix = "echo: ";

/**
 * Called once, before any other event. Throw a string to refuse to load.
 * @param {string} config the plugin's config from the gateway (often JSON, may be empty)
 */
export function init(config) {
  if (config) {
    const parsed = JSON.parse(config);
    if (typeof parsed.prefix === "string") prefix = parsed.prefix;
  }
  host.log("info", "template plugin ready");
}

/**
 * A client connected. Throw `{ code: 4000..4999, reason }` to turn it away.
 * `context` says how: `query` (`?nick=ann` → [["nick", "ann"]]), selected `headers`, `peer`,
 * `uid` and the verified token's `claims` (JSON text) when the system requires a token.
 * @param {ClientId} client
 * @param {ConnectContext} context
 */
export function onConnect(client, context) {
  const nick = context.query.find(([name]) => name === "nick")?.[1] ?? "";
  // The member data goes into the lobby's join/leave notices (1001/1002).
  host.joinGroup(client, "lobby", { userId: nick, extend: "" });
}

/**
 * A client sent a frame.
 * @param {ClientId} client
 * @param {Message} msg
 */
export function onMessage(client, msg) {
  if (msg.tag !== "text") return;
  const count = host.kvIncr("messages", 1);
  host.sendToClient(client, { tag: "text", val: `${prefix}${msg.val} (#${count})` });
}

/**
 * A client is gone (already out of its groups).
 * @param {ClientId} client
 * @param {CloseReason} reason
 */
export function onClose(client, reason) {
  host.log("debug", `${client} closed with ${reason.code}`);
}

/**
 * A timer set with host.setTimer fired: `{ id, payload, client }` (`client` when the timer was
 * bound to one; such a timer is cancelled when its client leaves).
 * @param {Timer} timer
 */
export function onTimer(timer) {}
