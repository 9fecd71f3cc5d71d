// The config loader: YAML with positions, ${ENV}, schema defaults, and precise errors.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { ConfigError, expandEnv, loadConfigFile, loadConfigText } from '../dist/config/index.js';
import { PluginRegistry } from '../dist/core/registry.js';

const here = dirname(fileURLToPath(import.meta.url));
const configs = join(here, 'fixtures', 'configs');
const INLINE = join(configs, 'inline.yaml'); // names inline text; never read

/** A limit-conn-like plugin whose schema has defaults, and whose init returns a state. */
const testLimit = {
  name: 'test-limit',
  version: '1.0.0',
  priority: 1003,
  schema: {
    type: 'object',
    additionalProperties: false,
    required: ['conn'],
    properties: {
      conn: { type: 'integer', minimum: 1 },
      burst: { type: 'integer', minimum: 0, default: 0 },
      key_type: { type: 'string', enum: ['var', 'var_combination'], default: 'var' },
    },
  },
  init(config, ctx) {
    if (config.conn === 13) throw new Error('conn 13 is unlucky');
    return { limit: config.conn + config.burst, configDir: ctx.configDir };
  },
  access() {},
};

/** An auth-like plugin: its config holds a secret. */
const testAuth = {
  name: 'test-auth',
  version: '1.0.0',
  priority: 2500,
  schema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      key: { type: 'string', minLength: 12 },
      header: { type: 'string', default: 'apikey' },
      whitelist: { type: 'array', items: { type: 'string' } },
      blacklist: { type: 'array', items: { type: 'string' } },
    },
    oneOf: ['whitelist', 'blacklist', 'key'].map((k) => ({ required: [k], properties: { [k]: true } })),
  },
  rewrite() {},
};

const registry = () => new PluginRegistry([testLimit, testAuth]);

/** Lines joined with \n, so that line N of the text is element N-1. */
const yaml = (...lines) => lines.join('\n') + '\n';

const load = (text, env = {}, reg = registry()) => loadConfigText(text, INLINE, { registry: reg, env });

