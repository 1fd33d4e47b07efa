'use strict';
// Node `ws` peer: the seed-001 wire protocol on plain `ws`, as a baseline for wasmgate.
//   ws://127.0.0.1:PORT/api/websocket/ws?systemId=<id>  -> {"code":0,"msg":"success","data":{"clientId":..}}
//   text `ping` -> `pong`; any other text -> `echo:<text>` (the application-level echo);
//   `work:<n>:<x>` first runs n rounds of the hash in api.js's work() (the scaling row's handler work)
//   POST /api/websocket/{register,bind_to_group,send_to_group,send_to_system,send_to_client,get_online_list}
// No online/offline notices are sent (the benchmark ignores them anyway).
// Usage: node ws-server.js --port PORT   (prints `READY <port>` once listening)

const http = require('node:http');
const crypto = require('node:crypto');
const { WebSocketServer } = require('ws');
const { apiHandler, portFromArgs, work } = require('./api');

const systems = new Set(['bench', 'echo']);
/** clientId -> { ws, systemId, groups: Set<string> } */
const clients = new Map();
/** `${systemId}\0${group}` -> Set<ws> */
const groups = new Map();
/** systemId -> Set<ws> */
const bySystem = new Map();

function pushTo(set, env) {
  if (!set) return 0;
  // Serialize once, send the same buffer to everyone (what a careful Node server does).
  const buf = Buffer.from(JSON.stringify(env));
  for (const ws of set) ws.send(buf, { binary: false });
  return set.size;
}

const backend = {
  systems,
  bind(systemId, clientId, group) {
    const c = clients.get(clientId);
    if (!c || c.systemId !== systemId || typeof group !== 'string') return false;
    const key = `${systemId}\0${group}`;
    let set = groups.get(key);
    if (!set) {
      set = new Set();
      groups.set(key, set);
    }
    set.add(c.ws);
    c.groups.add(key);
    return true;
  },
  sendToGroup(systemId, group, env) {
    return pushTo(groups.get(`${systemId}\0${group}`), env);
  },
  sendToSystem(systemId, env) {
    return pushTo(bySystem.get(systemId), env);
  },
  sendToClient(systemId, clientId, env) {
    const c = clients.get(clientId);
    if (!c || c.systemId !== systemId) return false;
    c.ws.send(JSON.stringify(env));
    return true;
  },
  onlineList(systemId, group) {
    const set = group ? groups.get(`${systemId}\0${group}`) : bySystem.get(systemId);
    return set ? [...set].map((ws) => ws.clientId) : [];
  },
};

const server = http.createServer(apiHandler(backend));
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, clientTracking: false });

server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'http://localhost');
  const systemId = url.searchParams.get('systemId');
  if (url.pathname !== '/api/websocket/ws' || !systemId || !systems.has(systemId)) {
    socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    const clientId = crypto.randomBytes(8).toString('hex');
    ws.clientId = clientId;
    const c = { ws, systemId, groups: new Set() };
    clients.set(clientId, c);
    let sys = bySystem.get(systemId);
    if (!sys) {
      sys = new Set();
      bySystem.set(systemId, sys);
    }
    sys.add(ws);
    ws.send(JSON.stringify({ code: 0, msg: 'success', data: { clientId } }));
    ws.on('message', (data, isBinary) => {
      if (isBinary) {
        ws.send(data, { binary: true });
        return;
      }
      const text = data.toString('utf8');
      if (text.startsWith('work:')) work(text);
      ws.send(text === 'ping' ? 'pong' : `echo:${text}`);
    });
    ws.on('close', () => {
      clients.delete(clientId);
      sys.delete(ws);
      for (const key of c.groups) {
        const set = groups.get(key);
        if (set) {
          set.delete(ws);
          if (set.size === 0) groups.delete(key);
        }
      }
    });
    ws.on('error', () => {});
  });
});

server.listen({ host: '127.0.0.1', port: portFromArgs(process.argv), backlog: 4096 }, () => {
  process.stdout.write(`READY ${server.address().port}\n`);
});
