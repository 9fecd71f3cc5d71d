// `portcullis audit -c FILE`: every rule on the deliberately insecure example, the bundled example
// clean, the text / json / sarif outputs, exit codes and --fail-on, and no secret in any output.
// The CLI runs as an operator runs it (dist/cli.js on plain node); rule details run in process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRegistry, loadConfigText } from '../dist/index.js';
import { RULES, auditConfig, formatJson, formatSarif, formatText } from '../dist/audit/index.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'dist/cli.js');
const INSECURE = 'examples/insecure.yaml';
const BUNDLED = 'examples/portcullis.yaml';
const BUNDLED_ACCEPTED = 'examples/portcullis.audit-accepted.yaml';
const dir = mkdtempSync(join(tmpdir(), 'portcullis-audit-'));

const runs = new Map();
/**
 * The CLI from the repository root, so that relative paths are as an operator types them:
 * { status, stdout, stderr }. The same command gives the same answer, so each runs once, and
 * they all start at once (prewarm below): the machine is small and shared.
 */
function run(args, env = {}) {
  const key = JSON.stringify([args, env]);
  let r = runs.get(key);
  if (!r) {
    r = slot().then(
      () =>
        new Promise((resolve) => {
          execFile(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 30_000, env: { ...process.env, ...env } }, (err, stdout, stderr) => {
            free();
            resolve({ status: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
          });
        }),
    );
    runs.set(key, r);
  }
  return r;
}

// At most 4 processes at a time.
let active = 0;
const waiting = [];
function slot() {
  if (active < 4) {
    active++;
    return Promise.resolve();
  }
  return new Promise((resolve) => waiting.push(resolve));
}
function free() {
  const next = waiting.shift();
  if (next) next();
  else active--;
}

function write(name, text) {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

/** Audit YAML text in process: the findings. */
async function audit(text, env = {}) {
  const config = await loadConfigText(text, '<inline>', { registry: createRegistry(), env });
  return auditConfig(config, text, 'inline.yaml').findings;
}

const only = (findings, rule) => findings.filter((f) => f.rule === rule);
const brief = (f) => [f.rule, f.route, f.path, f.severity];

const UP = 'upstreams:\n  - id: up\n    nodes: { "127.0.0.1:7001": 1 }\n';
/** A WebSocket route with everything the route rules want, plus `extra` plugin lines. */
function guarded(extra = '', routeExtra = '') {
  return `${UP}consumers:
  - username: u
    plugins:
      key-auth: { key: "\${U_KEY}" }
routes:
  - id: ws
    uri: /ws
    enable_websocket: true
    upstream_id: up
${routeExtra}    plugins:
      key-auth: { hide_credentials: true }
      origin-restriction: { allow_origins: [https://app.example.com] }
      limit-conn: { conn: 10, burst: 0, default_conn_delay: 0.1 }
      websocket-size-limit: { client_max_payload: 65536 }
${extra}`;
}
const ENV = { U_KEY: 'a-key-from-the-environment' };
const medium = write('medium.yaml', guarded().replace('      limit-conn: { conn: 10, burst: 0, default_conn_delay: 0.1 }\n', ''));
const clean = write('clean.yaml', guarded());
const bad = write('bad.yaml', `${UP}routes:\n  - id: a\n    uri: /a\n    upstream_id: nope\n`);
const USAGE = [
  ['audit'],
  ['audit', '-c', INSECURE, '--format', 'xml'],
  ['audit', '-c', INSECURE, '--fail-on', 'severe'],
  ['validate', '-c', INSECURE, '--format', 'json'],
  ['start', '-c', INSECURE, '--fail-on', 'low'],
  ['validate', '-c', INSECURE, '--accept', 'x.yaml'],
  ['audit', '-c', INSECURE, '--accept'],
];

// Every command the tests below ask about, started now and in parallel.
for (const [args, env] of [
  [['audit', '-c', INSECURE, '--format', 'json']],
  [['audit', '-c', INSECURE]],
  [['audit', '-c', INSECURE, '--format', 'sarif']],
  [['audit', '-c', INSECURE, '--fail-on', 'none']],
  [['audit', '-c', BUNDLED, '--format', 'json']],
  [['audit', '-c', medium, '--format', 'json'], ENV],
  [['audit', '-c', medium, '--fail-on', 'medium'], ENV],
  [['audit', '-c', clean, '--fail-on', 'info'], ENV],
  [['validate', '-c', bad]],
  [['audit', '-c', bad]],
  [['audit', '-c', join(dir, 'missing.yaml'), '--format', 'json']],
  [['--help']],
  ...USAGE.map((u) => [u]),
]) {
  void run(args, env);
}

// ---- the insecure example ---------------------------------------------------------------

test('insecure example: every rule fires, each with its rule, route, YAML path and severity', async () => {
  const r = await run(['audit', '-c', INSECURE, '--format', 'json']);
  assert.equal(r.status, 1, r.stderr);
  const out = JSON.parse(r.stdout);
  const got = out.findings.map(brief);
  const expected = [
    ['admin-exposed', 'admin', 'admin.listen.host', 'critical'],
    ['trusted-proxies-too-wide', 'gateway', 'gateway.trusted_proxies[0]', 'high'],
    ['deflate-without-size-limit', 'compressed', 'gateway.websocket.permessage_deflate', 'high'],
    ['jwt-weak-secret', 'consumer:mallory', 'consumers[1].plugins.jwt-auth.secret', 'high'],
    ['no-authentication', 'open-chat', 'routes[0]', 'high'],
    ['no-origin-restriction', 'cookie-chat', 'routes[1].plugins', 'high'],
    ['auth-fail-open', 'events', 'routes[3].plugins.forward-auth.allow_degradation', 'high'],
    ['handshake-cap-disabled', 'gateway', 'gateway.max_pending_handshakes_per_ip', 'medium'],
    ['metrics-exposed', 'metrics', 'metrics.listen.host', 'medium'],
    ['upstream-tls-unverified', 'upstream:feed', 'upstreams[1].tls.verify', 'medium'],
    ['jwt-exp-leeway', 'consumer:mallory', 'consumers[1].plugins.jwt-auth.lifetime_grace_period', 'medium'],
    ['no-limit-conn', 'open-chat', 'routes[0]', 'medium'],
    ['no-origin-restriction', 'open-chat', 'routes[0]', 'medium'],
    ['ws-no-message-limits', 'open-chat', 'routes[0]', 'medium'],
    ['credentials-in-query', 'cookie-chat', 'routes[1].plugins.jwt-auth', 'medium'],
    ['credentials-in-query', 'compressed', 'routes[2].plugins.key-auth', 'medium'],
    ['insecure-auth-endpoint', 'events', 'routes[3].plugins.forward-auth.uri', 'medium'],
    ['insecure-auth-endpoint', 'issuer-feed', 'routes[4].plugins.jwt-auth.jwks_uri', 'medium'],
    ['jwt-exp-leeway', 'issuer-feed', 'routes[4].plugins.jwt-auth.clock_skew', 'medium'],
    ['listener-without-tls', 'gateway', 'gateway.listen[0]', 'low'],
    ['revoke-channel-unsigned', 'gateway', 'gateway.redis', 'low'],
    ['secret-in-file', 'admin', 'admin.key', 'low'],
    ['listener-without-tls', 'metrics', 'metrics.listen', 'low'],
    ['secret-in-file', 'consumer:alice', 'consumers[0].plugins.key-auth.key', 'low'],
    ['secret-in-file', 'consumer:mallory', 'consumers[1].plugins.jwt-auth.secret', 'low'],
    ['ws-timeout-disabled', 'open-chat', 'routes[0].websocket.idle_timeout', 'low'],
    ['no-origin-restriction', 'compressed', 'routes[2].plugins', 'low'],
    ['no-origin-restriction', 'events', 'routes[3].plugins', 'low'],
    ['limit-degradation', 'events', 'routes[3].plugins.limit-conn.allow_degradation', 'low'],
    ['no-origin-restriction', 'issuer-feed', 'routes[4].plugins', 'low'],
    ['jwt-claims-ignored', 'cookie-chat', 'routes[1].plugins.jwt-auth.claims_to_verify', 'info'],
  ];
  const key = (b) => b.join(' ');
  assert.deepEqual(got.map(key).sort(), expected.map(key).sort());
  // The example demonstrates every rule of the catalogue.
  assert.deepEqual([...new Set(got.map((b) => b[0]))].sort(), RULES.map((r) => r.id).sort());
});

test('insecure example: each line is the line where the setting is written', async () => {
  const lines = readFileSync(join(ROOT, INSECURE), 'utf8').split('\n');
  const lineOf = (needle) => lines.findIndex((l) => l.includes(needle)) + 1;
  const { findings } = JSON.parse((await run(['audit', '-c', INSECURE, '--format', 'json'])).stdout);
  const at = (rule, route) => findings.find((f) => f.rule === rule && f.route === route).line;
  assert.equal(at('admin-exposed', 'admin'), lineOf('listen: { host: 0.0.0.0, port: 9180 }'));
  assert.equal(at('trusted-proxies-too-wide', 'gateway'), lineOf('trusted_proxies: [0.0.0.0/0]'));
  assert.equal(at('jwt-weak-secret', 'consumer:mallory'), lineOf('secret: short-hs256-secret'));
  assert.equal(at('no-authentication', 'open-chat'), lineOf('- id: open-chat'));
  assert.equal(at('auth-fail-open', 'events'), lineOf('allow_degradation: true'));
  assert.equal(at('ws-timeout-disabled', 'open-chat'), lineOf('websocket: { idle_timeout: 0 }'));
  assert.equal(at('deflate-without-size-limit', 'compressed'), lineOf('permessage_deflate: true'));
  for (const f of findings) assert.ok(Number.isInteger(f.line) && f.line >= 1, `${f.rule} ${f.path} has a line`);
});

test('text output: grouped by route, most severe first, a fix per finding, a summary line', async () => {
  const r = await run(['audit', '-c', INSECURE]);
  assert.equal(r.status, 1);
  const out = r.stdout;
  assert.match(out, /^portcullis audit: examples\/insecure\.yaml\n/);
  // The admin group (critical) comes first; inside a group, severities descend.
  const groups = out.split('\n\n').slice(1, -1);
  assert.match(groups[0], /^admin\n {2}CRITICAL admin-exposed/);
  const rank = { CRITICAL: 4, HIGH: 3, MEDIUM: 2, LOW: 1, INFO: 0 };
  for (const g of groups) {
    const sev = [...g.matchAll(/^ {2}([A-Z]+) /gm)].map((m) => rank[m[1]]);
    assert.deepEqual(sev, [...sev].sort((a, b) => b - a), `severities descend in:\n${g}`);
  }
  assert.match(out, /\nroute open-chat\n {2}HIGH {5}no-authentication +routes\[0\] \(line \d+\)\n {11}WebSocket route "open-chat" has no authentication plugin/);
  assert.match(out, /\n {11}fix: add key-auth, jwt-auth, basic-auth, openid-connect or forward-auth/);
  assert.match(out, /\n31 findings \(1 critical, 6 high, 12 medium, 11 low, 1 info\); 7 at or above --fail-on high\n$/);
});

test('json output: a stable object with every field of every finding', async () => {
  const out = JSON.parse((await run(['audit', '-c', INSECURE, '--format', 'json'])).stdout);
  assert.deepEqual(Object.keys(out), ['tool', 'version', 'file', 'fail_on', 'failed', 'summary', 'findings']);
  assert.equal(out.tool, 'portcullis audit');
  assert.match(out.version, /^\d+\.\d+\.\d+$/);
  assert.equal(out.file, INSECURE);
  assert.equal(out.fail_on, 'high');
  assert.equal(out.failed, true);
  assert.deepEqual(out.summary, { critical: 1, high: 6, medium: 12, low: 11, info: 1, total: 31 });
  for (const f of out.findings) {
    assert.deepEqual(Object.keys(f), ['rule', 'severity', 'route', 'path', 'line', 'message', 'fix']);
    for (const k of ['rule', 'severity', 'route', 'path', 'message', 'fix']) assert.equal(typeof f[k], 'string');
    assert.ok(f.message.length > 0 && f.fix.length > 0 && !f.fix.includes('\n'));
  }
  // Most severe first.
  const order = ['critical', 'high', 'medium', 'low', 'info'];
  const ranks = out.findings.map((f) => order.indexOf(f.severity));
  assert.deepEqual(ranks, [...ranks].sort((a, b) => a - b));
  // Stable: the order and wording come from the config alone (another process, the same list).
  const sarif = JSON.parse((await run(['audit', '-c', INSECURE, '--format', 'sarif'])).stdout);
  assert.deepEqual(sarif.runs[0].results.map((r) => [r.ruleId, r.properties.route, r.properties.path]), out.findings.map((f) => [f.rule, f.route, f.path]));
});

test('sarif output: SARIF 2.1.0 with the rule catalogue and located results', async () => {
  const r = await run(['audit', '-c', INSECURE, '--format', 'sarif']);
  assert.equal(r.status, 1);
  const sarif = JSON.parse(r.stdout);
  assert.equal(sarif.version, '2.1.0');
  assert.match(sarif.$schema, /sarif-2\.1\.0/);
  assert.equal(sarif.runs.length, 1);
  const [run0] = sarif.runs;
  const driver = run0.tool.driver;
  assert.equal(typeof driver.name, 'string');
  assert.equal(driver.rules.length, RULES.length);
  for (const rule of driver.rules) {
    assert.equal(typeof rule.id, 'string');
    assert.equal(typeof rule.shortDescription.text, 'string');
    assert.equal(typeof rule.help.text, 'string');
    assert.ok(['error', 'warning', 'note'].includes(rule.defaultConfiguration.level));
    assert.match(rule.properties['security-severity'], /^\d+\.\d$/);
  }
  const level = { critical: 'error', high: 'error', medium: 'warning', low: 'note', info: 'note' };
  const json = JSON.parse((await run(['audit', '-c', INSECURE, '--format', 'json'])).stdout);
  assert.equal(run0.results.length, json.findings.length);
  for (const [i, res] of run0.results.entries()) {
    const f = json.findings[i];
    assert.equal(res.ruleId, f.rule);
    assert.equal(driver.rules[res.ruleIndex].id, res.ruleId);
    assert.equal(res.level, level[f.severity]);
    assert.ok(res.message.text.startsWith(f.message));
    const loc = res.locations[0].physicalLocation;
    assert.equal(loc.artifactLocation.uri, INSECURE);
    assert.equal(loc.artifactLocation.uriBaseId, '%SRCROOT%');
    assert.equal(loc.region.startLine, f.line);
    assert.ok(Number.isInteger(loc.region.startLine) && loc.region.startLine >= 1);
  }
  assert.equal(run0.artifacts[0].location.uri, INSECURE);
});

test('sarif: a config given by absolute path is a file: URI', async () => {
  const file = join(ROOT, INSECURE);
  const sarif = JSON.parse(formatSarif({ file, findings: [{ rule: 'no-limit-conn', severity: 'medium', route: 'r', path: 'routes[0]', line: 3, message: 'm', fix: 'f' }] }, '0.0.0'));
  const loc = sarif.runs[0].results[0].locations[0].physicalLocation;
  assert.equal(loc.artifactLocation.uri, new URL(`../${INSECURE}`, import.meta.url).href);
  assert.equal(loc.artifactLocation.uriBaseId, undefined);
});

// ---- exit codes ---------------------------------------------------------------------------

test('the bundled example audits clean: with its accepted-risks file no finding is open at any level, and without it nothing above low', async () => {
  const r = await run(['audit', '-c', BUNDLED, '--accept', BUNDLED_ACCEPTED, '--fail-on', 'info', '--format', 'json']);
  assert.equal(r.status, 0, r.stdout);
  const out = JSON.parse(r.stdout);
  assert.deepEqual(out.findings, [], 'no open finding');
  assert.deepEqual(out.acceptances.unused, [], 'every accepted risk still exists (none is stale)');
  assert.equal(out.acceptances.accepted.length, 11);
  // What the accepted file holds is reviewed here: the open demo routes and the demo secrets, all low.
  const kinds = new Set(out.acceptances.accepted.map((f) => `${f.rule} ${f.severity}`));
  assert.deepEqual([...kinds].sort(), ['no-authentication low', 'secret-in-file low']);
  const plain = JSON.parse((await run(['audit', '-c', BUNDLED, '--format', 'json'])).stdout);
  assert.equal(plain.failed, false);
  assert.equal(plain.summary.critical + plain.summary.high + plain.summary.medium, 0);
  assert.equal((await run(['audit', '-c', BUNDLED, '--fail-on', 'medium'])).status, 0);
});

test('exit codes: 1 at or above --fail-on, 0 below it, 0 with --fail-on none', async () => {
  assert.equal((await run(['audit', '-c', INSECURE])).status, 1);
  assert.equal((await run(['audit', '-c', INSECURE, '--fail-on', 'none'])).status, 0);
  // Only a medium finding (no limit-conn): passes at high, fails at medium.
  const env = ENV;
  const json = JSON.parse((await run(['audit', '-c', medium, '--format', 'json'], env)).stdout);
  assert.deepEqual(json.findings.map((f) => [f.rule, f.severity]), [['no-limit-conn', 'medium']]);
  assert.equal((await run(['audit', '-c', medium, '--format', 'json'], env)).status, 0);
  assert.equal((await run(['audit', '-c', medium, '--fail-on', 'medium'], env)).status, 1);
  // Nothing at all.
  const r = await run(['audit', '-c', clean, '--fail-on', 'info'], env);
  assert.equal(r.status, 0, r.stdout);
  assert.match(r.stdout, /\nno findings\n$/);
});

test('exit 2: an invalid config gives the same errors as validate', async () => {
  const v = await run(['validate', '-c', bad]);
  const a = await run(['audit', '-c', bad]);
  assert.equal(a.status, 2);
  assert.equal(a.stdout, '');
  assert.equal(a.stderr, v.stderr);
  assert.match(a.stderr, /routes\[0\]\.upstream_id: unknown upstream id "nope"/);
  assert.equal((await run(['audit', '-c', join(dir, 'missing.yaml'), '--format', 'json'])).status, 2);
});

test('exit 2: usage errors', async () => {
  for (const args of USAGE) {
    const r = await run(args);
    assert.equal(r.status, 2, args.join(' '));
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^portcullis: /);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
  assert.match((await run(['audit', '-c', INSECURE, '--format', 'xml'])).stderr, /--format must be one of text, json, sarif/);
  assert.match((await run(['--help'])).stdout, /portcullis audit -c FILE/);
});

// ---- accepted risks (--accept) --------------------------------------------------------------

// The bundled example with its tunnel chat back at the default max_payload (16 MiB): one medium
// finding to accept. Written next to the other scratch files, its plugin paths made absolute.
const BUNDLED_MEDIUM = write(
  'bundled-medium.yaml',
  readFileSync(BUNDLED, 'utf8')
    .replace(/\n {4}websocket: \{ max_payload: 65536 \}\n/, '\n')
    .replaceAll('./plugins/', new URL('../examples/plugins/', import.meta.url).pathname),
);

const ACCEPT = write(
  'accept.yaml',
  `# reviewed risks of the bundled example
- rule: ws-no-message-limits
  route: chat
  reason: the open demo chat; messages are echoed, never parsed
- rule: no-authentication
  route: chat
  path: routes[0].plugins
  reason: meant to be reached from any private address
  expires: 2999-01-01
- rule: secret-in-file
  route: consumer:alice
  reason: expired review
  expires: 2001-01-01
- rule: no-authentication
  route: gone
  reason: the route was removed since
`,
);

test('--accept: accepted findings are set apart with their reason and do not count for --fail-on; stale and expired entries are reported', async () => {
  const plain = JSON.parse((await run(['audit', '-c', BUNDLED_MEDIUM, '--format', 'json'])).stdout);
  const mediums = plain.findings.filter((f) => f.severity === 'medium');
  assert.equal(mediums.length, 1, JSON.stringify(mediums));
  assert.equal((await run(['audit', '-c', BUNDLED_MEDIUM, '--fail-on', 'medium'])).status, 1);

  const j = await run(['audit', '-c', BUNDLED_MEDIUM, '--format', 'json', '--fail-on', 'medium', '--accept', ACCEPT]);
  const out = JSON.parse(j.stdout);
  assert.deepEqual(
    out.acceptances.accepted.map((f) => [f.rule, f.route, f.reason]),
    [
      ['ws-no-message-limits', 'chat', 'the open demo chat; messages are echoed, never parsed'],
      ['no-authentication', 'chat', 'meant to be reached from any private address'],
    ],
  );
  assert.equal(out.acceptances.accepted[1].expires, '2999-01-01');
  assert.equal(out.findings.length, plain.findings.length - 2, 'accepted findings left the list');
  assert.ok(!out.findings.some((f) => f.route === 'chat'));
  assert.equal(out.summary.medium, 0);
  assert.equal(out.summary.accepted, 2);
  assert.deepEqual(out.acceptances.unused.map((e) => [e.rule, e.route, e.line]), [['no-authentication', 'gone', 14]]);
  assert.deepEqual(out.acceptances.expired.map((e) => [e.route, e.expires]), [['consumer:alice', '2001-01-01']]);
  assert.ok(out.findings.some((f) => f.rule === 'secret-in-file' && f.route === 'consumer:alice'), 'an expired acceptance accepts nothing');
  assert.equal(j.status, 0, 'the medium is accepted; only lows are open');
  assert.equal((await run(['audit', '-c', BUNDLED_MEDIUM, '--fail-on', 'low', '--accept', ACCEPT])).status, 1, 'lows are still open');

  const t = await run(['audit', '-c', BUNDLED_MEDIUM, '--accept', ACCEPT]);
  assert.equal(t.status, 0);
  assert.match(t.stdout, /accepted in .*accept\.yaml \(not counted for --fail-on\)\n {2}MEDIUM {3}ws-no-message-limits {2}route chat {2}routes\[0\]\.plugins \(line \d+\)\n {11}reason: the open demo chat; messages are echoed, never parsed\n/);
  assert.match(t.stdout, /\n {2}LOW {6}no-authentication {2}route chat {2}routes\[0\]\.plugins \(line \d+\)\n {11}reason: meant to be reached from any private address \(until 2999-01-01\)/);
  assert.match(t.stdout, /warning: .*accept\.yaml: accepts no-authentication on gone \(line 14\), which is not found: remove the entry/);
  assert.match(t.stdout, /warning: .*accept\.yaml: acceptance of secret-in-file on consumer:alice \(line 10\) expired on 2001-01-01: review it/);
  assert.match(t.stdout, /; 2 accepted\n$/);

  const sarif = JSON.parse((await run(['audit', '-c', BUNDLED_MEDIUM, '--format', 'sarif', '--accept', ACCEPT])).stdout);
  const results = sarif.runs[0].results;
  assert.equal(results.length, plain.findings.length, 'accepted findings stay in the SARIF log');
  const suppressed = results.filter((r) => r.suppressions);
  assert.deepEqual(
    suppressed.map((r) => [r.ruleId, r.suppressions[0].kind, r.suppressions[0].status, r.suppressions[0].justification]).sort(),
    [
      ['no-authentication', 'external', 'accepted', 'meant to be reached from any private address'],
      ['ws-no-message-limits', 'external', 'accepted', 'the open demo chat; messages are echoed, never parsed'],
    ],
  );
});

test('--accept: an invalid file is refused like a config (file:line, YAML path, expected and found, exit 2)', async () => {
  const badAccept = write(
    'bad-accept.yaml',
    `- rule: no-such-rule
  route: chat
  reason: typo
- rule: no-limit-conn
  route: chat
  reason: "   "
  expires: 2027-13-01
- route: chat
  rule: no-limit-conn
  reason: ok
  severity: low
`,
  );
  const r = await run(['audit', '-c', BUNDLED, '--accept', badAccept]);
  assert.equal(r.status, 2);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /^portcullis: invalid acceptance file .*bad-accept\.yaml/);
  assert.match(r.stderr, /bad-accept\.yaml:1:\d+ \[0\]\.rule: expected one of no-authentication, .*found "no-such-rule"/);
  assert.match(r.stderr, /bad-accept\.yaml:11:\d+ \[2\]\.severity: unknown key "severity"/);
  const blank = write('blank-accept.yaml', '- rule: no-limit-conn\n  route: chat\n  reason: "  "\n  expires: 2027-13-01\n');
  const b = await run(['audit', '-c', BUNDLED, '--accept', blank]);
  assert.equal(b.status, 2);
  assert.match(b.stderr, /blank-accept\.yaml:3:\d+ \[0\]\.reason: expected a reason/);
  assert.match(b.stderr, /blank-accept\.yaml:4:\d+ \[0\]\.expires: expected a date YYYY-MM-DD, found "2027-13-01"/);
  const notYaml = write('notyaml-accept.yaml', '- rule: [\n');
  const y = await run(['audit', '-c', BUNDLED, '--accept', notYaml]);
  assert.equal(y.status, 2);
  assert.match(y.stderr, /notyaml-accept\.yaml:\d+:\d+: not valid YAML/);
  const missing = await run(['audit', '-c', BUNDLED, '--accept', join(dir, 'none.yaml')]);
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /cannot read the acceptance file: ENOENT/);
  for (const x of [r, b, y, missing]) assert.doesNotMatch(x.stderr, /\n\s+at /, 'no stack trace');
});

