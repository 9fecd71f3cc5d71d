// websocket-validator in frame mode, as a client and an upstream observe it: message
// types both ways, JSON Schema (2020-12 and draft-07), discriminated schemas, nesting
// depth, prototype keys, deny/allow patterns proven safe at load, custom validators
// (the chat-rules example, async, throwing), on_invalid drop with and without a reply.
// An invalid message never reaches the other side, and no message body reaches the log.
import { test, after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { ConfigError } from '../dist/config/index.js';
import { createRegistry, loadConfigText } from '../dist/index.js';
import { checkSafe, compileSafePattern } from '../dist/plugins/websocket-validator/regex-safety.js';
import { depthExceeds } from '../dist/plugins/websocket-validator/json-guards.js';
import { EXAMPLES, closed, collect, config, eventually, nextMessage, openWs, startGateway, wsUpstream } from './helpers.js';

/** Every upstream connection, with what it received and how it was closed. */
const conns = [];
let up;
let gw;
const rejected = [];
const onRejected = (e) => rejected.push(e);

const chatSchemas = `
        join:
          type: object
          properties: { type: { const: join }, room: { type: string, pattern: "^[a-z0-9-]{1,32}$" } }
          required: [type, room]
          additionalProperties: false
        say:
          type: object
          properties: { type: { const: say }, room: { type: string }, text: { type: string, maxLength: 500 } }
          required: [type, room, text]
          additionalProperties: false
        leave:
          type: object
          properties: { type: { const: leave }, room: { type: string } }
          required: [type, room]
          additionalProperties: false`;

const SLOW = `// Async: later messages get shorter delays, so only the plugin's queue keeps them in order.
export default async function slow(message) {
  const n = Number(message.text());
  await new Promise((r) => setTimeout(r, (12 - n) * 3));
  if (n % 4 === 0) return { valid: false, reason: 'multiple of four' };
  return true;
}
`;
// JSON.parse's error message quotes its input: the gateway must not log it.
const THROWS = `export default function throws(message) {
  if (message.text().startsWith('boom')) JSON.parse(message.text());
  return true;
}
`;
const ODD = `export default function odd() { return 42; }
`;

before(async () => {
  subscribe('portcullis:message:rejected', onRejected);
  up = await wsUpstream({
    onConnection(ws, req) {
      const rec = { url: req.url, received: [], close: undefined };
      conns.push(rec);
      ws.on('message', (data, isBinary) => {
        const text = isBinary ? undefined : data.toString();
        rec.received.push(isBinary ? [...data] : text);
        // The gateway's error_message replies are recorded, not echoed.
        if (text === 'refused by gateway' || text === '{"error":"invalid_message"}') return;
        if (text === 'upstream-binary' || text?.includes('"cmd":"binary"')) return ws.send(Buffer.from([1, 2, 3]));
        if (text?.startsWith('upstream-text:')) return ws.send(text.slice('upstream-text:'.length).toLowerCase());
        ws.send(data, { binary: isBinary });
      });
      ws.on('close', (code, reason) => {
        rec.close = { code, reason: reason.toString() };
      });
    },
  });
  const route = (id, plugin) => `  - id: ${id}
    uri: /${id}/*
    enable_websocket: true
    upstream_id: up
    plugins:
      websocket-validator:
${plugin}`;
  gw = await startGateway(
    config(
      up.port,
      [
        route('types', `        client: { binary: false }
        upstream: { binary: false }`),
        route('binary-only', `        client: { text: false }`),
        route('schema', `        client:
          schema: { type: object, properties: { n: { type: integer } }, required: [n], additionalProperties: false }`),
        route('draft7', `        client:
          schema:
            $schema: "http://json-schema.org/draft-07/schema#"
            definitions: { count: { type: integer, minimum: 0 } }
            type: object
            properties: { a: { $ref: "#/definitions/count" }, b: { type: string } }
            dependencies: { a: [b] }`),
        route('json', `        client: { json: true, max_depth: 32 }`),
        route('chat', `        client:
          binary: false
          max_depth: 8
          discriminator: type
          schemas:${chatSchemas.replaceAll('\n', '\n    ')}
          validator: ${EXAMPLES}validators/chat-rules.js`),
        route('patterns', `        max_pattern_input: 1024
        client:
          deny_patterns: ["(?i)<script\\\\b", "DROP\\\\s+TABLE"]
          allow_pattern: "^[\\\\x20-\\\\x7e]*$"`),
        route('drop', `        on_invalid: drop
        error_message: { error: invalid_message }
        client: { binary: false, schema: { type: object, required: [n] } }
        upstream: { binary: false }`),
        route('drop-silent', `        on_invalid: drop
        client: { schema: { type: object, required: [n] } }`),
        route('mixed', `        on_invalid: drop
        client: { on_invalid: close, deny_patterns: [forbidden] }
        upstream: { deny_patterns: [forbidden], error_message: "refused by gateway" }`),
        route('async', `        on_invalid: drop
        error_message: nope
        client: { validator: ./slow.mjs }`),
        route('throws', `        on_invalid: drop
        client: { validator: ./throws.mjs }`),
        route('odd', `        client: { validator: ./odd.mjs }`),
      ].join('\n'),
    ),
    { files: { 'slow.mjs': SLOW, 'throws.mjs': THROWS, 'odd.mjs': ODD } },
  );
});

after(async () => {
  unsubscribe('portcullis:message:rejected', onRejected);
  await gw.close();
  await up.close();
});

/** The upstream connection that was opened for `path`. */
function upstreamFor(path) {
  return eventually(() => conns.find((c) => c.url === path));
}

/** Open `path`; return the client socket and its upstream record. */
async function open(path) {
  const { ws } = await openWs(`${gw.ws}${path}`);
  return { ws, upstream: await upstreamFor(path) };
}

async function echo(ws, data) {
  ws.send(data);
  return nextMessage(ws);
}

describe('message types', () => {
  test('a binary message from the client on a text-only direction: 1003 to the client, 1001 to the upstream, nothing forwarded', async () => {
    const { ws, upstream } = await open('/types/a');
    assert.equal(await echo(ws, 'hello'), 'hello');
    ws.send(Buffer.from([0xde, 0xad]));
    assert.deepEqual(await closed(ws), { code: 1003, reason: 'MESSAGE_TYPE_REFUSED: binary' });
    await eventually(() => upstream.close);
    assert.equal(upstream.close.code, 1001);
    assert.deepEqual(upstream.received, ['hello']);
  });

  test('a binary message from the upstream on a text-only direction: 1003 to the upstream, 1001 to the client', async () => {
    const { ws, upstream } = await open('/types/b');
    const got = [];
    ws.on('message', (d) => got.push(d));
    ws.send('upstream-binary');
    assert.equal((await closed(ws)).code, 1001);
    await eventually(() => upstream.close);
    assert.deepEqual(upstream.close, { code: 1003, reason: 'MESSAGE_TYPE_REFUSED: binary' });
    assert.deepEqual(got, [], 'the binary message never reached the client');
  });

  test('a text message on a binary-only direction: 1003', async () => {
    const { ws, upstream } = await open('/binary-only/a');
    ws.send(Buffer.from([1, 2]));
    assert.deepEqual([...(await nextMessage(ws))], [1, 2]);
    ws.send('text');
    assert.deepEqual(await closed(ws), { code: 1003, reason: 'MESSAGE_TYPE_REFUSED: text' });
    assert.deepEqual(upstream.received, [[1, 2]]);
  });
});

describe('JSON Schema', () => {
  test('a message that satisfies the schema passes', async () => {
    const { ws, upstream } = await open('/schema/ok');
    assert.equal(await echo(ws, '{"n":1}'), '{"n":1}');
    ws.close();
    await closed(ws);
    assert.deepEqual(upstream.received, ['{"n":1}']);
  });

  test('a schema failure closes with 1007 MESSAGE_INVALID: schema and is not forwarded', async () => {
    const { ws, upstream } = await open('/schema/bad');
    ws.send('{"n":"SECRET-schema"}');
    assert.deepEqual(await closed(ws), { code: 1007, reason: 'MESSAGE_INVALID: schema' });
    await eventually(() => upstream.close);
    assert.equal(upstream.close.code, 1001);
    assert.deepEqual(upstream.received, []);
  });

  test('text that is not JSON where a schema applies: 1007 MESSAGE_INVALID: json', async () => {
    const { ws, upstream } = await open('/schema/notjson');
    ws.send('SECRET-json {');
    assert.deepEqual(await closed(ws), { code: 1007, reason: 'MESSAGE_INVALID: json' });
    assert.deepEqual(upstream.received, []);
  });

  test('a draft-07 schema ($schema) is compiled as draft-07: definitions, $ref and dependencies', async () => {
    const { ws, upstream } = await open('/draft7/a');
    assert.equal(await echo(ws, '{"a":1,"b":"x"}'), '{"a":1,"b":"x"}');
    ws.send('{"a":1}'); // dependencies: a requires b
    assert.deepEqual(await closed(ws), { code: 1007, reason: 'MESSAGE_INVALID: schema' });
    assert.deepEqual(upstream.received, ['{"a":1,"b":"x"}']);
    const { ws: ws2 } = await open('/draft7/b');
    ws2.send('{"a":-1,"b":"x"}'); // $ref to definitions/count: minimum 0
    assert.equal((await closed(ws2)).code, 1007);
  });

  test('a __proto__ key is refused before the schema (1007 MESSAGE_INVALID: proto_key), also when spelled with escapes', async () => {
    const { ws, upstream } = await open('/json/proto');
    assert.equal(await echo(ws, '{"proto":"fine"}'), '{"proto":"fine"}');
    ws.send('{"a":{"__proto__":{"isAdmin":"SECRET-proto"}}}');
    assert.deepEqual(await closed(ws), { code: 1007, reason: 'MESSAGE_INVALID: proto_key' });
    const { ws: ws2 } = await open('/json/proto2');
    ws2.send('[{"\\u005f_proto__":1}]');
    assert.equal((await closed(ws2)).reason, 'MESSAGE_INVALID: proto_key');
    const { ws: ws3 } = await open('/json/proto3');
    ws3.send('{"constructor":{"prototype":{}}}');
    assert.equal((await closed(ws3)).reason, 'MESSAGE_INVALID: proto_key');
    assert.deepEqual(upstream.received, ['{"proto":"fine"}']);
  });
});

describe('nesting depth', () => {
  const deep = (n) => '['.repeat(n) + ']'.repeat(n);

  test('a 30,000-deep array is refused (1007 depth) before parsing; other connections keep working', async () => {
    const { ws: other } = await open('/json/other');
    const { ws, upstream } = await open('/json/deep');
    assert.equal(await echo(ws, deep(32)), deep(32), 'max_depth itself is allowed');
    ws.send(deep(30000));
    assert.deepEqual(await closed(ws), { code: 1007, reason: 'MESSAGE_INVALID: depth' });
    assert.deepEqual(upstream.received, [deep(32)]);
    assert.equal(await echo(other, '{"still":"here"}'), '{"still":"here"}');
    const { ws: fresh } = await open('/json/fresh');
    assert.equal(await echo(fresh, '[1]'), '[1]');
    other.close();
    fresh.close();
  });

  test('where a schema applies, the default max_depth (64) refuses a 30,000-deep array too', async () => {
    const { ws } = await open('/schema/deep');
    ws.send(deep(30000));
    assert.deepEqual(await closed(ws), { code: 1007, reason: 'MESSAGE_INVALID: depth' });
  });

  test('brackets inside strings, escaped quotes included, do not count', () => {
    const data = (s) => Buffer.from(s);
    assert.equal(depthExceeds(data('{"a":"[[[[[[[[[[[[[[[[[["}'), 2), false);
    assert.equal(depthExceeds(data('{"a":"\\"[[[[[[[[[[[[[[[[[[","b":[]}'), 2), false);
    assert.equal(depthExceeds(data('{"a":"\\\\","b":[[[]]]}'), 3), true, 'an escaped backslash ends before the quote');
    assert.equal(depthExceeds(data('[[[]]]'), 3), false);
    assert.equal(depthExceeds(data('[[[[]]]]'), 3), true);
  });
});

describe('discriminated schemas and the chat-rules validator example', () => {
  test('join then say in the joined room pass', async () => {
    const { ws, upstream } = await open('/chat/a');
    const join = '{"type":"join","room":"lobby"}';
    const say = '{"type":"say","room":"lobby","text":"hi"}';
    assert.equal(await echo(ws, join), join);
    assert.equal(await echo(ws, say), say);
    assert.equal(await echo(ws, '{"type":"leave","room":"lobby"}'), '{"type":"leave","room":"lobby"}');
    ws.close();
    await closed(ws);
    assert.equal(upstream.received.length, 3);
  });

  test('an unknown or missing type is invalid (1007 schema); each type has its own schema', async () => {
    for (const [path, msg] of [
      ['/chat/unknown', '{"type":"dance","room":"SECRET-x"}'],
      ['/chat/missing', '{"room":"SECRET-x"}'],
      ['/chat/numeric', '{"type":7}'],
      ['/chat/array', '[{"type":"join"}]'],
      ['/chat/joinbad', '{"type":"join","room":"SECRET Not Valid"}'],
      ['/chat/sayextra', '{"type":"say","room":"lobby","text":"hi","extra":true}'],
    ]) {
      const { ws, upstream } = await open(path);
      ws.send(msg);
      assert.deepEqual(await closed(ws), { code: 1007, reason: 'MESSAGE_INVALID: schema' }, msg);
      assert.deepEqual(upstream.received, []);
    }
  });

  test("the validator's reason: saying in a room not joined closes with 1008 and that reason", async () => {
    const { ws, upstream } = await open('/chat/notjoined');
    ws.send('{"type":"join","room":"lobby"}');
    await nextMessage(ws);
    ws.send('{"type":"say","room":"secret-room","text":"SECRET-say"}');
    assert.deepEqual(await closed(ws), { code: 1008, reason: 'MESSAGE_REJECTED: say: not a member of that room' });
    assert.deepEqual(upstream.received, ['{"type":"join","room":"lobby"}']);
  });

  test("the validator's close_code: a staff room without the staff group closes with 4403", async () => {
    const { ws } = await open('/chat/staff');
    ws.send('{"type":"join","room":"staff-only"}');
    assert.deepEqual(await closed(ws), { code: 4403, reason: 'MESSAGE_REJECTED: room reserved for staff' });
  });

  test('per-connection state: the 21st say in the window closes with 4029', async () => {
    const { ws, upstream } = await open('/chat/flood');
    ws.send('{"type":"join","room":"lobby"}');
    const say = '{"type":"say","room":"lobby","text":"x"}';
    for (let i = 0; i < 21; i++) ws.send(say);
    const c = await closed(ws);
    assert.deepEqual(c, { code: 4029, reason: 'MESSAGE_REJECTED: too many messages' });
    assert.equal(upstream.received.filter((m) => m === say).length, 20);
  });

  test('max_depth applies before the discriminator and the schemas', async () => {
    const { ws } = await open('/chat/deep');
    ws.send(`{"type":"join","room":"lobby","x":${'['.repeat(10)}${']'.repeat(10)}}`);
    assert.deepEqual(await closed(ws), { code: 1007, reason: 'MESSAGE_INVALID: depth' });
  });
});

describe('deny_patterns and allow_pattern', () => {
  test('a clean message passes; a deny pattern match closes with 1008 MESSAGE_REJECTED: pattern', async () => {
    const { ws, upstream } = await open('/patterns/a');
    assert.equal(await echo(ws, 'hello there'), 'hello there');
    ws.send('x <SCRIPT>SECRET-pattern</script>');
    assert.deepEqual(await closed(ws), { code: 1008, reason: 'MESSAGE_REJECTED: pattern' });
    assert.deepEqual(upstream.received, ['hello there']);
    const { ws: ws2 } = await open('/patterns/b');
    ws2.send('please DROP   TABLE users');
    assert.equal((await closed(ws2)).code, 1008);
  });

  test('a message that does not match allow_pattern closes with 1008', async () => {
    const { ws, upstream } = await open('/patterns/c');
    ws.send('caf\u00e9 SECRET-allow');
    assert.deepEqual(await closed(ws), { code: 1008, reason: 'MESSAGE_REJECTED: pattern' });
    assert.deepEqual(upstream.received, []);
  });

  test('a text message longer than max_pattern_input is refused with 1009 without running the patterns', async () => {
    const { ws, upstream } = await open('/patterns/d');
    ws.send('a'.repeat(1025));
    assert.deepEqual(await closed(ws), { code: 1009, reason: 'WS_MESSAGE_TOO_BIG: max_pattern_input' });
    assert.deepEqual(upstream.received, []);
  });
});

describe('on_invalid: drop', () => {
  test('an invalid message is dropped, the sender gets error_message, the connection stays', async () => {
    const { ws, upstream } = await open('/drop/a');
    ws.send('{"SECRET-drop":1}');
    assert.equal(await nextMessage(ws), '{"error":"invalid_message"}');
    ws.send(Buffer.from([1]));
    assert.equal(await nextMessage(ws), '{"error":"invalid_message"}');
    assert.equal(await echo(ws, '{"n":2}'), '{"n":2}');
    ws.close();
    await closed(ws);
    assert.deepEqual(upstream.received, ['{"n":2}']);
    // Every rejection is logged, drops included, with its cause and never the body.
    const dropped = await eventually(() => gw.log.lines.find((l) => l.msg === 'message dropped' && /websocket-validator/.test(l.detail)));
    assert.equal(dropped.direction, 'client');
    assert.ok(!JSON.stringify(dropped).includes('SECRET-drop'));
  });

  test('an invalid upstream message is dropped and error_message goes to the upstream', async () => {
    const { ws, upstream } = await open('/drop/b');
    ws.send('{"n":1,"cmd":"x"}');
    assert.equal(await nextMessage(ws), '{"n":1,"cmd":"x"}');
    ws.send('{"n":0,"cmd":"binary"}');
    // The binary message is dropped: the client's next message is the echo of the next text.
    const next = nextMessage(ws);
    await eventually(() => upstream.received.includes('{"error":"invalid_message"}'));
    ws.send('{"n":3}');
    assert.equal(await next, '{"n":3}');
    ws.close();
    await closed(ws);
  });

  test('without error_message the message just disappears', async () => {
    const { ws, upstream } = await open('/drop-silent/a');
    ws.send('{"m":"SECRET-silent"}');
    assert.equal(await echo(ws, '{"n":4}'), '{"n":4}');
    ws.close();
    await closed(ws);
    assert.deepEqual(upstream.received, ['{"n":4}']);
  });

  test('on_invalid and error_message per direction override the top level', async () => {
    const { ws, upstream } = await open('/mixed/a');
    ws.send('upstream-text:FORBIDDEN SECRET-mixed');
    await eventually(() => upstream.received.includes('refused by gateway'));
    assert.equal(await echo(ws, 'fine'), 'fine');
    ws.send('forbidden');
    assert.deepEqual(await closed(ws), { code: 1008, reason: 'MESSAGE_REJECTED: pattern' });
  });
});

describe('custom validators: async, throwing, malformed', () => {
  test('an async validator keeps message order; its invalid verdicts drop with error_message', async () => {
    const { ws, upstream } = await open('/async/a');
    const got = [];
    ws.on('message', (d) => got.push(d.toString()));
    for (let n = 1; n <= 12; n++) ws.send(String(n));
    const passing = ['1', '2', '3', '5', '6', '7', '9', '10', '11'];
    await eventually(() => got.length === 12);
    assert.deepEqual(got.filter((m) => m !== 'nope'), passing);
    assert.equal(got.filter((m) => m === 'nope').length, 3);
    assert.deepEqual(upstream.received, passing);
    ws.close();
    await closed(ws);
  });

  test('a throwing validator closes with 1011, even under on_invalid: drop; its error message is not logged', async () => {
    const { ws, upstream } = await open('/throws/a');
    assert.equal(await echo(ws, 'fine'), 'fine');
    ws.send('boom SECRET-throw');
    assert.deepEqual(await closed(ws), { code: 1011, reason: 'PLUGIN_ERROR' });
    assert.deepEqual(upstream.received, ['fine']);
    const line = await eventually(() => gw.log.lines.find((l) => typeof l.detail === 'string' && l.detail.includes('validator threw')));
    assert.match(line.detail, /SyntaxError/);
  });

  test('a verdict outside the contract is a validator failure: 1011', async () => {
    const { ws, upstream } = await open('/odd/a');
    ws.send('anything');
    assert.deepEqual(await closed(ws), { code: 1011, reason: 'PLUGIN_ERROR' });
    assert.deepEqual(upstream.received, []);
  });
});

test('every rejection was published with its reason, the route and the direction', async () => {
  const reasons = new Set(rejected.map((e) => e.reason));
  for (const r of ['type', 'json', 'schema', 'depth', 'proto_key', 'pattern', 'validator', 'validator_error']) {
    assert.ok(reasons.has(r), `a rejection with reason ${r} was published`);
  }
  const e = rejected.find((x) => x.reason === 'type' && x.direction === 'upstream');
  assert.deepEqual({ ...e }, { source: undefined, routeId: 'types', direction: 'upstream', reason: 'type', plugin: 'websocket-validator' });
  assert.ok(rejected.every((x) => x.plugin === 'websocket-validator' && Object.keys(x).length === 5));
});

test('no message body reaches the log', async () => {
  // Let the last close lines land.
  await eventually(() => gw.log.access().some((l) => l.route === 'odd'));
  const raw = gw.log.raw();
  assert.ok(raw.includes('MESSAGE_INVALID'), 'rejections are logged');
  assert.ok(!raw.toLowerCase().includes('secret-'), 'no part of a refused message is in the log');
  assert.ok(!raw.includes('boom'), "the validator's exception message (which quotes the message) is not logged");
});

// ---- refused at load ------------------------------------------------------------

async function loadIssues(pluginYaml) {
  const yaml = `upstreams:
  - id: up
    nodes: { "127.0.0.1:7001": 1 }
routes:
  - id: r
    uri: /r
    enable_websocket: true
    upstream_id: up
    plugins:
      websocket-validator:
${pluginYaml}
`;
  try {
    await loadConfigText(yaml, '/tmp/ws-validator.yaml', { registry: createRegistry(), env: {} });
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${err}`);
    return err.issues;
  }
  assert.fail('the config loaded, but it should not have');
}

describe('refused at load', () => {
  test('a catastrophic deny pattern is a config error at the plugin, naming the attribute and the cause', async () => {
    const issues = await loadIssues('        client: { deny_patterns: [ok, "^(a+)+$"] }');
    assert.equal(issues.length, 1);
    assert.equal(issues[0].path, 'routes[0].plugins.websocket-validator');
    assert.equal(issues[0].line, 11);
    assert.match(issues[0].message, /client\.deny_patterns\[1\]: pattern "\^\(a\+\)\+\$" can take exponential time/);
  });

  test('a quadratic allow pattern, a backreference, an unsafe pattern inside a schema are refused', async () => {
    let [i] = await loadIssues('        upstream: { allow_pattern: "\\\\s+$" }');
    assert.match(i.message, /upstream\.allow_pattern: .*quadratic/);
    [i] = await loadIssues('        client: { deny_patterns: ["(a)\\\\1"] }');
    assert.match(i.message, /backreference/);
    [i] = await loadIssues('        client: { schema: { type: string, pattern: "^(\\\\w+\\\\s?)*$" } }');
    assert.match(i.message, /client\.schema: invalid JSON Schema: pattern .* exponential/);
  });

  test('an invalid schema, an unsupported draft, a draft-07 keyword in a 2020-12 schema, an unloadable validator', async () => {
    let [i] = await loadIssues('        client: { schema: { type: objekt } }');
    assert.match(i.message, /client\.schema: invalid JSON Schema/);
    [i] = await loadIssues('        client: { schema: { $schema: "http://json-schema.org/draft-04/schema#" } }');
    assert.match(i.message, /unsupported \$schema/);
    // items as an array (tuple) is draft-07; 2020-12 says prefixItems.
    [i] = await loadIssues('        client: { schemas: { join: { type: array, items: [{ type: string }] } } }');
    assert.match(i.message, /client\.schemas\.join: invalid JSON Schema/);
    [i] = await loadIssues('        client: { validator: ./no-such-validator.js }');
    assert.match(i.message, /client\.validator: cannot load validator .*no-such-validator\.js: module not found/);
  });

  test('contradictions: text checks on a direction where text is refused; json: false with a schema', async () => {
    let [i] = await loadIssues('        client: { text: false, deny_patterns: [x] }');
    assert.match(i.message, /client\.text is false/);
    [i] = await loadIssues('        client: { json: false, schema: { type: object } }');
    assert.match(i.message, /client\.json is false/);
  });
});

describe('the pattern safety check', () => {
  const unsafe = [
    '(a+)+', '(a|a)*', '(.*)*', '(\\w+\\s?)*', '^(a|aa)+$', '^(a|aa){1,30}$', '^(?:a?){20}a{20}$', '(x+x+)+y',
    '\\d+x', '\\s+$', 'a.*b', '<script[^>]*>', '\\w+@\\w+', '^\\d+\\.?\\d+$', '(?m)^\\s+x', '(?=.*x)y', '(a)\\1',
  ];
  const safe = [
    'spam', '(?i)\\bdrop\\s+table\\b', '<script\\b', '(?i)javascript\\s*:', '^[a-z]+$', '^(\\d+\\.)*\\d+$', '\\bfoo\\w*',
    '^[\\x20-\\x7e]{1,500}$', '^(?=.*\\d)(?=.*[a-z]).{8,}$', '<script.{0,100}>', '\\d{4}-\\d{2}-\\d{2}',
    '^[^@\\s]+@[^@\\s]+\\.[a-z]{2,}$', 'foo(?!bar)', '^(?:[a-z0-9-]+\\.)+[a-z]{2,}$',
  ];
  for (const p of unsafe) test(`refuses ${p}`, () => assert.throws(() => compileSafePattern(p), { name: 'UnsafePatternError' }));
  for (const p of safe) test(`accepts ${p}`, () => assert.doesNotThrow(() => compileSafePattern(p)));

  test('the cause is named: exponential, quadratic, backreference, lookaround', () => {
    assert.throws(() => checkSafe('^(a|aa)+$', 'u'), /exponential/);
    assert.throws(() => checkSafe('a.*b', 'u'), /quadratic time: the repetition near offset 1 can start matching at many positions/);
    assert.throws(() => checkSafe('^\\d+\\.?\\d+$', 'u'), /quadratic time: the repetitions near offset 1 and offset 7/);
    assert.throws(() => checkSafe('(a)\\1', 'u'), /backreference at offset 3/);
    assert.throws(() => checkSafe('x(?=.*y)', 'u'), /lookaround at offset 1/);
  });
});
