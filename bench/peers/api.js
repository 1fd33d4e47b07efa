'use strict';
// The seed-001 HTTP API (`POST /api/websocket/<op>`, header `systemId`, JSON body), shared by both
// peers so that the benchmark drives every server through the same calls. A backend supplies the
// transport-specific operations; this module only parses requests and shapes replies.

const crypto = require('node:crypto');

let messageCounter = 0;
/** A message id in the shape of the reference service (16 hex characters). */
function nextMessageId() {
  messageCounter += 1;
  return crypto.randomBytes(4).toString('hex') + messageCounter.toString(16).padStart(8, '0');
}

function reply(res, status, code, msg, data) {
  const body = JSON.stringify({ code, msg, data });
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

/** The envelope a client receives for a pushed message, serialized once per send. */
function envelope(body, messageId) {
  return {
    messageId,
    sendUserId: body.sendUserId ?? '',
    code: body.code ?? 0,
    msg: body.msg ?? '',
    data: body.data ?? null,
  };
}

/**
 * Returns an HTTP request listener for the API.
 * backend: { systems: Set<string>, bind(systemId, clientId, group) -> bool,
 *            sendToGroup(systemId, group, env) -> number, sendToSystem(systemId, env) -> number,
 *            sendToClient(systemId, clientId, env) -> bool, onlineCount(systemId, group) -> number }
 */
function apiHandler(backend) {
  return (req, res) => {
    const url = new URL(req.url, 'http://localhost');
    const prefix = '/api/websocket/';
    if (req.method !== 'POST' || !url.pathname.startsWith(prefix)) {
      reply(res, 404, 404, 'not found', null);
      return;
    }
    const op = url.pathname.slice(prefix.length);
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > 1 << 20) {
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      let body;
      try {
        body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : {};
      } catch (e) {
        reply(res, 400, 400, 'invalid json', null);
        return;
      }
      const systemId = req.headers.systemid;
      if (op === 'register') {
        if (typeof body.systemId !== 'string' || body.systemId === '') {
          reply(res, 400, 400, 'systemId required', null);
          return;
        }
        backend.systems.add(body.systemId);
        reply(res, 200, 0, 'success', []);
        return;
      }
      if (typeof systemId !== 'string' || !backend.systems.has(systemId)) {
        reply(res, 400, 400, 'unknown systemId', null);
        return;
      }
      switch (op) {
        case 'bind_to_group': {
          if (!backend.bind(systemId, body.clientId, body.groupName)) {
            reply(res, 400, 400, 'unknown clientId', null);
            return;
          }
          reply(res, 200, 0, 'success', []);
          return;
        }
        case 'send_to_group': {
          const messageId = nextMessageId();
          backend.sendToGroup(systemId, body.groupName, envelope(body, messageId));
          reply(res, 200, 0, 'success', { messageId });
          return;
        }
        case 'send_to_system': {
          const messageId = nextMessageId();
          backend.sendToSystem(systemId, envelope(body, messageId));
          reply(res, 200, 0, 'success', { messageId });
          return;
        }
        case 'send_to_client': {
          const messageId = nextMessageId();
          backend.sendToClient(systemId, body.clientId, envelope(body, messageId));
          reply(res, 200, 0, 'success', { messageId });
          return;
        }
        case 'get_online_list': {
          const list = backend.onlineList(systemId, body.groupName);
          reply(res, 200, 0, 'success', { count: list.length, list });
          return;
        }
        default:
          reply(res, 404, 404, 'unknown op', null);
      }
    });
  };
}

/** Parses `--port N` (0 = any free port) from argv. */
function portFromArgs(argv) {
  const i = argv.indexOf('--port');
  const port = i >= 0 ? Number(argv[i + 1]) : 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`bad --port ${argv[i + 1]}`);
  }
  return port;
}

/** n rounds of a multiply-xor hash: the loop of the wasmgate echo plugin's `work:` (hostcalls guest). */
let workSink = 0;
function work(text) {
  const n = Number.parseInt(text.split(':')[1], 10) || 0;
  let h = 0x811c9dc5;
  for (let i = 0; i < n; i++) h = Math.imul(h ^ i, 0x01000193);
  workSink ^= h; // kept, so the JIT cannot drop the loop
}

module.exports = { apiHandler, nextMessageId, portFromArgs, work };