// ---- secrets ------------------------------------------------------------------------------

test('no secret value appears in any output format', async () => {
  const secrets = ['short-hs256-secret', 'insecure-admin-key-0000', 'alice-key-in-the-file'];
  for (const format of ['text', 'json', 'sarif']) {
    const r = await run(['audit', '-c', INSECURE, '--format', format]);
    for (const s of secrets) assert.ok(!r.stdout.includes(s) && !r.stderr.includes(s), `${format} output leaks ${s}`);
  }
  // Secrets from the environment, a Redis password in a URL, a plain basic-auth password.
  const file = write(
    'env-secrets.yaml',
    `gateway:
  redis: { url: "redis://user:url-password-1234@redis.internal:6379/0" }
${UP}consumers:
  - username: e
    plugins:
      jwt-auth: { key: e, secret: "\${TINY_SECRET}" }
  - username: b
    plugins:
      basic-auth: { username: b, password: plain-password-5678 }
routes:
  - id: r
    uri: /r
    enable_websocket: true
    upstream_id: up
    plugins:
      jwt-auth: {}
      basic-auth: {}
`,
  );
  const env = { TINY_SECRET: 'tiny-env-secret' };
  const text = readFileSync(file, 'utf8');
  const config = await loadConfigText(text, file, { registry: createRegistry(), env });
  const report = auditConfig(config, text, file);
  for (const out of [formatText(report, 'high'), formatJson(report, 'high', '0.0.0'), formatSarif(report, '0.0.0')]) {
    for (const s of ['tiny-env-secret', 'url-password-1234', 'plain-password-5678']) assert.ok(!out.includes(s), `output leaks ${s}`);
  }
  const { findings } = report;
  assert.deepEqual(only(findings, 'jwt-weak-secret').map(brief), [['jwt-weak-secret', 'consumer:e', 'consumers[0].plugins.jwt-auth.secret', 'high']]);
  assert.deepEqual(only(findings, 'secret-in-file').map((f) => f.path).sort(), ['consumers[1].plugins.basic-auth.password', 'gateway.redis.url']);
});

