'use strict';
// Socket.IO peer: the same scenarios on Socket.IO v4 (Engine.IO v4, WebSocket transport only).
//   ws://127.0.0.1:PORT/socket.io/?EIO=4&transport=websocket&systemId=<id>
//   after the client's `40` connect, the server emits `welcome` {clientId} (clientId = socket.id)
//   event `echo` (text) -> event `echo` ("echo:" + text; `work:<n>:<x>` first runs api.js's work()); event `join` (group) joins a room
//   POST /api/websocket/... as in the ws peer; pushed messages arrive as event `message` (envelope)
// Usage: node socketio-server.js --port PORT   (prints `READY <port>` once listening)

const http = require('node:http');
const { Server } = require('socket.io');
const { apiHandler, portFromArgs, work } = require('./api');

const systems = new Set(['bench', 'echo']);

const server = http.createServer(apiHandler({
  systems,
  bind(systemId, clientId, group) {
    const socket = typeof clientId === 'string' ? io.sockets.sockets.get(clientId) : undefined;
    if (!socket || socket.data.systemId !== systemId || typeof group !== 'string') return false;
    socket.join(`g:${systemId}\0${group}`);
    return true;
  },
  sendToGroup(systemId, group, env) {
    io.to(`g:${systemId}\0${group}`).emit('message', env);
  },
  sendToSystem(systemId, env) {
    io.to(`s:${systemId}`).emit('message', env);
  },
  sendToClient(systemId, clientId, env) {
    const socket = io.sockets.sockets.get(clientId);
    if (!socket || socket.data.systemId !== systemId) return false;
    socket.emit('message', env);
    return true;
  },
  onlineList(systemId, group) {
    const room = io.sockets.adapter.rooms.get(group ? `g:${systemId}\0${group}` : `s:${systemId}`);
    return room ? [...room] : [];
  },
}));

const io = new Server(server, {
  transports: ['websocket'],
  serveClient: false,
  perMessageDeflate: false,
  httpCompression: false,
});

io.use((socket, next) => {
  const systemId = socket.handshake.query.systemId || 'bench';
  if (!systems.has(systemId)) {
    next(new Error('unknown systemId'));
    return;
  }
  socket.data.systemId = systemId;
  next();
});

io.on('connection', (socket) => {
  socket.join(`s:${socket.data.systemId}`);
  socket.emit('welcome', { clientId: socket.id });
  socket.on('echo', (text) => {
    if (typeof text === 'string' && text.startsWith('work:')) work(text);
    socket.emit('echo', `echo:${text}`);
  });
  socket.on('join', (group) => {
    if (typeof group === 'string') socket.join(`g:${socket.data.systemId}\0${group}`);
  });
});

server.listen({ host: '127.0.0.1', port: portFromArgs(process.argv), backlog: 4096 }, () => {
  process.stdout.write(`READY ${server.address().port}\n`);
});