/** The issues of a load that must fail; asserts it fails with a ConfigError. */
async function issuesOf(promise) {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${err?.constructor?.name}: ${err?.message}`);
    return err.issues;
  }
  assert.fail('the config loaded, but it should not have');
}

/** The one issue at `path`; asserts its line and that the message contains each fragment. */
function issueAt(issues, path, line, ...fragments) {
  const found = issues.filter((i) => i.path === path);
  assert.equal(found.length, 1, `one issue at "${path}", got:\n${issues.map((i) => `${i.line}:${i.column} ${i.path}: ${i.message}`).join('\n')}`);
  const issue = found[0];
  if (line !== undefined) assert.equal(issue.line, line, `line of ${path}: ${issue.message}`);
  for (const f of fragments) assert.ok(issue.message.includes(f), `"${issue.message}" should contain "${f}"`);
  return issue;
}

const minimal = (...routeLines) =>
  yaml('upstreams:', '  - id: up', '    nodes: { "127.0.0.1:7001": 1 }', 'routes:', ...routeLines);

describe('a valid config', () => {
  let config;
  before(async () => {
    config = await loadConfigFile(join(configs, 'full.yaml'), { registry: registry(), env: {} });
  });

  test('source is the absolute path of the file', () => {
    assert.equal(config.source, join(configs, 'full.yaml'));
  });

  test('gateway defaults are applied around what the file sets', () => {
    const g = config.gateway;
    assert.deepEqual(g.listen, [
      { host: '127.0.0.1', port: 9080 },
      { host: '0.0.0.0', port: 9081 },
    ]);
    assert.equal(g.real_ip_header, 'x-forwarded-for');
    assert.equal(g.client_header_timeout, 10);
    assert.equal(g.max_header_size, 16384);
    assert.equal(g.shutdown_timeout, 10);
    assert.deepEqual(g.websocket, { idle_timeout: 300, max_payload: 65536, max_fragments: 1024, ping_interval: 0, extensions: 'passthrough', max_buffered: 1048576, stall_timeout: 30, permessage_deflate: false });
    assert.deepEqual(g.sse, { heartbeat_interval: 0, max_duration: 0 });
    assert.deepEqual(g.log, { level: 'info', destination: join(configs, 'logs', 'portcullis.log'), access_log: true });
    assert.deepEqual(g.trusted_proxies, ['10.0.0.0/8', '192.168.1.1', 'fd00::/8']);
    assert.deepEqual(g.custom_plugins, [join(here, 'fixtures', 'plugins', 'echo.js')]);
  });

  test('upstream node maps become lists, with upstream defaults', () => {
    const [chat, feed] = config.upstreams;
    assert.deepEqual(chat.nodes, [
      { host: '127.0.0.1', port: 7001, weight: 1 },
      { host: '127.0.0.1', port: 7002, weight: 3 },
      { host: '::1', port: 7003, weight: 0 },
    ]);
    assert.equal(chat.type, 'roundrobin');
    assert.equal(chat.scheme, 'http');
    assert.equal(chat.pass_host, 'pass');
    assert.deepEqual(chat.timeout, { connect: 6, send: 6, read: 60 });
    assert.deepEqual(chat.keepalive_pool, { size: 320, idle_timeout: 60 });
    assert.deepEqual(chat.tls, { verify: true });
    assert.deepEqual(feed.nodes, [{ host: 'feed.internal', port: 8443, weight: 1 }]);
    assert.equal(feed.upstream_host, 'feed.example.com');
    assert.deepEqual(feed.timeout, { connect: 60, send: 60, read: 60 });
  });

  test('routes: uri -> uris, hosts lowercased, upstream resolved, websocket settings merged', () => {
    const [chat, events] = config.routes;
    assert.deepEqual(chat.uris, ['/ws/chat/*']);
    assert.deepEqual(chat.hosts, ['chat.example.com']);
    assert.deepEqual(chat.methods, ['GET']);
    assert.equal(chat.enable_websocket, true);
    assert.equal(chat.priority, 0);
    assert.equal(chat.upstream, config.upstreams[0]);
    assert.deepEqual(chat.websocket, { idle_timeout: 30, max_payload: 65536, max_fragments: 1024, ping_interval: 0, extensions: 'passthrough', max_buffered: 1048576, stall_timeout: 30, permessage_deflate: false });
    assert.deepEqual(chat.sse, { heartbeat_interval: 0, max_duration: 0 });

    assert.equal(events.id, '42');
    assert.deepEqual(events.uris, ['/events/:topic', '/events']);
    assert.deepEqual(events.hosts, []);
    assert.deepEqual(events.methods, []);
    assert.equal(events.enable_websocket, false);
    assert.equal(events.upstream.id, 'route:42');
    assert.deepEqual(events.upstream.nodes, [{ host: '127.0.0.1', port: 7100, weight: 1 }]);
    assert.equal(events.upstream.timeout.read, 60);
    assert.deepEqual(events.sse, { heartbeat_interval: 15, max_duration: 0 });
    assert.equal(events.websocket.max_payload, 65536);
  });

  test('plugin configs get their defaults, instances carry init() state, highest priority first', () => {
    const [chat, events] = config.routes;
    assert.deepEqual(chat.plugins['test-limit'], { conn: 10, burst: 0, key_type: 'var' });
    assert.deepEqual(chat.plugins['fixture-echo'], { prefix: '> ' });
    assert.deepEqual(chat.instances.map((i) => i.name), ['test-limit', 'fixture-echo']);
    const limit = chat.instances[0];
    assert.equal(limit.def, testLimit);
    assert.deepEqual(limit.config, { conn: 10, burst: 0, key_type: 'var' });
    assert.deepEqual(limit.state, { limit: 10, configDir: configs });
    // No init(): the state is the config itself.
    assert.equal(chat.instances[1].state, chat.instances[1].config);
    assert.deepEqual(events.instances[0].state, { limit: 7, configDir: configs });
  });

  test('consumers and global rules', () => {
    assert.equal(config.consumers.length, 1);
    assert.equal(config.consumers[0].username, 'alice');
    assert.deepEqual(config.consumers[0].plugins, { 'test-auth': { key: 'alice-key-123456', header: 'apikey' } });
    // test-auth declares no consumerSchema, so on a consumer it is an override instance.
    assert.deepEqual(config.consumers[0].instances.map((i) => i.name), ['test-auth']);
    assert.equal(config.global_rules.length, 1);
    assert.equal(config.global_rules[0].id, 'everywhere');
    assert.deepEqual(config.global_rules[0].plugins, { 'test-limit': { conn: 1000, burst: 0, key_type: 'var' } });
    assert.equal(config.global_rules[0].instances[0].name, 'test-limit');
  });

  test('a file with only routes gets every default', async () => {
    const c = await load(minimal('  - { id: a, uri: /, upstream_id: up }'));
    assert.deepEqual(c.gateway.listen, [{ host: '127.0.0.1', port: 9080 }]);
    assert.deepEqual(c.consumers, []);
    assert.deepEqual(c.global_rules, []);
    assert.deepEqual(c.routes[0].plugins, {});
    assert.deepEqual(c.routes[0].instances, []);
  });
});

describe('${ENV} expansion', () => {
  test('values, defaults, escapes, and numbers where the schema wants them', async () => {
    const text = yaml(
      'gateway:',
      '  listen:',
      '    - host: ${HOST}',
      '      port: ${PORT:-9080}',
      '    - host: 127.0.0.1',
      '      port: ${ADMIN_PORT:-9180}',
      '  handshake_timeout: ${HS_TIMEOUT}',
      'upstreams:',
      '  - id: up',
      '    nodes: { "127.0.0.1:7001": 1 }',
      '    pass_host: rewrite',
      '    upstream_host: ${NUMERIC_HOST}',
      'routes:',
      '  - id: a',
      '    uri: /price/$${CURRENCY}',
      '    upstream_id: up',
      '    enable_websocket: ${WS}',
    );
    const c = await load(text, { HOST: '0.0.0.0', ADMIN_PORT: '9443', HS_TIMEOUT: '2.5', NUMERIC_HOST: '12345', WS: 'true' });
    assert.deepEqual(c.gateway.listen, [
      { host: '0.0.0.0', port: 9080 },
      { host: '127.0.0.1', port: 9443 },
    ]);
    assert.equal(c.gateway.handshake_timeout, 2.5);
    // A string position keeps a numeric-looking value as a string.
    assert.equal(c.upstreams[0].upstream_host, '12345');
    assert.deepEqual(c.routes[0].uris, ['/price/${CURRENCY}']);
    assert.equal(c.routes[0].enable_websocket, true);
  });

  test('keys are left alone', async () => {
    const issues = await issuesOf(load(yaml('upstreams:', '  - id: up', '    nodes: { "${UP_HOST}:7001": 1 }'), { UP_HOST: 'x' }));
    issueAt(issues, 'upstreams[0].nodes["${UP_HOST}:7001"]', 3, 'expected a node as "host:port"');
  });

  test('an unset variable without a default: an issue naming it and the path', async () => {
    const text = yaml('gateway:', '  log:', '    destination: ${LOG_FILE}', '  listen:', '    - port: ${PORT}', '  keepalive_timeout: -1');
    const issues = await issuesOf(load(text, { SOME_SECRET: 'do-not-print' }));
    assert.equal(issues.length, 3);
    issueAt(issues, 'gateway.keepalive_timeout', 6, 'expected a number > 0');
    const i = issueAt(issues, 'gateway.log.destination', 3, 'environment variable LOG_FILE is not set');
    assert.equal(i.column, 18);
    issueAt(issues, 'gateway.listen[0].port', 5, 'PORT is not set');
    assert.ok(!issues.some((x) => x.message.includes('do-not-print')));
  });

  test('a wrong value from the environment is reported without printing it', async () => {
    const issues = await issuesOf(load(yaml('gateway:', '  listen:', '    - port: ${PORT}'), { PORT: 'nine-thousand' }));
    const i = issueAt(issues, 'gateway.listen[0].port', 3, 'expected an integer between 0 and 65535', 'from environment variable PORT');
    assert.ok(!i.message.includes('nine-thousand'));
  });

  test('a malformed reference is an issue', async () => {
    const issues = await issuesOf(load(yaml('gateway:', '  log:', '    destination: "${bad name}"')));
    issueAt(issues, 'gateway.log.destination', 3, 'malformed environment reference');
  });

  test('expandEnv on its own', () => {
    const env = { A: 'a', EMPTY: '' };
    assert.equal(expandEnv('x${A}y', env).value, 'xay');
    assert.equal(expandEnv('${EMPTY:-d}', env).value, 'd');
    assert.equal(expandEnv('${EMPTY}', env).value, '');
    assert.equal(expandEnv('$${A} $A $', env).value, '${A} $A $');
    assert.deepEqual(expandEnv('${NOPE}', env).missing, ['NOPE']);
    assert.deepEqual(expandEnv('${A}${B:-b}', env).vars, ['A', 'B']);
    assert.equal(expandEnv('${1X}', env).malformed, '${1X}');
  });
});

describe('reading and parsing', () => {
  test('a missing file', async () => {
    const file = join(configs, 'does-not-exist.yaml');
    const issues = await issuesOf(loadConfigFile(file, { registry: registry() }));
    const i = issueAt(issues, '', undefined, 'cannot read config file: no such file', file);
    assert.equal(i.line, undefined);
  });

  test('a YAML syntax error has its line and column', async () => {
    const issues = await issuesOf(load(yaml('routes:', '  - id: a', '    uri: /a', '     upstream_id: up')));
    assert.equal(issues.length, 1);
    issueAt(issues, '', 3, 'YAML syntax error: ');
    assert.equal(issues[0].column, 10);
  });

  test('a duplicate mapping key is an error at the second key', async () => {
    const issues = await issuesOf(load(yaml('routes:', '  - id: a', '    uri: /a', '    uri: /b')));
    const i = issueAt(issues, 'routes[0].uri', 4, 'duplicate key "uri"');
    assert.equal(i.column, 5);
  });

  test('an empty file, and a file of comments', async () => {
    for (const text of ['', '# nothing here\n']) {
      const issues = await issuesOf(load(text));
      issueAt(issues, '', 1, 'the config file is empty');
    }
  });

  test('a top level that is not a mapping', async () => {
    const issues = await issuesOf(load(yaml('- a', '- b')));
    issueAt(issues, '', 1, 'expected a mapping', 'found a list of 2 items');
  });
});

describe('schema errors', () => {
  test('unknown key: at the key, with the allowed keys and a suggestion', async () => {
    const issues = await issuesOf(load(minimal('  - id: a', '    uir: /a', '    upstream_id: up')));
    const i = issueAt(issues, 'routes[0].uir', 6, 'unknown key "uir"', 'expected one of: id, name, desc, uri, uris', 'did you mean "uri"?');
    assert.equal(i.column, 5);
    assert.equal(i.found, '"uir"');
    // ... and the route also lacks uri/uris.
    issueAt(issues, 'routes[0]', 5, 'missing required key "uri" (or "uris")');
  });

  test('wrong type: expected vs found', async () => {
    const issues = await issuesOf(load(yaml('gateway:', '  listen:', '    - { host: 127.0.0.1, port: ten }', '  max_header_size: 12')));
    const port = issueAt(issues, 'gateway.listen[0].port', 3, 'expected an integer between 0 and 65535, found the string "ten"');
    assert.equal(port.column, 32);
    assert.equal(port.expected, 'an integer between 0 and 65535');
    assert.equal(port.found, 'the string "ten"');
    issueAt(issues, 'gateway.max_header_size', 4, 'expected an integer between 1024 and 1048576, found 12');
  });

  test('enum', async () => {
    const issues = await issuesOf(load(yaml('upstreams:', '  - id: up', '    type: chash', '    nodes: { "a:1": 1 }')));
    issueAt(issues, 'upstreams[0].type', 3, 'expected one of roundrobin, found "chash"');
  });

  test('missing required key: at the parent mapping', async () => {
    const issues = await issuesOf(load(yaml('upstreams:', '  - nodes: { "a:1": 1 }', '    scheme: http')));
    const i = issueAt(issues, 'upstreams[0]', 2, 'missing required key "id"');
    assert.equal(i.column, 5);
  });

  test('numbers: minimum and exclusive minimum', async () => {
    const issues = await issuesOf(
      load(yaml('gateway:', '  shutdown_timeout: -1', 'upstreams:', '  - id: up', '    nodes: { "a:1": 1 }', '    timeout: { connect: 0 }')),
    );
    issueAt(issues, 'gateway.shutdown_timeout', 2, 'expected a number >= 0, found -1');
    issueAt(issues, 'upstreams[0].timeout.connect', 6, 'expected a number > 0, found 0');
  });

  test('nodes: one message for a value of neither form', async () => {
    const issues = await issuesOf(load(yaml('upstreams:', '  - id: up', '    nodes: "127.0.0.1:80"')));
    issueAt(issues, 'upstreams[0].nodes', 3, 'expected a mapping or a non-empty list, found the string "127.0.0.1:80"');
    assert.equal(issues.length, 1);
  });

  test('nodes: the errors of the form that was meant', async () => {
    const issues = await issuesOf(load(yaml('upstreams:', '  - id: up', '    nodes:', '      - { host: a, port: http }')));
    issueAt(issues, 'upstreams[0].nodes[0].port', 4, 'expected an integer between 1 and 65535, found the string "http"');
    assert.equal(issues.length, 1);
  });

  test('bad node addresses and all-zero weights', async () => {
    const issues = await issuesOf(load(yaml('upstreams:', '  - id: up', '    nodes: { "::1:80": 0, "a:99999": 0, "b:80": 0 }')));
    issueAt(issues, 'upstreams[0].nodes["::1:80"]', 3, 'expected a node as "host:port" (IPv6 as "[::1]:80")');
    issueAt(issues, 'upstreams[0].nodes["a:99999"]', 3, 'found "a:99999"');
    issueAt(issues, 'upstreams[0].nodes', 3, 'at least one node with a weight above 0');
  });

  test('issues are sorted by line and format() prints FILE:LINE:COL PATH: message', async () => {
    const text = yaml('gateway:', '  real_ip_header: x-real-ip', '  log: { level: loud }', 'routes:', '  - id: 1');
    let error;
    try {
      await load(text);
    } catch (err) {
      error = err;
    }
    assert.ok(error instanceof ConfigError);
    assert.equal(error.code, 'ERR_CONFIG_INVALID');
    assert.equal(error.file, INLINE);
    assert.deepEqual(error.issues.map((i) => i.line), [2, 3, 5, 5]);
    const lines = error.format().split('\n');
    assert.equal(lines.length, 4);
    assert.equal(lines[0], `${INLINE}:2:19 gateway.real_ip_header: expected one of x-forwarded-for, forwarded, found "x-real-ip"`);
    for (const l of lines) assert.match(l, /^.+:\d+:\d+ \S+: .+$/);
    assert.ok(error.message.includes(lines[1]));
    assert.ok(!error.message.includes('    at '), 'no stack trace in the message');
  });
});

describe('checks beyond the schema', () => {
  test('duplicate ids point at the second one and name the first', async () => {
    const text = yaml(
      'upstreams:',
      '  - { id: up, nodes: { "a:1": 1 } }',
      '  - { id: up, nodes: { "b:1": 1 } }',
      'routes:',
      '  - { id: r, uri: /a, upstream_id: up }',
      '  - { id: r, uri: /b, upstream_id: up }',
      'consumers:',
      '  - username: bob',
      '  - username: bob',
      'global_rules:',
      '  - { id: g }',
      '  - { id: g }',
    );
    const issues = await issuesOf(load(text));
    issueAt(issues, 'upstreams[1].id', 3, 'duplicate upstream id "up" (first defined at upstreams[0], line 2)');
    issueAt(issues, 'routes[1].id', 6, 'duplicate route id "r" (first defined at routes[0], line 5)');
    issueAt(issues, 'consumers[1].username', 9, 'duplicate consumer username "bob" (first defined at consumers[0], line 8)');
    issueAt(issues, 'global_rules[1].id', 12, 'duplicate global rule id "g" (first defined at global_rules[0], line 11)');
  });

  test('unknown upstream id lists the known ones', async () => {
    const issues = await issuesOf(load(minimal('  - id: a', '    uri: /a', '    upstream_id: uq')));
    const i = issueAt(issues, 'routes[0].upstream_id', 7, 'unknown upstream id "uq" (known upstream ids: up)', 'did you mean "up"?');
    assert.equal(i.column, 18);
  });

  test('a route needs exactly one of upstream_id and upstream, and of uri and uris', async () => {
    const issues = await issuesOf(
      load(minimal('  - id: a', '    uri: /a', '    uris: [/b]', '  - id: b', '    uri: /b', '    upstream_id: up', '    upstream: { nodes: { "a:1": 1 } }', '  - { id: c, uri: /c }')),
    );
    issueAt(issues, 'routes[0].uris', 7, 'give either "uri" or "uris", not both');
    issueAt(issues, 'routes[0]', 5, 'missing required key "upstream_id"');
    issueAt(issues, 'routes[1].upstream', 11, 'give either "upstream_id" or "upstream", not both');
    issueAt(issues, 'routes[2]', 12, 'missing required key "upstream_id"');
  });

  test('route paths and hosts', async () => {
    const issues = await issuesOf(
      load(minimal('  - id: a', '    uris: [ws/chat, /a*/b, /x/:1st]', '    hosts: [example.com, "*.ok.example.com", "bad host"]', '    upstream_id: up')),
    );
    issueAt(issues, 'routes[0].uris[0]', 6, 'expected a path starting with "/", found "ws/chat"');
    issueAt(issues, 'routes[0].uris[1]', 6, '"*" only as its last character');
    issueAt(issues, 'routes[0].uris[2]', 6, '":name" segments');
    issueAt(issues, 'routes[0].hosts[2]', 7, 'expected a host name such as example.com or *.example.com, found "bad host"');
    assert.equal(issues.length, 4);
  });

  test('trusted_proxies must be addresses or CIDRs', async () => {
    const issues = await issuesOf(load(yaml('gateway:', '  trusted_proxies:', '    - 10.0.0.0/8', '    - 10.0.0.0/33', '    - localhost')));
    issueAt(issues, 'gateway.trusted_proxies[1]', 4, 'expected an IPv4/IPv6 address or CIDR', 'found "10.0.0.0/33"');
    issueAt(issues, 'gateway.trusted_proxies[2]', 5, 'found "localhost"');
  });

  test('pass_host rewrite needs upstream_host', async () => {
    const issues = await issuesOf(load(yaml('upstreams:', '  - id: up', '    nodes: { "a:1": 1 }', '    pass_host: rewrite')));
    issueAt(issues, 'upstreams[0]', 2, 'missing required key "upstream_host" (required when pass_host is "rewrite")');
  });
});

describe('plugins', () => {
  test('unknown plugin lists the known names', async () => {
    const issues = await issuesOf(load(minimal('  - id: a', '    uri: /a', '    upstream_id: up', '    plugins:', '      test-limt: { conn: 1 }')));
    const i = issueAt(issues, 'routes[0].plugins.test-limt', 9, 'unknown plugin "test-limt" (known plugins: test-auth, test-limit)', 'did you mean "test-limit"?');
    assert.equal(i.column, 7);
  });

  test('a plugin config error has the full path, line and expected/found', async () => {
    const issues = await issuesOf(
      load(minimal('  - id: a', '    uri: /a', '    upstream_id: up', '    plugins:', '      test-limit:', '        conn: 0', '        extra: 1')),
    );
    issueAt(issues, 'routes[0].plugins.test-limit.conn', 10, 'expected an integer >= 1, found 0');
    issueAt(issues, 'routes[0].plugins.test-limit.extra', 11, 'unknown key "extra" (expected one of: conn, burst, key_type)');
  });

  test('a plugin config that is not a mapping', async () => {
    const issues = await issuesOf(load(minimal('  - id: a', '    uri: /a', '    upstream_id: up', '    plugins: { test-limit: 5 }')));
    issueAt(issues, 'routes[0].plugins.test-limit', 8, 'expected a mapping (the config of plugin "test-limit"), found the number 5');
  });

  test('defaults are applied per route: a shared anchor does not leak between routes', async () => {
    const text = minimal(
      '  - id: a',
      '    uri: /a',
      '    upstream_id: up',
      '    plugins: &shared',
      '      test-limit: { conn: 1 }',
      '  - id: b',
      '    uri: /b',
      '    upstream_id: up',
      '    plugins: *shared',
      '  - id: c',
      '    uri: /c',
      '    upstream_id: up',
      '    plugins:',
      '      test-limit: { conn: 1, burst: 4, key_type: var_combination }',
    );
    const c = await load(text);
    const [a, b, cc] = c.routes.map((r) => r.plugins['test-limit']);
    assert.deepEqual(a, { conn: 1, burst: 0, key_type: 'var' });
    assert.deepEqual(b, { conn: 1, burst: 0, key_type: 'var' });
    assert.notEqual(a, b);
    assert.deepEqual(cc, { conn: 1, burst: 4, key_type: 'var_combination' });
    assert.equal(c.routes[2].instances[0].state.limit, 5);
  });

  test('an error inside an aliased config points at the alias', async () => {
    const text = minimal(
      '  - id: a',
      '    uri: /a',
      '    upstream_id: up',
      '    plugins: { test-limit: &bad { conn: 2, burst: -1 } }',
      '  - id: b',
      '    uri: /b',
      '    upstream_id: up',
      '    plugins: { test-limit: *bad }',
    );
    const issues = await issuesOf(load(text));
    issueAt(issues, 'routes[0].plugins.test-limit.burst', 8, 'expected an integer >= 0, found -1');
    issueAt(issues, 'routes[1].plugins.test-limit.burst', 8);
  });

  test('init() refusing a config is an issue at the plugin, with its message', async () => {
    const issues = await issuesOf(load(minimal('  - id: a', '    uri: /a', '    upstream_id: up', '    plugins:', '      test-limit: { conn: 13 }')));
    const i = issueAt(issues, 'routes[0].plugins.test-limit', 9, 'plugin "test-limit" refused this config: conn 13 is unlucky');
    assert.ok(!i.message.includes('    at '));
  });

  test('oneOf in a plugin schema gives one useful message', async () => {
    const text = yaml('consumers:', '  - username: bob', '    plugins:', '      test-auth: { header: x-key }');
    const issues = await issuesOf(load(text));
    assert.equal(issues.length, 1);
    issueAt(issues, 'consumers[0].plugins.test-auth', 4, 'missing required key: expected "whitelist" or "blacklist" or "key"');
  });

  test('oneOf: a config that matches two forms', async () => {
    const text = yaml('consumers:', '  - username: bob', '    plugins:', '      test-auth: { key: long-enough-key, whitelist: [a] }');
    const issues = await issuesOf(load(text));
    issueAt(issues, 'consumers[0].plugins.test-auth', 4, 'expected exactly one of the allowed forms, found a value that matches a mapping with key "whitelist" and a mapping with key "key"');
  });

  test('consumer plugin configs are validated, and secrets are never printed', async () => {
    const text = yaml(
      'consumers:',
      '  - username: bob',
      '    plugins:',
      '      test-auth: { key: hunter2 }',
      '  - username: "carol smith"',
      '    plugins:',
      '      test-auth: { key: [hunter3-but-longer] , whitelist: [a], password: sw0rdfish }',
    );
    const issues = await issuesOf(load(text));
    const short = issueAt(issues, 'consumers[0].plugins.test-auth.key', 4, 'expected a string of at least 12 characters, found a string (hidden)');
    assert.equal(short.found, 'a string (hidden)');
    issueAt(issues, 'consumers[1].username', 5, 'expected a string matching ^[a-zA-Z0-9_-]+$, found "carol smith"');
    issueAt(issues, 'consumers[1].plugins.test-auth.key', 7, 'expected a string of at least 12 characters, found a list of 1 item');
    issueAt(issues, 'consumers[1].plugins.test-auth.password', 7, 'unknown key "password"');
    const all = issues.map((i) => `${i.message} ${i.expected ?? ''} ${i.found ?? ''}`).join('\n');
    for (const secret of ['hunter2', 'hunter3', 'sw0rdfish']) assert.ok(!all.includes(secret), `${secret} printed`);
  });

  test('custom_plugins: a module is loaded before plugin configs are checked', async () => {
    const reg = registry();
    const text = yaml(
      'gateway:',
      '  custom_plugins: [../plugins/echo.js]',
      ...minimal('  - id: a', '    uri: /a', '    upstream_id: up', '    plugins: { fixture-echo: { prefix: "$ " } }').trimEnd().split('\n'),
    );
    const c = await load(text, {}, reg);
    assert.ok(reg.get('fixture-echo'));
    assert.deepEqual(c.routes[0].plugins['fixture-echo'], { prefix: '$ ' });
  });

  test('custom_plugins: a missing module is an issue at its entry', async () => {
    const issues = await issuesOf(load(yaml('gateway:', '  custom_plugins:', '    - ../plugins/echo.js', '    - ./nope/missing.js')));
    issueAt(issues, 'gateway.custom_plugins[1]', 4, 'cannot load custom plugin', 'module not found', join(configs, 'nope', 'missing.js'));
  });
});

describe('TLS files', () => {
  let dir;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-config-'));
    for (const name of ['a', 'b']) {
      execFileSync('/usr/bin/openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
        '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.crt`)], { stdio: 'ignore' });
    }
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const withTls = (cert, key) =>
    yaml('gateway:', '  listen:', '    - { host: 127.0.0.1, port: 9080 }', `    - { host: 127.0.0.1, port: 9443, tls: { cert: ${cert}, key: ${key} } }`);

  const loadIn = (text) => {
    const file = join(dir, 'config.yaml');
    writeFileSync(file, text);
    return loadConfigFile(file, { registry: registry(), env: {} });
  };

  test('a valid self-signed pair is read, with paths resolved against the config dir', async () => {
    const c = await loadIn(withTls('./a.crt', './a.key'));
    const tls = c.gateway.listen[1].tls;
    assert.equal(tls.cert, join(dir, 'a.crt'));
    assert.equal(tls.key, join(dir, 'a.key'));
    assert.ok(Buffer.isBuffer(tls.certPem) && tls.certPem.toString().includes('BEGIN CERTIFICATE'));
    assert.ok(Buffer.isBuffer(tls.keyPem) && tls.keyPem.length > 0);
    assert.equal(c.gateway.listen[0].tls, undefined);
  });

  test('an unreadable key file', async () => {
    const issues = await issuesOf(loadIn(withTls('./a.crt', './missing.key')));
    issueAt(issues, 'gateway.listen[1].tls.key', 4, 'cannot read TLS key file: no such file', join(dir, 'missing.key'));
  });

  test('a key that does not match the certificate', async () => {
    const issues = await issuesOf(loadIn(withTls('./a.crt', './b.key')));
    issueAt(issues, 'gateway.listen[1].tls.key', 4, 'the TLS key does not match the certificate');
  });

  test('a certificate that is not one', async () => {
    const issues = await issuesOf(loadIn(withTls('./a.key', './a.key')));
    issueAt(issues, 'gateway.listen[1].tls.cert', 4, 'expected a PEM certificate');
  });

  test('upstream CA bundle is read; a missing one is an issue', async () => {
    const ok = await loadIn(yaml('upstreams:', '  - id: up', '    nodes: { "a:443": 1 }', '    scheme: https', '    tls: { ca: ./a.crt, servername: a.test }'));
    assert.equal(ok.upstreams[0].tls.ca, join(dir, 'a.crt'));
    assert.ok(Buffer.isBuffer(ok.upstreams[0].tls.caPem));
    assert.equal(ok.upstreams[0].tls.verify, true);
    assert.equal(ok.upstreams[0].tls.servername, 'a.test');
    const issues = await issuesOf(loadIn(yaml('upstreams:', '  - id: up', '    nodes: { "a:443": 1 }', '    tls: { ca: ./nope.crt }')));
    issueAt(issues, 'upstreams[0].tls.ca', 4, 'cannot read CA file: no such file');
  });
});