// ---- rule details (in process) ------------------------------------------------------------

test('no-authentication: an ip-restriction whitelist lowers it, unless trusted_proxies lets clients choose their address', async () => {
  const route = (plugins, gateway = '') => `${gateway}${UP}routes:\n  - id: r\n    uri: /r\n    enable_websocket: true\n    upstream_id: up\n    plugins:\n${plugins}`;
  const priv = '      ip-restriction: { whitelist: [10.0.0.0/8, 127.0.0.1, "fd00::/8"] }\n';
  assert.deepEqual(only(await audit(route(priv)), 'no-authentication').map((f) => f.severity), ['low']);
  const pub = '      ip-restriction: { whitelist: [203.0.113.0/24] }\n';
  assert.deepEqual(only(await audit(route(pub)), 'no-authentication').map((f) => f.severity), ['medium']);
  const wide = '      ip-restriction: { whitelist: [0.0.0.0/1, 128.0.0.0/1] }\n';
  assert.deepEqual(only(await audit(route(wide)), 'no-authentication').map((f) => f.severity), ['high']);
  const spoof = await audit(route(priv, 'gateway:\n  trusted_proxies: ["::/0"]\n'));
  assert.deepEqual(only(spoof, 'no-authentication').map((f) => f.severity), ['high']);
  assert.deepEqual(only(spoof, 'trusted-proxies-too-wide').map(brief), [['trusted-proxies-too-wide', 'gateway', 'gateway.trusted_proxies[0]', 'high']]);
  // Authentication on a global rule counts; on a consumer it does not.
  const global = `${route('      limit-conn: { conn: 1, burst: 0, default_conn_delay: 1 }\n')}global_rules:\n  - id: auth\n    plugins:\n      key-auth: { hide_credentials: true }\n`;
  assert.deepEqual(only(await audit(global), 'no-authentication'), []);
});

