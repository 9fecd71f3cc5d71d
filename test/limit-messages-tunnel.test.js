// limit-messages without frame mode: with on_exceed close (and no bytes_per_second)
// the route stays a byte tunnel and counts from frame headers. Each case runs twice,
// on a tunnel route and on the same route forced into frame mode (websocket-size-limit
// declares frameLimits), and must look the same to both peers: the same number of
// messages reach the upstream (never the offending one, never a part of it), the
// sender gets 1008 LIMIT_EXCEEDED and the other side 1001. Raw sockets on both ends,
// so what crosses the gateway is checked frame by frame.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { config, eventually, startGateway } from './helpers.js';
import { OP, closeFrame, frame, rawClient, rawUpstream } from './raw-ws-helpers.js';

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