describe('only ConfigError escapes', () => {
  test('an unexpected failure is wrapped', async () => {
    const issues = await issuesOf(loadConfigText(minimal('  - { id: a, uri: /, upstream_id: up, plugins: { x: {} } }'), INLINE, { registry: {}, env: {} }));
    issueAt(issues, '', undefined, 'internal error while loading the config');
  });

  test('an init() that throws a non-Error', async () => {
    const odd = { ...testLimit, name: 'odd', init() { throw 'just a string'; } };
    const reg = new PluginRegistry([odd]);
    const issues = await issuesOf(load(minimal('  - { id: a, uri: /, upstream_id: up, plugins: { odd: { conn: 1 } } }'), {}, reg));
    issueAt(issues, 'routes[0].plugins.odd', 5, 'refused this config: just a string');
  });
});

describe('consumer groups', () => {
  test('a credential on a consumer group is refused: it identifies one consumer', async () => {
    const { PluginRegistry, loadConfigText } = await import('../dist/index.js');
    const registry = new PluginRegistry([
      {
        name: 'cred-auth',
        version: '1.0.0',
        priority: 2500,
        schema: { type: 'object' },
        consumerSchema: { type: 'object', properties: { key: { type: 'string' } }, required: ['key'], additionalProperties: false },
        rewrite() {},
      },
    ]);
    const text = 'consumer_groups:\n  - id: g\n    plugins:\n      cred-auth: { key: abc }\nconsumers:\n  - { username: a, group_id: g, plugins: { cred-auth: { key: k } } }\n  - { username: b, group_id: nope }\n';
    await assert.rejects(loadConfigText(text, '/tmp/c.yaml', { registry }), (err) => {
      const byPath = Object.fromEntries(err.issues.map((i) => [i.path, i]));
      assert.match(byPath['consumer_groups[0].plugins.cred-auth'].message, /belongs on a consumer, not on a consumer group/);
      assert.equal(byPath['consumer_groups[0].plugins.cred-auth'].line, 4);
      assert.match(byPath['consumers[1].group_id'].message, /unknown consumer group "nope"/);
      assert.equal(Object.keys(byPath).length, 2, 'the credential on a consumer is valid');
      return true;
    });
  });
});