test('SSE routes: GET routes and routes with an sse block are reviewed, a POST-only route is not', async () => {
  const routes = `${UP}routes:
  - { id: get, uri: /get, methods: [GET], upstream_id: up }
  - { id: any, uri: /any, upstream_id: up }
  - { id: post, uri: /post, methods: [POST], upstream_id: up }
  - { id: post-stream, uri: /stream, methods: [POST], upstream_id: up, sse: { heartbeat_interval: 15 } }
`;
  const reviewed = only(await audit(routes), 'no-authentication').map((f) => f.route);
  assert.deepEqual(reviewed.sort(), ['any', 'get', 'post-stream']);
});

test('no-origin-restriction: high with a cookie credential, low with a subprotocol key, judged by protocols', async () => {
  const ws = (plugins) => `${UP}routes:\n  - id: r\n    uri: /r\n    enable_websocket: true\n    upstream_id: up\n    plugins:\n      limit-conn: { conn: 1, burst: 0, default_conn_delay: 1 }\n${plugins}`;
  const sev = async (plugins) => only(await audit(ws(plugins)), 'no-origin-restriction').map((f) => [f.severity, f.path]);
  assert.deepEqual(await sev('      key-auth: { cookie: session, hide_credentials: true }\n'), [['high', 'routes[0].plugins']]);
  assert.deepEqual(await sev('      key-auth: { subprotocol: apikey., hide_credentials: true }\n'), [['low', 'routes[0].plugins']]);
  assert.deepEqual(await sev('      basic-auth: {}\n'), [['high', 'routes[0].plugins']]);
  // origin-restriction that judges only SSE leaves the WebSocket handshake unchecked.
  assert.deepEqual(
    await sev('      jwt-auth: { hide_credentials: true }\n      origin-restriction: { allow_origins: [https://a.example], protocols: [sse] }\n'),
    [['high', 'routes[0].plugins.origin-restriction.protocols']],
  );
  assert.deepEqual(await sev('      jwt-auth: { hide_credentials: true }\n      origin-restriction: { allow_origins: [https://a.example] }\n'), []);
});

