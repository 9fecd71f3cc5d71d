// Admin API calls, and the gateway processes, of the admin and metrics tests.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { eventually } from './helpers.js';

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));

/** An admin call: resolves { status, headers, body, json } (json undefined when the body is not JSON). */
export function adminCall(port, method, path, { key, body, headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const h = { ...headers };
    if (key !== undefined) h['x-api-key'] = key;
    if (body !== undefined) h['content-length'] = Buffer.byteLength(body);
    const req = http.request({ host: '127.0.0.1', port, method, path, headers: h, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let json;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode, headers: res.headers, body: text, json });
      });
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/**
 * The config the multi-process admin and metrics tests share: route `chat` on /chat
 * (WebSocket, key-auth) in front of `upstreamPort`, consumers alice and bob with the
 * given keys, optional admin (with `adminKey`), metrics listener, `gateway.redis` (with
 * `revokeSecret`) and workers.
 */
export function chatConfig({ port, upstreamPort, alice, bob, workers = 1, admin, adminKey, metrics, redisUrl, revokeSecret }) {
  return `gateway:
  listen: [{ host: 127.0.0.1, port: ${port} }]
  workers: ${workers}
  max_pending_handshakes_per_ip: 0
  log: { level: info }
${redisUrl ? `  redis: { url: "${redisUrl}", timeout: 1${revokeSecret ? `, revoke_secret: "${revokeSecret}"` : ''} }\n` : ''}upstreams:
  - id: up
    nodes: { "127.0.0.1:${upstreamPort}": 1 }
routes:
  - id: chat
    uri: /chat
    enable_websocket: true
    upstream_id: up
    plugins:
      key-auth: {}
consumers:
  - username: alice
    plugins:
      key-auth: { key: ${alice} }
  - username: bob
    plugins:
      key-auth: { key: ${bob} }
${admin ? `admin:\n  listen: { host: 127.0.0.1, port: ${admin} }\n  key: ${adminKey}\n` : ''}${metrics ? `metrics:\n  listen: { host: 127.0.0.1, port: ${metrics} }\n` : ''}`;
}

/**
 * `node dist/cli.js start` on `yaml` (written to a fresh temporary file); resolves once
 * `workers` listening lines were printed, with { child, stdout, stderr } (kept up to date).
 * `t` (a test context): the process is SIGKILLed after the test if still running.
 */
export async function startCli(yaml, { workers = 1, t } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-cli-'));
  const file = join(dir, 'config.yaml');
  writeFileSync(file, yaml);
  const child = spawn(process.execPath, [CLI, 'start', '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = { child, file, stdout: '', stderr: '' };
  t?.after(() => child.exitCode === null && child.kill('SIGKILL'));
  child.stdout.on('data', (d) => (out.stdout += d));
  child.stderr.on('data', (d) => (out.stderr += d));
  const ok = await eventually(() => (out.stderr.match(/listening on/g) ?? []).length >= workers || child.exitCode !== null, { tries: 300 });
  assert.ok(ok && child.exitCode === null, out.stderr);
  return out;
}
