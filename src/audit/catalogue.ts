/**
 * Every rule `portcullis audit` applies, in the order of docs/audit.md. The
 * severity here is the usual one; a few rules report lower or higher depending on
 * what else the config does (each case is in docs/audit.md).
 */
import type { RuleInfo } from './types.js';

export const RULES: readonly RuleInfo[] = [
  {
    id: 'no-authentication',
    severity: 'high',
    title: 'A WebSocket or SSE route has no authentication plugin (route or global rule).',
    help: 'Add an authentication plugin to the route or a global rule: key-auth, jwt-auth, basic-auth, openid-connect or forward-auth.',
  },
  {
    id: 'ws-no-message-limits',
    severity: 'medium',
    title: 'A WebSocket route neither validates nor size-limits messages (no websocket-validator, no websocket-size-limit, max_payload above 1 MiB).',
    help: 'Add websocket-size-limit (e.g. client_max_payload: 65536) and websocket-validator to the route; in tunnel mode, websocket.max_payload (e.g. 65536) also bounds message size.',
  },
  {
    id: 'no-limit-conn',
    severity: 'medium',
    title: 'A WebSocket or SSE route has no limit-conn: one client can hold any number of connections.',
    help: 'Add limit-conn to the route or a global rule (e.g. conn: 20, burst: 0, default_conn_delay: 0.1, key: remote_addr).',
  },
  {
    id: 'no-origin-restriction',
    severity: 'high',
    title: 'A route a browser can reach does not check Origin (cross-site WebSocket hijacking).',
    help: 'Add origin-restriction with the web origins of your pages (allow_origins: [https://app.example.com]).',
  },
  {
    id: 'credentials-in-query',
    severity: 'medium',
    title: 'An authentication plugin accepts credentials in the query string (or a cookie) and passes them upstream (hide_credentials: false).',
    help: 'Set hide_credentials: true on the plugin, and prefer a header or a subprotocol to the query string.',
  },
  {
    id: 'jwt-weak-secret',
    severity: 'high',
    title: 'An HS256/384/512 secret of jwt-auth is shorter than the hash (32, 48, 64 bytes; RFC 7518 section 3.2).',
    help: 'Use a random secret of at least 32 bytes for HS256 (48 for HS384, 64 for HS512), from ${ENV}: openssl rand -base64 48.',
  },
  {
    id: 'jwt-exp-leeway',
    severity: 'medium',
    title: 'jwt-auth accepts tokens more than 5 minutes after their exp (clock_skew or lifetime_grace_period).',
    help: 'Keep clock_skew and lifetime_grace_period at 300 seconds or less; issue tokens with the lifetime you want instead.',
  },
  {
    id: 'jwt-claims-ignored',
    severity: 'info',
    title: 'jwt-auth claims_to_verify leaves out exp: it has no effect, exp is always checked.',
    help: 'Remove claims_to_verify (or list exp in it): Portcullis always requires and checks exp.',
  },
  {
    id: 'deflate-without-size-limit',
    severity: 'high',
    title: 'permessage-deflate is on for a frame-mode WebSocket route whose message limit is above 1 MiB (decompression bomb).',
    help: 'Add websocket-size-limit with a small client_max_payload, or lower websocket.max_payload, or set permessage_deflate: false.',
  },
  {
    id: 'admin-exposed',
    severity: 'high',
    title: 'The admin API listens beyond loopback (critical without TLS: the admin key crosses the network in clear).',
    help: 'Set admin.listen.host: 127.0.0.1 and reach it through an SSH tunnel or a TLS-terminating proxy; if it must be remote, give admin.listen a tls block.',
  },
  {
    id: 'listener-without-tls',
    severity: 'medium',
    title: 'A gateway or metrics listener on a non-loopback address has no TLS.',
    help: 'Give the listener a tls block (cert, key), or listen on 127.0.0.1 behind a TLS-terminating proxy listed in trusted_proxies.',
  },
  {
    id: 'metrics-exposed',
    severity: 'low',
    title: 'The unauthenticated metrics listener is on a non-loopback address (medium with consumer labels: it names consumers).',
    help: 'Listen on 127.0.0.1 or a private address only your scraper reaches, or drop metrics.listen and scrape the admin API with its key.',
  },
  {
    id: 'limit-degradation',
    severity: 'low',
    title: 'A limit plugin with a Redis policy has allow_degradation: true: while Redis is down the limit holds per instance only.',
    help: 'Set allow_degradation: false (refuse with 503 while Redis is down), or accept the per-instance limit knowingly.',
  },
  {
    id: 'auth-fail-open',
    severity: 'high',
    title: 'forward-auth has allow_degradation: true: requests pass unauthenticated while the auth service is down.',
    help: 'Set allow_degradation: false on forward-auth (requests get status_on_error while the service is down).',
  },
  {
    id: 'trusted-proxies-too-wide',
    severity: 'high',
    title: 'trusted_proxies trusts very wide or public ranges: clients there can forge X-Forwarded-For and choose their address.',
    help: 'List only the addresses of your own load balancers or proxies in trusted_proxies.',
  },
  {
    id: 'handshake-cap-disabled',
    severity: 'medium',
    title: 'gateway.max_pending_handshakes_per_ip is 0: one address may hold any number of handshakes in progress.',
    help: 'Remove max_pending_handshakes_per_ip (default 32) or set it to a small number.',
  },
  {
    id: 'revoke-channel-unsigned',
    severity: 'low',
    title: 'gateway.redis is set without revoke_secret: revocations and blocks between instances are not signed.',
    help: 'Set gateway.redis.revoke_secret (at least 32 characters, the same on every instance, from ${ENV_VAR}).',
  },
  {
    id: 'ws-timeout-disabled',
    severity: 'low',
    title: 'A WebSocket route has idle_timeout 0 (silent connections live forever) or, in frame mode, stall_timeout 0.',
    help: 'Keep websocket.idle_timeout (default 300) and stall_timeout (default 30) above 0; use ping_interval for long quiet sessions.',
  },
  {
    id: 'secret-in-file',
    severity: 'low',
    title: 'A secret (API key, password, HMAC secret, client secret, admin key) is written in the config file, or has a default there.',
    help: 'Write the secret as ${ENV_VAR} with no default, and set the variable where the gateway runs.',
  },
  {
    id: 'upstream-tls-unverified',
    severity: 'medium',
    title: 'An https upstream has tls.verify: false: anyone on the path can impersonate it.',
    help: 'Set tls.verify: true and give tls.ca (and tls.servername) for a private CA.',
  },
  {
    id: 'insecure-auth-endpoint',
    severity: 'medium',
    title: 'An authentication plugin fetches keys or decisions over plain http from a non-loopback host.',
    help: 'Use https for jwks_uri, discovery, introspection_endpoint and forward-auth uri.',
  },
];

export const RULE_IDS: ReadonlySet<string> = new Set(RULES.map((r) => r.id));