test('jwt-weak-secret: the hash size of the algorithm, base64 secrets decoded, issuer-form secrets too', async () => {
  const b64 = (n) => Buffer.alloc(n, 7).toString('base64');
  const consumer = (cred) => `${UP}consumers:\n  - username: c\n    plugins:\n      jwt-auth: ${cred}\n`;
  const weak = async (text) => only(await audit(text, { S: 'x'.repeat(40) }), 'jwt-weak-secret').map((f) => f.path);
  assert.deepEqual(await weak(consumer('{ key: c, secret: "${S}" }')), []);
  assert.deepEqual(await weak(consumer('{ key: c, secret: "${S}", algorithm: HS512 }')), ['consumers[0].plugins.jwt-auth.secret']);
  assert.deepEqual(await weak(consumer(`{ key: c, secret: "${b64(31)}", base64_secret: true }`)), ['consumers[0].plugins.jwt-auth.secret']);
  assert.deepEqual(await weak(consumer(`{ key: c, secret: "${b64(32)}", base64_secret: true }`)), []);
  // Issuer form: judged against the strongest HS algorithm it accepts.
  const issuer = (algs) => `${UP}routes:\n  - id: r\n    uri: /r\n    upstream_id: up\n    plugins:\n      jwt-auth: { secret: "\${S}", algorithms: [${algs}], hide_credentials: true }\n`;
  assert.deepEqual(await weak(issuer('HS256')), []);
  const short = await audit(issuer('HS256, HS384'), { S: 'z'.repeat(40) });
  assert.deepEqual(only(short, 'jwt-weak-secret').map(brief), [['jwt-weak-secret', 'r', 'routes[0].plugins.jwt-auth.secret', 'high']]);
  assert.match(only(short, 'jwt-weak-secret')[0].message, /shorter than 48 bytes \(the minimum for HS384\)/);
  assert.ok(!JSON.stringify(short).includes('z'.repeat(40)));
});

