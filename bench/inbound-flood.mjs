// Used by bench/inbound-cost.sh: CONNS clients send frames of SIZE bytes for SECS seconds
// to a gateway on PORT; prints GO when they are connected and SENT <bytes> at the end.
import WebSocket from './peers/node_modules/ws/index.js';
const [port, size, conns, secs] = process.argv.slice(2).map(Number);
const payload = Buffer.alloc(size, 'x').toString();
let sent = 0;
const socks = await Promise.all([...Array(conns)].map(() => new Promise((res, rej) => {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/api/websocket/ws?systemId=bench`);
  ws.once('message', () => res(ws)); ws.once('error', rej);
})));
console.error('connected');
process.stdout.write('GO\n');
const end = Date.now() + secs * 1000;
await Promise.all(socks.map(ws => new Promise(res => {
  const pump = () => {
    if (Date.now() >= end) return res();
    let batch = 0;
    while (ws.bufferedAmount < 256 * 1024 && batch < 64 * 1024) { ws.send(payload); sent += size; batch += size; }
    setImmediate(pump);
  };
  pump();
})));
// let the server drain what is buffered
await new Promise(r => setTimeout(r, 500));
process.stdout.write(`SENT ${sent}\n`);
socks.forEach(ws => ws.terminate());
process.exit(0);
