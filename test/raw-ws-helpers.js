// Raw WebSocket ends for tests that check what crosses the gateway frame by frame:
// a frame builder, a reader that unmasks and reassembles, a peer that answers a close,
// a raw upstream that completes handshakes by hand, and a raw client.
import http from 'node:http';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { eventually, handshake, listen } from './helpers.js';

export const OP = { cont: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa };
const tick = () => new Promise((r) => setImmediate(r));

/** One frame, masked unless `mask: false` (a client's frames are masked). */
export function frame(opcode, payload = '', { fin = true, mask = true } = {}) {
  const data = Buffer.from(payload);
  const len = data.length;
  const ext = len < 126 ? 0 : len < 65536 ? 2 : 8;
  const head = Buffer.alloc(2 + ext + (mask ? 4 : 0));
  head[0] = (fin ? 0x80 : 0) | opcode;
  head[1] = (mask ? 0x80 : 0) | (ext === 0 ? len : ext === 2 ? 126 : 127);
  if (ext === 2) head.writeUInt16BE(len, 2);
  else if (ext === 8) head.writeBigUInt64BE(BigInt(len), 2);
  if (!mask) return Buffer.concat([head, data]);
  const key = randomBytes(4);
  key.copy(head, 2 + ext);
  for (let i = 0; i < len; i++) data[i] ^= key[i & 3];
  return Buffer.concat([head, data]);
}

export const closeFrame = (code, mask) => {
  const p = Buffer.alloc(2);
  p.writeUInt16BE(code);
  return frame(OP.close, p, { mask });
};

/** Parses the frames a peer receives (unmasking) and reassembles data messages. */
export class Reader {
  frames = [];
  messages = [];
  #buf = Buffer.alloc(0);
  #parts = [];
  #binary = false;

  push(chunk) {
    this.#buf = Buffer.concat([this.#buf, chunk]);
    const found = [];
    for (;;) {
      const b = this.#buf;
      if (b.length < 2) break;
      let len = b[1] & 0x7f;
      let p = 2;
      if (len === 126) {
        if (b.length < 4) break;
        len = b.readUInt16BE(2);
        p = 4;
      } else if (len === 127) {
        if (b.length < 10) break;
        len = Number(b.readBigUInt64BE(2));
        p = 10;
      }
      const masked = (b[1] & 0x80) !== 0;
      const key = masked ? b.subarray(p, p + 4) : undefined;
      if (masked) p += 4;
      if (b.length < p + len) break;
      const payload = Buffer.from(b.subarray(p, p + len));
      if (key) for (let i = 0; i < len; i++) payload[i] ^= key[i & 3];
      const f = { fin: (b[0] & 0x80) !== 0, opcode: b[0] & 0x0f, payload };
      this.#buf = b.subarray(p + len);
      this.frames.push(f);
      found.push(f);
      if (f.opcode === OP.text || f.opcode === OP.binary) {
        this.#binary = f.opcode === OP.binary;
        this.#parts = [payload];
      } else if (f.opcode === OP.cont) this.#parts.push(payload);
      if (f.opcode <= OP.binary && f.fin) {
        const data = Buffer.concat(this.#parts);
        this.messages.push(this.#binary ? data : data.toString());
      }
    }
    return found;
  }

  /** The close frame received, as { code, reason }, or undefined. */
  get close() {
    const f = this.frames.find((x) => x.opcode === OP.close);
    return f && { code: f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1005, reason: f.payload.subarray(2).toString() };
  }
}

/**
 * One end of a WebSocket on a raw socket: records what it receives, answers a close
 * frame with a close frame and then ends. `mask`: this end is the client.
 */
export function peer(socket, mask, head = Buffer.alloc(0)) {
  const reader = new Reader();
  let done;
  const ended = new Promise((r) => (done = r));
  const onData = (c) => {
    for (const f of reader.push(c)) {
      if (f.opcode === OP.close && socket.writable) socket.end(frame(OP.close, f.payload.subarray(0, 2), { mask }));
    }
  };
  socket.on('data', onData);
  socket.on('end', () => socket.end());
  socket.on('error', () => {});
  socket.on('close', () => done(reader.close ?? { code: 1006, reason: '' }));
  if (head.length > 0) onData(head);
  return {
    socket,
    reader,
    /** Resolves with the close frame received ({ code, reason }) once the socket closed. */
    closed: ended,
    send: (bytes) => socket.write(bytes),
    /** Write `bytes` in pieces of `size` bytes, one per event-loop turn (separate TCP segments). */
    async trickle(bytes, size) {
      for (let i = 0; i < bytes.length; i += size) {
        if (socket.destroyed) return;
        socket.write(bytes.subarray(i, i + size));
        await tick();
      }
    },
  };
}

/** A raw upstream: completes handshakes by hand and keeps a peer per URL; /flood/N sends N text frames at once. */
export async function rawUpstream() {
  const peers = new Map();
  const sockets = new Set();
  const server = http.createServer((_req, res) => res.writeHead(404).end());
  server.on('connection', (s) => sockets.add(s));
  server.on('upgrade', (req, socket, head) => {
    const accept = createHash('sha1').update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    const p = peer(socket, false, head);
    peers.set(req.url, p);
    const flood = /\/flood\/(\d+)$/.exec(req.url);
    if (flood) socket.write(Buffer.concat(Array.from({ length: Number(flood[1]) }, (_, i) => frame(OP.text, `u${i}`, { mask: false }))));
  });
  const port = await listen(server);
  return {
    port,
    peer: (url) => eventually(() => peers.get(url)),
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** A raw client through the gateway: resolves once the 101 is read. */
export function rawClient(port, path, extraHeaders = '') {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    sock.setNoDelay(true);
    let buf = Buffer.alloc(0);
    const onData = (c) => {
      buf = Buffer.concat([buf, c]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      sock.off('data', onData);
      const head = buf.subarray(0, end).toString('latin1');
      if (!head.startsWith('HTTP/1.1 101')) return reject(new Error(`no 101: ${head.split('\r\n')[0]}`));
      resolve(peer(sock, true, buf.subarray(end + 4)));
    };
    sock.on('data', onData);
    sock.on('error', reject);
    sock.on('connect', () => sock.write(handshake(path, extraHeaders)));
  });
}