test('deflate-without-size-limit: not with websocket-size-limit, not in tunnel mode; the route override is the path', async () => {
  const text = (plugins, ws = '') =>
    `${UP}routes:\n  - id: r\n    uri: /r\n    enable_websocket: true\n    upstream_id: up\n${ws}    plugins:\n      key-auth: { subprotocol: k., hide_credentials: true }\n${plugins}`;
  const deflate = '    websocket: { permessage_deflate: { server_no_context_takeover: true } }\n';
  const found = async (plugins, ws) => only(await audit(text(plugins, ws)), 'deflate-without-size-limit').map((f) => f.path);
  assert.deepEqual(await found('      websocket-validator: { client: { binary: false } }\n', deflate), ['routes[0].websocket.permessage_deflate']);
  assert.deepEqual(await found('      websocket-size-limit: {}\n', deflate), []);
  assert.deepEqual(await found('', deflate), []); // tunnel mode: permessage_deflate does not apply
  const lowered = '    websocket: { permessage_deflate: true, max_payload: 65536 }\n';
  assert.deepEqual(await found('      websocket-validator: { client: { binary: false } }\n', lowered), []);
});

test('trusted_proxies: private ranges pass, public ranges are medium, the whole internet is high', async () => {
  const tp = async (list) => only(await audit(`gateway:\n  trusted_proxies: ${list}\n`), 'trusted-proxies-too-wide').map((f) => [f.path, f.severity]);
  assert.deepEqual(await tp('[10.0.0.0/8, 192.168.1.0/24, "fd00::/8", 127.0.0.1]'), []);
  assert.deepEqual(await tp('[198.51.100.7, 203.0.113.0/24]'), []);
  assert.deepEqual(await tp('[173.245.48.0/20, "2606:4700::/32"]'), [
    ['gateway.trusted_proxies[0]', 'medium'],
    ['gateway.trusted_proxies[1]', 'medium'],
  ]);
  assert.deepEqual(await tp('["::ffff:0.0.0.0/96", 0.0.0.0/4]'), [
    ['gateway.trusted_proxies[0]', 'high'],
    ['gateway.trusted_proxies[1]', 'high'],
  ]);
});

