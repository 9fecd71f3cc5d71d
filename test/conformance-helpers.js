// Helpers for the RFC 6455 conformance suite: hand-built frames, a raw-socket
// client that records every frame it receives, an echo upstream that records what
// reached it (messages, pings, close), and a scripted raw upstream that sends
// hand-built frames toward the gateway.
import http from 'node:http';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { WebSocketServer } from 'ws';
import { listen } from './helpers.js';

export const OP = { CONT: 0x0, TEXT: 0x1, BINARY: 0x2, CLOSE: 0x8, PING: 0x9, PONG: 0xa };

/**
 * One frame as bytes. `mask` (default true: a client frame) masks the payload with
 * `maskKey` (random unless given). `rsv` is a 3-bit value (4 = RSV1, 2 = RSV2, 1 = RSV3).
 * `length` overrides the announced payload length; `lengthBytes` forces the 16- or
 * 64-bit encoding.
 */
export function frame(opcode, payload = Buffer.alloc(0), { fin = true, rsv = 0, mask = true, maskKey, length, lengthBytes } = {}) {
  const data = typeof payload === 'string' ? Buffer.from(payload) : Buffer.from(payload);
  const len = length ?? data.length;
  const enc = lengthBytes ?? (len < 126 ? 0 : len < 65536 ? 2 : 8);
  const head = Buffer.alloc(2 + enc + (mask ? 4 : 0));
  head[0] = (fin ? 0x80 : 0) | (rsv << 4) | opcode;
  if (enc === 0) head[1] = len;
  else if (enc === 2) {
    head[1] = 126;
    head.writeUInt16BE(len, 2);
  } else {
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  if (mask) head[1] |= 0x80;
  if (!mask) return Buffer.concat([head, data]);
  const key = maskKey ?? randomBytes(4);
  key.copy(head, 2 + enc);
  const masked = Buffer.alloc(data.length);
  for (let i = 0; i < data.length; i++) masked[i] = data[i] ^ key[i & 3];
  return Buffer.concat([head, masked]);
}

/** A close frame's payload: code (2 bytes) and reason; no code gives an empty payload. */
export function closePayload(code, reason = '') {
  if (code === undefined) return Buffer.alloc(0);
  const r = typeof reason === 'string' ? Buffer.from(reason) : reason;
  const b = Buffer.alloc(2 + r.length);
  b.writeUInt16BE(code, 0);
  r.copy(b, 2);
  return b;
}

/** Parse frames from `buf`, returning [frames, rest]. */
function parseFrames(buf) {
  const frames = [];
  let off = 0;
  for (;;) {
    if (buf.length - off < 2) break;
    const b0 = buf[off];
    const b1 = buf[off + 1];
    let len = b1 & 0x7f;
    let p = off + 2;
    if (len === 126) {
      if (buf.length - p < 2) break;
      len = buf.readUInt16BE(p);
      p += 2;
    } else if (len === 127) {
      if (buf.length - p < 8) break;
      len = Number(buf.readBigUInt64BE(p));
      p += 8;
    }
    const masked = (b1 & 0x80) !== 0;
    let key;
    if (masked) {
      if (buf.length - p < 4) break;
      key = buf.subarray(p, p + 4);
      p += 4;
    }
    if (buf.length - p < len) break;
    let payload = Buffer.from(buf.subarray(p, p + len));
    if (masked) for (let i = 0; i < payload.length; i++) payload[i] ^= key[i & 3];
    frames.push({ fin: (b0 & 0x80) !== 0, rsv: (b0 >> 4) & 7, opcode: b0 & 0x0f, masked, payload });
    off = p + len;
  }
  return [frames, buf.subarray(off)];
}

/** Decode a close frame's payload: { code, reason } (code undefined when empty). */
export function decodeClose(payload) {
  if (payload.length < 2) return { code: undefined, reason: '' };
  return { code: payload.readUInt16BE(0), reason: payload.subarray(2).toString() };
}

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/**
 * A raw WebSocket client: handshake, then hand-built frames out and every frame in
 * recorded. When a close frame arrives it answers with a close (unless it already
 * sent one) and ends the TCP connection, as a client must.
 */
export function rawClient(port, path, { headers = '' } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    sock.setNoDelay(true);
    const key = randomBytes(16).toString('base64');
    let head = '';
    let pending = Buffer.alloc(0);
    let upgraded = false;
    let closeSent = false;
    const frames = [];
    const waiters = [];
    let ended = false;
    let endResolve;
    const end = new Promise((r) => (endResolve = r));
    const client = {
      sock,
      frames,
      response: '',
      /** Resolves with the frames when the TCP connection has ended. */
      ended: end,
      write(...bufs) {
        for (const b of bufs) {
          if (b[0] !== undefined && (b[0] & 0x0f) === OP.CLOSE && (b[0] & 0x80)) closeSent = true;
          if (!sock.destroyed) sock.write(b);
        }
      },
      /** Write `buf` in pieces of `size` bytes, yielding to the event loop between them. */
      async writeChopped(buf, size) {
        for (let i = 0; i < buf.length; i += size) {
          if (sock.destroyed) return;
          sock.write(buf.subarray(i, i + size));
          await new Promise((r) => setImmediate(r));
        }
      },
      /** Send a (masked) close frame. */
      close(code = 1000, reason = '') {
        client.write(frame(OP.CLOSE, closePayload(code, reason)));
      },
      /** Wait until `n` frames matching `pred` arrived (rejects if the connection ends first). */
      waitFor(n, pred = () => true) {
        return new Promise((res, rej) => {
          const check = () => {
            const got = frames.filter(pred);
            if (got.length >= n) {
              res(got);
              return true;
            }
            if (ended) {
              rej(new Error(`connection ended after ${got.length} of ${n} expected frames: ${describe(frames)}`));
              return true;
            }
            return false;
          };
          if (!check()) waiters.push(check);
        });
      },
      /** The close frame received, decoded, or undefined. */
      closeFrame() {
        const f = frames.find((x) => x.opcode === OP.CLOSE);
        return f ? decodeClose(f.payload) : undefined;
      },
      dataFrames() {
        return frames.filter((f) => f.opcode < 8);
      },
      pongs() {
        return frames.filter((f) => f.opcode === OP.PONG);
      },
    };
    const notify = () => {
      for (let i = waiters.length - 1; i >= 0; i--) if (waiters[i]()) waiters.splice(i, 1);
    };
    sock.on('connect', () => {
      sock.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${headers}\r\n`,
      );
    });
    sock.on('data', (chunk) => {
      pending = Buffer.concat([pending, chunk]);
      if (!upgraded) {
        const i = pending.indexOf('\r\n\r\n');
        if (i < 0) return;
        head = pending.subarray(0, i).toString('latin1');
        pending = pending.subarray(i + 4);
        client.response = head;
        if (!/^HTTP\/1\.1 101/.test(head)) {
          sock.destroy();
          reject(new Error(`handshake refused: ${head.split('\r\n')[0]}`));
          return;
        }
        const accept = createHash('sha1').update(key + GUID).digest('base64');
        if (!head.toLowerCase().includes(`sec-websocket-accept: ${accept.toLowerCase()}`)) {
          sock.destroy();
          reject(new Error('bad Sec-WebSocket-Accept'));
          return;
        }
        upgraded = true;
        resolve(client);
      }
      const [got, rest] = parseFrames(pending);
      pending = Buffer.from(rest);
      for (const f of got) {
        frames.push(f);
        if (f.opcode === OP.CLOSE) {
          if (!closeSent) {
            closeSent = true;
            // Echo the code back as RFC 6455 section 5.5.1 asks (an empty close answers an empty close).
            const { code } = decodeClose(f.payload);
            sock.write(frame(OP.CLOSE, closePayload(code === 1005 ? undefined : code)));
          }
          sock.end();
        }
      }
      if (got.length) notify();
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      ended = true;
      notify();
      endResolve(frames);
      if (!upgraded) reject(new Error('connection closed before the handshake completed'));
    });
  });
}

export function describe(frames) {
  return frames.map((f) => `${f.opcode}${f.fin ? '' : '(more)'}:${f.opcode === OP.CLOSE ? JSON.stringify(decodeClose(f.payload)) : f.payload.length}`).join(' ');
}

/**
 * A WebSocket echo upstream that records, per request path, every message, ping and
 * pong it received and the close code and reason it got.
 */
export async function recordingUpstream({ perMessageDeflate = false } = {}) {
  const byPath = new Map();
  const sockets = new Set();
  const server = http.createServer((_req, res) => res.writeHead(404).end());
  server.on('connection', (s) => sockets.add(s));
  const wss = new WebSocketServer({ server, perMessageDeflate });
  wss.on('connection', (ws, req) => {
    const rec = {
      url: req.url,
      headers: req.headers,
      extensions: req.headers['sec-websocket-extensions'],
      negotiated: ws.extensions,
      ws,
      messages: [],
      pings: [],
      pongs: [],
      close: undefined,
      error: undefined,
      /** Resolves with the record once the connection closed. */
      closed: undefined,
    };
    rec.closed = new Promise((r) => ws.once('close', () => r(rec)));
    byPath.set(req.url, rec);
    ws.on('message', (data, isBinary) => {
      const buf = Buffer.from(data);
      rec.messages.push({ data: buf, binary: isBinary });
      if (rec.onMessage) return rec.onMessage(buf, isBinary);
      ws.send(buf, { binary: isBinary });
    });
    ws.on('ping', (d) => rec.pings.push(Buffer.from(d)));
    ws.on('pong', (d) => rec.pongs.push(Buffer.from(d)));
    ws.on('error', (e) => (rec.error = e.code ?? e.message));
    ws.on('close', (code, reason) => (rec.close = { code, reason: reason.toString() }));
  });
  const port = await listen(server);
  return {
    port,
    /** The record of the connection made for `path` (undefined until it connected). */
    get: (path) => byPath.get(path),
    async close() {
      for (const c of wss.clients) c.terminate();
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/**
 * A raw upstream: completes the handshake itself, records every frame the gateway
 * sends (with its mask bit), answers a close with a close, and otherwise runs
 * `script(conn, path)` to send hand-built (unmasked, server) frames.
 */
export async function scriptedUpstream(script) {
  const byPath = new Map();
  const sockets = new Set();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.setNoDelay(true);
    let buf = Buffer.alloc(0);
    let conn;
    sock.on('error', () => {});
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      if (!conn) {
        const i = buf.indexOf('\r\n\r\n');
        if (i < 0) return;
        const head = buf.subarray(0, i).toString('latin1');
        buf = buf.subarray(i + 4);
        const path = head.split(' ')[1];
        const key = /sec-websocket-key: *(\S+)/i.exec(head)?.[1] ?? '';
        const accept = createHash('sha1').update(key + GUID).digest('base64');
        sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
        conn = { path, head, frames: [], closeSent: false, ended: false, sock, write: (b) => !sock.destroyed && sock.write(b) };
        byPath.set(path, conn);
        sock.on('close', () => (conn.ended = true));
        script(conn, path);
      }
      const [got, rest] = parseFrames(buf);
      buf = Buffer.from(rest);
      for (const f of got) {
        conn.frames.push(f);
        if (f.opcode === OP.CLOSE && !conn.closeSent) {
          conn.closeSent = true;
          sock.write(frame(OP.CLOSE, closePayload(decodeClose(f.payload).code), { mask: false }));
          sock.end();
        }
        if (conn.onFrame) conn.onFrame(f);
      }
    });
  });
  const port = await listen(server);
  return {
    port,
    get: (path) => byPath.get(path),
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
