// limit-messages without frame mode: with on_exceed close (and no bytes_per_second)
// the route stays a byte tunnel and counts from frame headers. Each case runs twice,
// on a tunnel route and on the same route forced into frame mode (websocket-size-limit
// declares frameLimits), and must look the same to both peers: the same number of
// messages reach the upstream (never the offending one, never a part of it), the
// sender gets 1008 LIMIT_EXCEEDED and the other side 1001. Raw sockets on both ends,
// so what crosses the gateway is checked frame by frame.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { config, eventually, handshake, listen, startGateway } from './helpers.js';

const OP = { cont: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa };
const tick = () => new Promise((r) => setImmediate(r));

/** One frame, masked unless `mask: false` (a client's frames are masked). */
function frame(opcode, payload = '', { fin = true, mask = true } = {}) {
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

const closeFrame = (code, mask) => {
  const p = Buffer.alloc(2);
  p.writeUInt16BE(code);
  return frame(OP.close, p, { mask });
};

/** Parses the frames a peer receives (unmasking) and reassembles data messages. */
class Reader {
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
function peer(socket, mask, head = Buffer.alloc(0)) {
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
async function rawUpstream() {
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
function rawClient(port, path, extraHeaders = '') {
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

function route(id, attrs, frameMode) {
  const lm = Object.entries(attrs)
    .map(([k, v]) => `${k}: ${JSON.stringify(v)}`)
    .join(', ');
  return `  - id: ${id}
    uri: /${id}/*
    enable_websocket: true
    upstream_id: up
    plugins:
      limit-messages: { ${lm} }
${frameMode ? '      websocket-size-limit: {}\n' : ''}`;
}

const MODES = ['tunnel', 'frame'];
const ROUTES = {
  conn: { rate: 1, burst: 2 },
  big: { rate: 1, burst: 1 },
  key: { rate: 1, burst: 3, scope: 'key', key: 'http_x_k' },
  up: { rate: 1, burst: 2, direction: 'upstream' },
};

let upstream;
let gw;
const rejected = [];
const onRejected = (ev) => rejected.push(ev);
before(async () => {
  upstream = await rawUpstream();
  const routes = [];
  for (const mode of MODES) for (const [name, attrs] of Object.entries(ROUTES)) routes.push(route(`${mode}-${name}`, attrs, mode === 'frame'));
  routes.push(route('drop', { rate: 1, burst: 2, on_exceed: 'drop' }, false));
  routes.push(route('bytes', { rate: 100, bytes_per_second: 1000 }, false));
  gw = await startGateway(config(upstream.port, routes.join('')));
  subscribe('portcullis:message:rejected', onRejected);
});
after(async () => {
  unsubscribe('portcullis:message:rejected', onRejected);
  await gw?.close();
  await upstream?.close();
});

test('the route plugins line names the mode: tunnel with on_exceed close, frame for drop, bytes_per_second or a frame-mode plugin', () => {
  const modes = Object.fromEntries(gw.log.lines.filter((l) => l.msg === 'route plugins').map((l) => [l.route, l.mode]));
  for (const name of Object.keys(ROUTES)) {
    assert.equal(modes[`tunnel-${name}`], 'tunnel', `tunnel-${name}`);
    assert.equal(modes[`frame-${name}`], 'frame', `frame-${name}`);
  }
  assert.equal(modes.drop, 'frame');
  assert.equal(modes.bytes, 'frame');
});

for (const mode of MODES) {
  describe(`${mode} mode`, () => {
    test('rate 1 burst 2: three messages pass, the fourth (in the same TCP chunk) closes 1008 LIMIT_EXCEEDED; the upstream gets exactly three, then 1001', async () => {
      const path = `/${mode}-conn/flood`;
      const c = await rawClient(gw.port, path);
      const u = await upstream.peer(path);
      c.send(Buffer.concat(['m0', 'm1', 'm2', 'm3', 'm4', 'm5'].map((m) => frame(OP.text, m))));
      assert.deepEqual(await c.closed, { code: 1008, reason: 'LIMIT_EXCEEDED' });
      assert.deepEqual((await u.closed).code, 1001);
      assert.deepEqual(u.reader.messages, ['m0', 'm1', 'm2']);
      const data = u.reader.frames.filter((f) => f.opcode !== OP.close);
      assert.equal(data.length, 3, 'no frame (or part of one) after the third');
      assert.deepEqual(c.reader.messages, [], 'the upstream sent nothing');
    });

    test('pings and empty frames count: ping, empty text, ping, then a message closes 1008; the message never reaches the upstream', async () => {
      const path = `/${mode}-conn/control`;
      const c = await rawClient(gw.port, path);
      const u = await upstream.peer(path);
      c.send(Buffer.concat([frame(OP.ping, 'p'), frame(OP.text, ''), frame(OP.ping), frame(OP.text, 'over')]));
      assert.deepEqual(await c.closed, { code: 1008, reason: 'LIMIT_EXCEEDED' });
      assert.equal((await u.closed).code, 1001);
      assert.deepEqual(u.reader.messages, ['']);
    });

    test('a fragmented message counts once: three messages of three fragments pass, a fourth message closes 1008', async () => {
      const path = `/${mode}-conn/fragments`;
      const c = await rawClient(gw.port, path);
      const u = await upstream.peer(path);
      const fragmented = (t) => [frame(OP.text, `${t}a`, { fin: false }), frame(OP.cont, 'b', { fin: false }), frame(OP.cont, 'c')];
      // A ping between fragments is allowed by RFC 6455 and counts as a frame of its own, so none here.
      c.send(Buffer.concat([...fragmented('x'), ...fragmented('y'), ...fragmented('z'), ...fragmented('w')]));
      assert.deepEqual(await c.closed, { code: 1008, reason: 'LIMIT_EXCEEDED' });
      assert.equal((await u.closed).code, 1001);
      assert.deepEqual(u.reader.messages, ['xabc', 'yabc', 'zabc']);
      assert.ok(!u.reader.frames.some((f) => f.payload.toString() === 'wa'), 'no fragment of the fourth message');
    });

    test('large messages split across many TCP chunks, headers split too: two pass whole, the third is refused at its header', async () => {
      const path = `/${mode}-big/split`;
      const c = await rawClient(gw.port, path);
      const u = await upstream.peer(path);
      const payloads = [randomBytes(100_000), randomBytes(70_000), randomBytes(50_000)];
      for (const p of payloads) {
        const f = frame(OP.binary, p);
        // The 14-byte header one byte per write, then the payload in 997-byte pieces.
        await c.trickle(f.subarray(0, 14), 1);
        await c.trickle(f.subarray(14), 997);
      }
      assert.deepEqual(await c.closed, { code: 1008, reason: 'LIMIT_EXCEEDED' });
      assert.equal((await u.closed).code, 1001);
      assert.equal(u.reader.messages.length, 2);
      assert.ok(u.reader.messages[0].equals(payloads[0]) && u.reader.messages[1].equals(payloads[1]), 'both arrived intact');
      assert.equal(u.reader.frames.filter((f) => f.opcode === OP.binary).length, 2, 'nothing of the third');
    });

    test('scope key: two connections of one key share the bucket (rate 1 burst 3): 2 + 2 pass, the next of each closes 1008; another key is unaffected', async () => {
      const key = `${mode}-k1`;
      const a = await rawClient(gw.port, `/${mode}-key/a`, `x-k: ${key}\r\n`);
      const b = await rawClient(gw.port, `/${mode}-key/b`, `x-k: ${key}\r\n`);
      const ua = await upstream.peer(`/${mode}-key/a`);
      const ub = await upstream.peer(`/${mode}-key/b`);
      a.send(Buffer.concat([frame(OP.text, 'a0'), frame(OP.text, 'a1')]));
      assert.ok(await eventually(() => ua.reader.messages.length === 2));
      b.send(Buffer.concat([frame(OP.text, 'b0'), frame(OP.text, 'b1'), frame(OP.text, 'b2')]));
      assert.deepEqual(await b.closed, { code: 1008, reason: 'LIMIT_EXCEEDED' });
      assert.deepEqual(ub.reader.messages, ['b0', 'b1']);
      a.send(frame(OP.text, 'a2'));
      assert.deepEqual(await a.closed, { code: 1008, reason: 'LIMIT_EXCEEDED' });
      assert.deepEqual(ua.reader.messages, ['a0', 'a1']);
      const other = await rawClient(gw.port, `/${mode}-key/other`, `x-k: ${mode}-k2\r\n`);
      const uo = await upstream.peer(`/${mode}-key/other`);
      other.send(Buffer.concat([frame(OP.text, 'o0'), frame(OP.text, 'o1'), frame(OP.text, 'o2'), frame(OP.text, 'o3')]));
      assert.ok(await eventually(() => uo.reader.messages.length === 4));
      other.send(closeFrame(1000, true));
      assert.equal((await other.closed).code, 1000);
    });

    test('direction upstream: an upstream flood of six is cut after three, the upstream gets 1008, the client 1001 and exactly three', async () => {
      const path = `/${mode}-up/flood/6`;
      const c = await rawClient(gw.port, path);
      const u = await upstream.peer(path);
      assert.deepEqual(await u.closed, { code: 1008, reason: 'LIMIT_EXCEEDED' });
      assert.equal((await c.closed).code, 1001);
      assert.deepEqual(c.reader.messages, ['u0', 'u1', 'u2']);
    });
  });
}

test('refusals are published on portcullis:message:rejected (close in tunnel mode, drop in frame mode)', async () => {
  rejected.length = 0;
  const c = await rawClient(gw.port, '/tunnel-conn/published');
  c.send(Buffer.concat(['m0', 'm1', 'm2', 'm3'].map((m) => frame(OP.text, m))));
  assert.equal((await c.closed).code, 1008);
  const d = await rawClient(gw.port, '/drop/published');
  const ud = await upstream.peer('/drop/published');
  d.send(Buffer.concat(['m0', 'm1', 'm2', 'm3', 'm4'].map((m) => frame(OP.text, m))));
  assert.ok(await eventually(() => ud.reader.messages.length === 3));
  assert.ok(await eventually(() => rejected.filter((e) => e.routeId === 'drop').length === 2));
  const mine = rejected.filter((e) => e.routeId === 'tunnel-conn' || e.routeId === 'drop');
  assert.deepEqual(
    mine.map(({ routeId, direction, reason, plugin }) => ({ routeId, direction, reason, plugin })),
    [
      { routeId: 'tunnel-conn', direction: 'client', reason: 'LIMIT_EXCEEDED', plugin: 'limit-messages' },
      { routeId: 'drop', direction: 'client', reason: 'LIMIT_EXCEEDED', plugin: 'limit-messages' },
      { routeId: 'drop', direction: 'client', reason: 'LIMIT_EXCEEDED', plugin: 'limit-messages' },
    ],
  );
  assert.equal(d.socket.destroyed, false, 'drop keeps the connection');
  d.send(closeFrame(1000, true));
  await d.closed;
});

test('the access log of a tunnel refusal: closed by the gateway, 1008, LIMIT_EXCEEDED, rejected by limit-messages', async () => {
  const c = await rawClient(gw.port, '/tunnel-conn/logged');
  c.send(Buffer.concat(['m0', 'm1', 'm2', 'm3'].map((m) => frame(OP.text, m))));
  assert.equal((await c.closed).code, 1008);
  const line = await eventually(() => gw.log.access().find((l) => l.path === '/tunnel-conn/logged'));
  assert.ok(line, 'an access line');
  const flat = JSON.stringify(line);
  assert.match(flat, /"LIMIT_EXCEEDED"/);
  assert.match(flat, /1008/);
  assert.match(flat, /limit-messages/);
});

// The frame phase itself, with a custom plugin: what it is told, and what its failures do.
const PROBE = `
export default {
  name: 'frame-probe',
  version: '1.0.0',
  priority: 500,
  schema: { type: 'object', properties: { tunnel: { type: 'boolean', default: true } }, additionalProperties: false },
  init(config) { return config; },
  tunnelable(state) { return state.tunnel; },
  message() {},
  frame(direction, opcode, fin, length, ctx) {
    (globalThis.__frameProbe ??= []).push([ctx.path, direction, opcode, fin, length]);
    if (length === 13) throw new Error('probe failure');
    if (length === 7) return { action: 'close', code: 1005, reason: 'BAD_CODE' };
  },
};
`;

describe('the frame phase (a custom plugin)', () => {
  let gw2;
  before(async () => {
    globalThis.__frameProbe = [];
    const probe = (id, tunnel) => `  - id: ${id}
    uri: /${id}/*
    enable_websocket: true
    upstream_id: up
    plugins:
      frame-probe: { tunnel: ${tunnel} }
`;
    gw2 = await startGateway(config(upstream.port, probe('probe', true) + probe('notunnel', false), '  custom_plugins: [./probe.js]'), {
      files: { 'probe.js': PROBE },
    });
  });
  after(async () => {
    await gw2?.close();
  });

  test('tunnelable(state) false puts the route in frame mode', () => {
    const modes = Object.fromEntries(gw2.log.lines.filter((l) => l.msg === 'route plugins').map((l) => [l.route, l.mode]));
    assert.deepEqual(modes, { probe: 'tunnel', notunnel: 'frame' });
  });

  test('every frame header but close is reported with direction, opcode, FIN and announced length', async () => {
    const c = await rawClient(gw2.port, '/probe/seen');
    const u = await upstream.peer('/probe/seen');
    c.send(
      Buffer.concat([
        frame(OP.text, 'abc', { fin: false }),
        frame(OP.ping, 'p'),
        frame(OP.cont, 'de'),
        frame(OP.binary, Buffer.alloc(300)),
        frame(OP.pong),
      ]),
    );
    assert.ok(await eventually(() => u.reader.messages.length === 2));
    u.send(frame(OP.text, 'hello', { mask: false }));
    assert.ok(await eventually(() => c.reader.messages.length === 1));
    c.send(closeFrame(1000, true));
    assert.equal((await c.closed).code, 1000);
    const seen = globalThis.__frameProbe.filter(([path]) => path === '/probe/seen').map(([, ...rest]) => rest);
    assert.deepEqual(seen, [
      ['client', OP.text, false, 3],
      ['client', OP.ping, true, 1],
      ['client', OP.cont, true, 2],
      ['client', OP.binary, true, 300],
      ['client', OP.pong, true, 0],
      ['upstream', OP.text, true, 5],
    ]);
    assert.deepEqual(u.reader.messages, ['abcde', Buffer.alloc(300)]);
  });

  test('a throwing frame phase closes the sender with 1011 PLUGIN_ERROR, the other side with 1001; nothing of the frame passes', async () => {
    const c = await rawClient(gw2.port, '/probe/throw');
    const u = await upstream.peer('/probe/throw');
    c.send(Buffer.concat([frame(OP.text, 'fine'), frame(OP.text, 'thirteen byte')]));
    assert.deepEqual(await c.closed, { code: 1011, reason: 'PLUGIN_ERROR' });
    assert.equal((await u.closed).code, 1001);
    assert.deepEqual(u.reader.messages, ['fine']);
    const line = await eventually(() => gw2.log.lines.find((l) => l.msg === 'message rejected' && /probe failure/.test(l.detail)));
    assert.ok(line, 'the cause is logged');
  });

  test('a close verdict with a code that must not be sent closes with 1011 instead, and the gateway keeps running', async () => {
    const c = await rawClient(gw2.port, '/probe/badcode');
    const u = await upstream.peer('/probe/badcode');
    c.send(frame(OP.text, 'sevenby'));
    assert.deepEqual(await c.closed, { code: 1011, reason: 'BAD_CODE' });
    assert.equal((await u.closed).code, 1001);
    assert.deepEqual(u.reader.messages, []);
    const again = await rawClient(gw2.port, '/probe/after');
    again.send(closeFrame(1000, true));
    assert.equal((await again.closed).code, 1000);
  });
});