test('admin-exposed: high with TLS, critical without; loopback is fine', async () => {
  execFileSync('/usr/bin/openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=admin',
    '-keyout', join(dir, 'admin.key'), '-out', join(dir, 'admin.crt')], { stdio: 'ignore' });
  const admin = (listen) => `admin:\n  listen: ${listen}\n  key: "\${ADMIN_KEY}"\n`;
  const env = { ADMIN_KEY: 'an-admin-key-from-env' };
  const sev = async (listen) => {
    const text = admin(listen);
    const config = await loadConfigText(text, join(dir, 'admin.yaml'), { registry: createRegistry(), env });
    return auditConfig(config, text, 'admin.yaml').findings.map((f) => [f.rule, f.severity]);
  };
  assert.deepEqual(await sev('{ host: 0.0.0.0, port: 9180 }'), [['admin-exposed', 'critical']]);
  assert.deepEqual(await sev('{ host: "::", port: 9180, tls: { cert: ./admin.crt, key: ./admin.key } }'), [['admin-exposed', 'high']]);
  assert.deepEqual(await sev('{ host: 127.0.0.1, port: 9180 }'), []);
});

test('secret-in-file: literal and ${VAR:-default} are reported, ${VAR} is not', async () => {
  const text = `consumers:
  - { username: a, plugins: { key-auth: { key: literal-key } } }
  - { username: b, plugins: { key-auth: { key: "\${B_KEY:-fallback-key}" } } }
  - { username: c, plugins: { key-auth: { key: "\${C_KEY}" } } }
`;
  const findings = only(await audit(text, { C_KEY: 'from-env-c' }), 'secret-in-file');
  assert.deepEqual(findings.map((f) => [f.route, f.path, f.severity]), [
    ['consumer:a', 'consumers[0].plugins.key-auth.key', 'low'],
    ['consumer:b', 'consumers[1].plugins.key-auth.key', 'low'],
  ]);
  assert.match(findings[1].message, /default value/);
  for (const f of findings) assert.ok(!JSON.stringify(f).includes('literal-key') && !JSON.stringify(f).includes('fallback-key'));
});
