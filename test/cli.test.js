// The command line as an operator uses it: the compiled CLI on plain node, exit
// codes, config errors with file:line:col and YAML path, signals and shutdown.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { closed, eventually, openWs, wsUpstream, nextMessage, get } from './helpers.js';

const CLI = new URL('../dist/cli.js', import.meta.url).pathname;
const EXAMPLE = new URL('../examples/portcullis.yaml', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'portcullis-cli-'));

function run(args, opts = {}) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 20_000, ...opts });
}

function write(name, text) {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

test('--version prints the package version', () => {
  const r = run(['--version']);
  assert.equal(r.status, 0);
  assert.match(r.stdout.trim(), /^\d+\.\d+\.\d+$/);
});

test('--help names the commands', () => {
  const r = run(['--help']);
  assert.equal(r.status, 0);
  assert.match(r.stdout, /portcullis start -c FILE/);
  assert.match(r.stdout, /portcullis validate -c FILE/);
});

test('validate accepts the bundled example config: exit 0', () => {
  const r = run(['validate', '-c', EXAMPLE]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /valid/);
});

test('validate --config is the same as -c', () => {
  assert.equal(run(['validate', '--config', EXAMPLE]).status, 0);
});

test('a bad plugin attribute: exit 2 with file, line, column, YAML path, expected and found', () => {
  const file = write(
    'bad-plugin.yaml',
    `upstreams:
  - id: up
    nodes: { "127.0.0.1:1": 1 }
routes:
  - { id: a, uri: /a, upstream_id: up }
  - { id: b, uri: /b, upstream_id: up }
  - id: c
    uri: /c
    upstream_id: up
    plugins:
      block-words: { words: "spam" }
gateway:
  custom_plugins: [${new URL('../examples/plugins/block-words.js', import.meta.url).pathname}]
`,
  );
  const r = run(['validate', '-c', file]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, new RegExp(`${file}:11:\\d+ routes\\[2\\]\\.plugins\\.block-words\\.words: expected a non-empty list`));
  assert.match(r.stderr, /found the string "spam"/);
  assert.ok(!r.stderr.includes('    at '), 'no stack trace');
});

const cases = [
  ['a missing file', null, /cannot read config file: no such file/],
  ['an unknown plugin name', 'routes:\n  - { id: a, uri: /a, upstream: { nodes: { "127.0.0.1:1": 1 } }, plugins: { no-such-plugin: {} } }\n', /:2:\d+ routes\[0\]\.plugins\.no-such-plugin: unknown plugin "no-such-plugin"/],
  ['an unknown upstream id', 'routes:\n  - { id: a, uri: /a, upstream_id: ghost }\n', /:2:\d+ routes\[0\]\.upstream_id: unknown upstream id "ghost"/],
  ['a duplicate route id', 'upstreams:\n  - { id: up, nodes: { "127.0.0.1:1": 1 } }\nroutes:\n  - { id: a, uri: /a, upstream_id: up }\n  - { id: a, uri: /b, upstream_id: up }\n', /:5:\d+ routes\[1\]\.id: duplicate route id "a"/],
  ['an unreadable TLS key', 'gateway:\n  listen:\n    - { host: 127.0.0.1, port: 0, tls: { cert: ./nope.crt, key: ./nope.key } }\n', /gateway\.listen\[0\]\.tls\.(cert|key): .*(cannot read|no such file)/],
  ['an unknown key', 'routes:\n  - { id: a, uir: /a, upstream: { nodes: { "127.0.0.1:1": 1 } } }\n', /routes\[0\]\.uir: unknown key "uir"/],
  ['a YAML syntax error', 'routes: [\n', /YAML syntax error/],
  ['a route pattern the router refuses', 'routes:\n  - { id: a, uri: "/a/:x*", upstream: { nodes: { "127.0.0.1:1": 1 } } }\n', /routes\[0\]\.uri: .*"\*" cannot follow a parameter/],
  ['a zero handshake timeout', 'gateway:\n  handshake_timeout: 0\n', /gateway\.handshake_timeout: expected a number > 0, found 0/],
];
for (const [name, text, pattern] of cases) {
  test(`${name} is refused with its own message and exit code 2`, () => {
    const file = text === null ? join(dir, 'does-not-exist.yaml') : write(`${name.replace(/\W+/g, '-')}.yaml`, text);
    for (const cmd of ['validate', 'start']) {
      const r = run([cmd, '-c', file]);
      assert.equal(r.status, 2, `${cmd}: ${r.stderr}`);
      assert.match(r.stderr, pattern);
      assert.ok(!r.stderr.includes('    at '), 'no stack trace');
    }
  });
}

test('usage errors exit 2', () => {
  assert.equal(run([]).status, 2);
  assert.equal(run(['launch']).status, 2);
  assert.equal(run(['start']).status, 2);
  assert.equal(run(['validate', '-c', EXAMPLE, '--bogus']).status, 2);
});

test('npx portcullis runs the compiled CLI (bin entry)', () => {
  const out = execFileSync('npx', ['--no-install', 'portcullis', '--version'], {
    cwd: new URL('..', import.meta.url).pathname,
    encoding: 'utf8',
  });
  assert.match(out.trim(), /^\d+\.\d+\.\d+$/);
});

const children = new Set();
after(() => {
  for (const c of children) c.kill('SIGKILL');
});

async function startCli(file) {
  const child = spawn(process.execPath, [CLI, 'start', '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  child.stdout.resume();
  const port = await eventually(() => Number(/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr)?.[1]), { tries: 250 });
  assert.ok(port, `gateway did not start: ${stderr}`);
  return { child, port, stderr: () => stderr };
}

test('SIGTERM: WebSockets get 1001, SSE streams end, the process exits 0', async () => {
  const up = await wsUpstream();
  const http = await import('node:http');
  const sseServer = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('data: first\n\n');
  });
  await new Promise((r) => sseServer.listen(0, '127.0.0.1', r));
  const file = write(
    'run.yaml',
    `gateway:
  listen: [{ host: 127.0.0.1, port: 0 }]
  shutdown_timeout: 5
upstreams:
  - { id: up, nodes: { "127.0.0.1:${up.port}": 1 } }
  - { id: sse, nodes: { "127.0.0.1:${sseServer.address().port}": 1 } }
routes:
  - { id: ws, uri: /ws, enable_websocket: true, upstream_id: up }
  - { id: sse, uri: /sse, upstream_id: sse }
`,
  );
  const { child, port } = await startCli(file);
  const { ws } = await openWs(`ws://127.0.0.1:${port}/ws`);
  ws.send('ping');
  assert.equal(await nextMessage(ws), 'ping');
  const sse = await new Promise((resolve) => {
    http.get(`http://127.0.0.1:${port}/sse`, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.once('data', () => resolve({ res, body: () => body }));
    });
  });
  const sseEnded = once(sse.res, 'end');
  const wsClosed = closed(ws);
  child.kill('SIGTERM');
  assert.equal((await wsClosed).code, 1001);
  await sseEnded;
  assert.match(sse.body(), /data: first/);
  const [code] = await once(child, 'exit');
  assert.equal(code, 0);
  await up.close();
  sseServer.closeAllConnections();
  sseServer.close();
});

test('start refuses a port already in use with a clear message, exit 1', async () => {
  const net = await import('node:net');
  const blocker = net.createServer();
  await new Promise((r) => blocker.listen(0, '127.0.0.1', r));
  const file = write('busy.yaml', `gateway:\n  listen: [{ host: 127.0.0.1, port: ${blocker.address().port} }]\n`);
  const r = run(['start', '-c', file]);
  blocker.close();
  assert.equal(r.status, 1);
  assert.match(r.stderr, /address already in use/);
});

test('an HTTP request through the started CLI reaches the upstream', async () => {
  const up = await wsUpstream();
  const file = write('http.yaml', `gateway:\n  listen: [{ host: 127.0.0.1, port: 0 }]\nupstreams:\n  - { id: up, nodes: { "127.0.0.1:${up.port}": 1 } }\nroutes:\n  - { id: all, uri: /*, upstream_id: up }\n`);
  const { child, port } = await startCli(file);
  const r = await get(`http://127.0.0.1:${port}/hello`);
  assert.equal(r.status, 200);
  assert.equal(r.body, 'plain http\n');
  child.kill('SIGINT');
  const [code] = await once(child, 'exit');
  assert.equal(code, 0);
  await up.close();
});
