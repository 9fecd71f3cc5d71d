/**
 * The checks behind each rule of catalogue.ts. They read the loaded `Config` (values
 * after ${ENV} expansion and defaults) and ask the locator where a setting is written.
 * A message names routes, plugins, keys and addresses, never a secret's value (nor its
 * length).
 */
import { Buffer } from 'node:buffer';
import { isLoopbackHost } from '../config/net.js';
import type { Config, ListenConfig, PluginConfigs, PluginInstance, RouteConfig, UpstreamConfig } from '../config/types.js';
import { Pipeline } from '../core/pipeline.js';
import { displayPath, type YamlLocator, type YamlPath } from './locate.js';
import { cidrFacts } from './net.js';
import type { Finding, Severity } from './types.js';

/** A message limit above this is "no size limit" (Kong's websocket-size-limit default for clients). */
export const MESSAGE_LIMIT = 1024 * 1024;
/** clock_skew / lifetime_grace_period above this weakens exp. */
export const MAX_LEEWAY = 300;

const BUILTIN_AUTH = new Set(['key-auth', 'basic-auth', 'jwt-auth', 'openid-connect', 'forward-auth']);
const LIMIT_PLUGINS = ['limit-conn', 'limit-req', 'limit-count', 'limit-messages'];
const HS_MIN_BYTES: Record<string, number> = { HS256: 32, HS384: 48, HS512: 64 };
const ENV_DEFAULT_RE = /\$\{[A-Za-z_][A-Za-z0-9_]*:-[^}]+\}/;
const ENV_RE = /\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}/;
const PASSWORD_HASH_RE = /^\$(?:2[aby]|scrypt)\$/;

type Obj = Record<string, unknown>;

/** A plugin in force on a route, and where its config is written. */
interface Placed {
  readonly name: string;
  readonly config: Obj;
  readonly inst: PluginInstance;
  readonly path: YamlPath;
}

/** A `plugins` mapping somewhere in the file (route, global rule, consumer, consumer group). */
interface PluginPlace {
  /** The Finding.route of findings about it. */
  readonly subject: string;
  readonly path: YamlPath;
  readonly configs: PluginConfigs;
}

type RouteKind = 'websocket' | 'sse';

export class Auditor {
  readonly #config: Config;
  readonly #locate: YamlLocator;
  readonly #findings: Finding[] = [];
  /** Some trusted_proxies entry lets anyone choose their client address. */
  #spoofable = false;

  constructor(config: Config, locate: YamlLocator) {
    this.#config = config;
    this.#locate = locate;
  }

  run(): Finding[] {
    this.#gateway();
    this.#admin();
    this.#metrics();
    for (const [i, route] of this.#config.routes.entries()) this.#route(route, i);
    for (const place of this.#places()) this.#pluginPlace(place);
    this.#consumers();
    this.#upstreams();
    return this.#findings;
  }

  #add(rule: string, severity: Severity, subject: string, path: YamlPath, message: string, fix: string): void {
    this.#findings.push({ rule, severity, route: subject, path: displayPath(path), line: this.#locate.line(path), message, fix });
  }

  /** `routes[i].websocket.x` when the route overrides it, else `gateway.websocket.x`. */
  #settingPath(i: number, section: 'websocket' | 'sse', key: string): YamlPath {
    const own: YamlPath = ['routes', i, section, key];
    return this.#locate.has(own) ? own : ['gateway', section, key];
  }

  // ---- gateway, admin, metrics ------------------------------------------------------

  #gateway(): void {
    const g = this.#config.gateway;
    for (const [k, entry] of g.trusted_proxies.entries()) {
      const f = cidrFacts(entry);
      if (!f || f.private) continue;
      const path: YamlPath = ['gateway', 'trusted_proxies', k];
      if ((f.family === 4 && f.prefix < 8) || (f.family === 6 && f.prefix < 16)) {
        this.#spoofable = true;
        this.#add(
          'trusted-proxies-too-wide',
          'high',
          'gateway',
          path,
          `trusted_proxies entry ${entry} covers ${f.prefix === 0 ? 'every address' : 'a large part of the internet'}: any client there can send X-Forwarded-For and choose the address that ip-restriction, limits and logs see`,
          'list only the addresses of your own load balancers or proxies',
        );
      } else if ((f.family === 4 && f.prefix < 24) || (f.family === 6 && f.prefix < 48)) {
        this.#add(
          'trusted-proxies-too-wide',
          'medium',
          'gateway',
          path,
          `trusted_proxies entry ${entry} is a public range of ${f.family === 4 ? 2 ** (32 - f.prefix) : `2^${128 - f.prefix}`} addresses: every host in it can forge the client address`,
          'narrow it to the addresses of your own proxies (a CDN range admits everyone who routes through that CDN)',
        );
      }
    }
    const hasWs = this.#config.routes.some((r) => r.enable_websocket);
    if (g.max_pending_handshakes_per_ip === 0 && hasWs) {
      this.#add(
        'handshake-cap-disabled',
        'medium',
        'gateway',
        ['gateway', 'max_pending_handshakes_per_ip'],
        'max_pending_handshakes_per_ip is 0: one client address may keep any number of slow or unauthenticated WebSocket handshakes in progress',
        'remove the key (default 32) or set a small number',
      );
    }
    if (g.redis && g.redis.revoke_secret === undefined) {
      this.#add(
        'revoke-channel-unsigned',
        'low',
        'gateway',
        ['gateway', 'redis'],
        'gateway.redis has no revoke_secret: the revoke channel carries admin revocations and blocks unsigned, so whoever can PUBLISH on that Redis can close any consumer\'s connections and block consumers for up to 7 days',
        'set gateway.redis.revoke_secret (at least 32 characters, the same on every instance) from ${ENV_VAR}',
      );
    }
    const behindProxy = g.trusted_proxies.length > 0;
    for (const [k, l] of g.listen.entries()) {
      if (l.tls || isLoopbackHost(l.host)) continue;
      this.#add(
        'listener-without-tls',
        behindProxy ? 'low' : 'medium',
        'gateway',
        ['gateway', 'listen', k],
        `gateway listener ${hostPort(l)} serves plain http/ws on a non-loopback address: tokens, keys and messages cross the network in clear` +
          (behindProxy ? ' (trusted_proxies is set: if a proxy in front terminates TLS, only that hop is in clear)' : ''),
        'add tls: { cert, key } to the listener, or listen on 127.0.0.1 behind a TLS-terminating proxy',
      );
    }
    if (g.redis?.url !== undefined) {
      // Only the password is secret: judge the URL as written (or its default), not as expanded.
      const raw = unquote(this.#locate.source(['gateway', 'redis', 'url']) ?? '');
      const written = ENV_RE.test(raw) ? /:-([^}]+)\}/.exec(raw)?.[1] : raw;
      if (written !== undefined && hasUrlPassword(written)) {
        this.#secretInFile('gateway', ['gateway', 'redis', 'url'], 'the password in gateway.redis.url');
      }
    }
    for (const key of ['password', 'sentinel_password', 'revoke_secret']) {
      if (g.redis && typeof (g.redis as unknown as Obj)[key] === 'string') this.#secretInFile('gateway', ['gateway', 'redis', key], `gateway.redis.${key}`);
    }
  }

  #admin(): void {
    const admin = this.#config.admin;
    if (!admin) return;
    const l = admin.listen;
    if (!isLoopbackHost(l.host)) {
      const path: YamlPath = this.#locate.has(['admin', 'listen', 'host']) ? ['admin', 'listen', 'host'] : ['admin', 'listen'];
      if (l.tls) {
        this.#add(
          'admin-exposed',
          'high',
          'admin',
          path,
          `the admin API listens on ${hostPort(l)}, beyond loopback: anyone who reaches it can try the admin key, and a leaked key controls live connections and the config`,
          'listen on 127.0.0.1 and reach the admin API through an SSH tunnel or an authenticating proxy',
        );
      } else {
        this.#add(
          'admin-exposed',
          'critical',
          'admin',
          path,
          `the admin API listens on ${hostPort(l)}, beyond loopback and without TLS: the X-API-KEY of every call crosses the network in clear`,
          'listen on 127.0.0.1 (SSH tunnel), or at least give admin.listen a tls block',
        );
      }
    }
    if (admin.key !== undefined) this.#secretInFile('admin', ['admin', 'key'], 'admin.key');
  }

  #metrics(): void {
    const m = this.#config.metrics;
    if (!m.enabled || !m.listen || isLoopbackHost(m.listen.host)) return;
    const l = m.listen;
    this.#add(
      'metrics-exposed',
      m.consumer_label ? 'medium' : 'low',
      'metrics',
      this.#locate.has(['metrics', 'listen', 'host']) ? ['metrics', 'listen', 'host'] : ['metrics', 'listen'],
      `the metrics listener ${hostPort(l)} answers anyone who reaches it, without a key: route ids, traffic and rejection counts` +
        (m.consumer_label ? ', and consumer names (consumer_label: true)' : ''),
      'listen on 127.0.0.1 or a private address only your scraper reaches, or scrape /metrics on the admin API with its key',
    );
    if (!l.tls) {
      this.#add(
        'listener-without-tls',
        'low',
        'metrics',
        ['metrics', 'listen'],
        `the metrics listener ${hostPort(l)} serves plain http on a non-loopback address`,
        'add tls: { cert, key } to metrics.listen, or listen on loopback',
      );
    }
  }

  // ---- routes -------------------------------------------------------------------------

  /**
   * WebSocket routes, and the routes that can serve an SSE stream. The gateway streams
   * any text/event-stream answer, so the config cannot say which routes stream: a route
   * without enable_websocket is reviewed as SSE when it admits GET (what EventSource
   * sends; no `methods` admits every method) or when it has its own `sse` block (the way
   * to declare a POST stream). Other routes get only the plugin-config rules.
   */
  #kind(route: RouteConfig, i: number): RouteKind | undefined {
    if (route.enable_websocket) return 'websocket';
    if (this.#locate.has(['routes', i, 'sse'])) return 'sse';
    if (route.methods.length === 0 || route.methods.includes('GET')) return 'sse';
    return undefined;
  }

  /** The plugins in force on a route (global rules merged by name, the route's winning), with where each is written. */
  #effective(route: RouteConfig, i: number): Map<string, Placed> {
    const out = new Map<string, Placed>();
    for (const [j, rule] of this.#config.global_rules.entries()) {
      for (const inst of rule.instances) out.set(inst.name, { name: inst.name, config: inst.config, inst, path: ['global_rules', j, 'plugins', inst.name] });
    }
    for (const inst of route.instances) out.set(inst.name, { name: inst.name, config: inst.config, inst, path: ['routes', i, 'plugins', inst.name] });
    return out;
  }

  #route(route: RouteConfig, i: number): void {
    const kind = this.#kind(route, i);
    if (!kind) return;
    const id = route.id;
    const plugins = this.#effective(route, i);
    const where: YamlPath = this.#locate.has(['routes', i, 'plugins']) ? ['routes', i, 'plugins'] : ['routes', i];
    const what = kind === 'websocket' ? `WebSocket route "${id}"` : `route "${id}" (it can serve SSE)`;
    const auth = [...plugins.values()].filter((p) => BUILTIN_AUTH.has(p.name) || p.inst.def.consumerSchema !== undefined);

    // no-authentication
    if (auth.length === 0) {
      const ip = plugins.get('ip-restriction');
      const whitelist = ip && Array.isArray(ip.config.whitelist) ? (ip.config.whitelist as string[]) : undefined;
      let severity: Severity = 'high';
      let who = 'anyone who reaches the gateway can connect';
      if (whitelist && this.#spoofable) {
        who += ' (its ip-restriction whitelist does not help while trusted_proxies lets clients choose their address)';
      } else if (whitelist) {
        const facts = whitelist.map(cidrFacts);
        if (facts.every((f) => f?.private)) {
          severity = 'low';
          who = 'only its ip-restriction whitelist (private and loopback addresses) decides who connects, by network location, not identity';
        } else if (facts.every((f) => f && f.prefix >= (f.family === 4 ? 16 : 48))) {
          severity = 'medium';
          who = 'only its ip-restriction whitelist, which has public addresses, decides who connects';
        }
      }
      this.#add(
        'no-authentication',
        severity,
        id,
        where,
        `${what} has no authentication plugin (on the route or a global rule): ${who}`,
        'add key-auth, jwt-auth, basic-auth, openid-connect or forward-auth to the route or a global rule',
      );
    }

    // no-limit-conn
    if (!plugins.has('limit-conn')) {
      this.#add(
        'no-limit-conn',
        'medium',
        id,
        where,
        `${what} has no limit-conn: one client can open connections until the gateway or the upstream runs out of sockets and memory`,
        'add limit-conn (e.g. conn: 20, burst: 0, default_conn_delay: 0.1, key: remote_addr) to the route or a global rule',
      );
    }

    // no-origin-restriction
    const origin = plugins.get('origin-restriction');
    const judged = origin !== undefined && Array.isArray(origin.config.protocols) && (origin.config.protocols as string[]).includes(kind);
    if (!judged) {
      const ambient = auth.map((p) => ambientCredential(p)).find((a) => a !== undefined);
      const originPath: YamlPath = origin ? [...origin.path, 'protocols'] : where;
      const notJudged = origin ? ` (its origin-restriction does not judge ${kind} requests: protocols leaves out ${kind})` : '';
      if (kind === 'websocket') {
        let severity: Severity;
        let why: string;
        if (ambient) {
          severity = 'high';
          why = `it accepts ${ambient}, which the browser attaches to a handshake opened by any page: a foreign site can act as the user (cross-site WebSocket hijacking)`;
        } else if (auth.length === 0) {
          severity = 'medium';
          why = 'any web page can open it from its visitors\' browsers, with their cookies for this site (cross-site WebSocket hijacking if the upstream trusts them)';
        } else {
          severity = 'low';
          why = 'its credentials are not sent by the browser on its own, but any web page can still open it from its visitors\' browsers';
        }
        this.#add(
          'no-origin-restriction',
          severity,
          id,
          originPath,
          `WebSocket route "${id}" does not check Origin${notJudged}: ${why}`,
          'add origin-restriction with allow_origins listing the web origins of your pages',
        );
      } else if (ambient) {
        this.#add(
          'no-origin-restriction',
          'low',
          id,
          originPath,
          `route "${id}" accepts ${ambient} and does not check Origin${notJudged}: any web page can open an EventSource to it with the user's credentials (reading it needs CORS, but the stream is opened)`,
          'add origin-restriction with allow_origins listing the web origins of your pages (allow_missing_origin: true for same-origin EventSource)',
        );
      }
    }

    if (kind === 'websocket') this.#websocket(route, i, plugins, where);
  }

  #websocket(route: RouteConfig, i: number, plugins: Map<string, Placed>, where: YamlPath): void {
    const id = route.id;
    let frame = false;
    let clientMax = route.websocket.max_payload;
    try {
      const pipeline = Pipeline.forRoute(route, this.#config.global_rules);
      frame = pipeline.inspectsMessages;
      clientMax = pipeline.frameLimits(route.websocket).client.maxPayload;
    } catch {
      // A plugin whose frameLimits() throws fails at start anyway; judge with the route's max_payload.
    }
    const validated = plugins.has('websocket-validator');
    const sized = plugins.has('websocket-size-limit');

    if (!validated && !sized && clientMax > MESSAGE_LIMIT) {
      this.#add(
        'ws-no-message-limits',
        'medium',
        id,
        where,
        frame
          ? `WebSocket route "${id}" has no websocket-validator or websocket-size-limit, and its max_payload is ${bytes(clientMax)}: the gateway buffers client messages that large, unvalidated`
          : `WebSocket route "${id}" runs in tunnel mode with no websocket-validator or websocket-size-limit, and its max_payload is ${bytes(clientMax)}: messages that large reach the upstream, their content unchecked`,
        frame
          ? 'add websocket-size-limit (e.g. client_max_payload: 65536) and websocket-validator to the route'
          : 'set websocket.max_payload on the route (e.g. 65536; the tunnel enforces it on frame headers), or add websocket-validator',
      );
    }

    const deflate = route.websocket.permessage_deflate;
    if (frame && deflate !== false && clientMax > MESSAGE_LIMIT) {
      this.#add(
        'deflate-without-size-limit',
        'high',
        id,
        this.#settingPath(i, 'websocket', 'permessage_deflate'),
        `WebSocket route "${id}" negotiates permessage-deflate and accepts client messages up to ${bytes(clientMax)} after inflation: a few KB of compressed frames make the gateway inflate and hold that much per connection`,
        'add websocket-size-limit with a small client_max_payload (e.g. 65536), or set permessage_deflate: false',
      );
    }

    if (route.websocket.idle_timeout === 0) {
      this.#add(
        'ws-timeout-disabled',
        'low',
        id,
        this.#settingPath(i, 'websocket', 'idle_timeout'),
        `WebSocket route "${id}" has idle_timeout 0: a connection that sends nothing is kept forever`,
        'set websocket.idle_timeout above 0 (default 300); use ping_interval to keep quiet sessions alive',
      );
    }
    if (frame && route.websocket.stall_timeout === 0) {
      this.#add(
        'ws-timeout-disabled',
        'low',
        id,
        this.#settingPath(i, 'websocket', 'stall_timeout'),
        `WebSocket route "${id}" has stall_timeout 0: a peer that stops reading keeps its connection, and max_buffered bytes, forever`,
        'set websocket.stall_timeout above 0 (default 30)',
      );
    }
  }

  // ---- plugin configs, wherever they are written ----------------------------------------

  #places(): PluginPlace[] {
    const out: PluginPlace[] = [];
    const c = this.#config;
    for (const [i, r] of c.routes.entries()) out.push({ subject: r.id, path: ['routes', i, 'plugins'], configs: r.plugins });
    for (const [j, g] of c.global_rules.entries()) out.push({ subject: `global_rule:${g.id}`, path: ['global_rules', j, 'plugins'], configs: g.plugins });
    for (const [k, g] of c.consumer_groups.entries()) out.push({ subject: `consumer_group:${g.id}`, path: ['consumer_groups', k, 'plugins'], configs: g.plugins });
    for (const [k, u] of c.consumers.entries()) out.push({ subject: `consumer:${u.username}`, path: ['consumers', k, 'plugins'], configs: u.plugins });
    return out;
  }

  #pluginPlace(place: PluginPlace): void {
    const { subject } = place;
    const onConsumer = subject.startsWith('consumer:');
    for (const [name, raw] of Object.entries(place.configs)) {
      const config = raw as Obj;
      const path: YamlPath = [...place.path, name];

      // credentials-in-query (route / global rule configs of auth plugins; a consumer's entry is its credential)
      if (!onConsumer && config.hide_credentials === false) {
        let sources: string | undefined;
        if (name === 'key-auth') {
          sources = `the query parameter "${String(config.query)}"${config.cookie !== undefined ? ` and the cookie "${String(config.cookie)}"` : ''}`;
        } else if (name === 'jwt-auth') {
          sources = `the query parameter "${String(config.query)}" and the cookie "${String(config.cookie)}"`;
        } else if (name === 'openid-connect' && (config.query !== undefined || config.cookie !== undefined)) {
          sources = [config.query !== undefined ? `the query parameter "${String(config.query)}"` : '', config.cookie !== undefined ? `the cookie "${String(config.cookie)}"` : '']
            .filter(Boolean)
            .join(' and ');
        }
        if (sources) {
          this.#add(
            'credentials-in-query',
            'medium',
            subject,
            this.#locate.has([...path, 'hide_credentials']) ? [...path, 'hide_credentials'] : path,
            `${name} accepts credentials from ${sources} and hide_credentials is false: they are passed to the upstream, a query parameter in the URL that its access logs keep`,
            `set hide_credentials: true on ${name}`,
          );
        }
      }

      // jwt-auth: the issuer form's secret, leeway, claims_to_verify
      if (name === 'jwt-auth' && !onConsumer) {
        if (typeof config.secret === 'string') {
          const algs = Array.isArray(config.algorithms) ? (config.algorithms as string[]) : ['HS256'];
          this.#hsSecret(subject, [...path, 'secret'], config.secret, false, algs, `jwt-auth's secret on ${describeSubject(subject)}`);
        }
        if (typeof config.clock_skew === 'number' && config.clock_skew > MAX_LEEWAY) {
          this.#add(
            'jwt-exp-leeway',
            'medium',
            subject,
            [...path, 'clock_skew'],
            `jwt-auth clock_skew is ${config.clock_skew} s: tokens are accepted, and their connections kept, that long after exp`,
            `lower clock_skew to ${MAX_LEEWAY} s or less`,
          );
        }
        if (Array.isArray(config.claims_to_verify) && !(config.claims_to_verify as string[]).includes('exp') && this.#locate.has([...path, 'claims_to_verify'])) {
          this.#add(
            'jwt-claims-ignored',
            'info',
            subject,
            [...path, 'claims_to_verify'],
            'jwt-auth claims_to_verify leaves out exp, but Portcullis always requires and checks exp: the setting has no effect',
            'remove claims_to_verify, or list exp in it',
          );
        }
        if (typeof config.secret === 'string') this.#secretInFile(subject, [...path, 'secret'], `jwt-auth's secret on ${describeSubject(subject)}`);
      }
      if (name === 'openid-connect') {
        if (typeof config.client_secret === 'string') this.#secretInFile(subject, [...path, 'client_secret'], `openid-connect's client_secret on ${describeSubject(subject)}`);
        for (const key of ['discovery', 'introspection_endpoint']) this.#plainUrl(subject, path, name, key, config[key]);
      }
      if (name === 'jwt-auth' && !onConsumer) this.#plainUrl(subject, path, name, 'jwks_uri', config.jwks_uri);
      if (name === 'forward-auth') {
        this.#plainUrl(subject, path, name, 'uri', config.uri);
        if (config.allow_degradation === true) {
          this.#add(
            'auth-fail-open',
            'high',
            subject,
            [...path, 'allow_degradation'],
            'forward-auth has allow_degradation: true: while the authorization service is down or slow, every request passes without a decision',
            'set allow_degradation: false (requests then get status_on_error while the service is down)',
          );
        }
      }

      // limit-degradation
      if (LIMIT_PLUGINS.includes(name) && config.allow_degradation === true && config.policy !== undefined && config.policy !== 'local') {
        if (!(name === 'limit-messages' && config.scope === 'connection')) {
          this.#add(
            'limit-degradation',
            'low',
            subject,
            [...path, 'allow_degradation'],
            `${name} (policy ${String(config.policy)}) has allow_degradation: true: while Redis is down the limit is counted in each instance alone, so N instances admit N times as much`,
            'set allow_degradation: false to refuse while Redis is down, or keep it knowingly',
          );
        }
      }

      for (const key of ['redis_password', 'sentinel_password']) {
        if (typeof config[key] === 'string') this.#secretInFile(subject, [...path, key], `${name}'s ${key} on ${describeSubject(subject)}`);
      }
    }
  }

  /** An http:// URL to a non-loopback host, where an auth plugin gets keys or decisions. */
  #plainUrl(subject: string, path: YamlPath, plugin: string, key: string, value: unknown): void {
    if (typeof value !== 'string') return;
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      return;
    }
    if (url.protocol !== 'http:' || isLoopbackHost(url.hostname)) return;
    this.#add(
      'insecure-auth-endpoint',
      'medium',
      subject,
      [...path, key],
      `${plugin} ${key} uses plain http to ${url.host}: anyone on the path can ${plugin === 'forward-auth' ? 'read the forwarded credentials and forge the decision' : 'substitute keys or answers and have forged tokens accepted'}`,
      `use an https URL for ${key}`,
    );
  }

  // ---- consumers -------------------------------------------------------------------------

  #consumers(): void {
    for (const [k, c] of this.#config.consumers.entries()) {
      const subject = `consumer:${c.username}`;
      const base: YamlPath = ['consumers', k, 'plugins'];
      const jwt = c.plugins['jwt-auth'] as Obj | undefined;
      if (jwt) {
        const alg = typeof jwt.algorithm === 'string' ? jwt.algorithm : 'HS256';
        if (typeof jwt.secret === 'string' && HS_MIN_BYTES[alg] !== undefined) {
          this.#hsSecret(subject, [...base, 'jwt-auth', 'secret'], jwt.secret, jwt.base64_secret === true, [alg], `the ${alg} secret of consumer "${c.username}"`);
        }
        if (typeof jwt.lifetime_grace_period === 'number' && jwt.lifetime_grace_period > MAX_LEEWAY) {
          this.#add(
            'jwt-exp-leeway',
            'medium',
            subject,
            [...base, 'jwt-auth', 'lifetime_grace_period'],
            `consumer "${c.username}": jwt-auth lifetime_grace_period is ${jwt.lifetime_grace_period} s: its tokens are accepted, and their connections kept, that long after exp`,
            `lower lifetime_grace_period to ${MAX_LEEWAY} s or less`,
          );
        }
        if (typeof jwt.secret === 'string') this.#secretInFile(subject, [...base, 'jwt-auth', 'secret'], `the jwt-auth secret of consumer "${c.username}"`);
      }
      const key = c.plugins['key-auth'] as Obj | undefined;
      if (key && typeof key.key === 'string') this.#secretInFile(subject, [...base, 'key-auth', 'key'], `the API key of consumer "${c.username}"`);
      const basic = c.plugins['basic-auth'] as Obj | undefined;
      if (basic && typeof basic.password === 'string' && !PASSWORD_HASH_RE.test(basic.password)) {
        this.#secretInFile(subject, [...base, 'basic-auth', 'password'], `the basic-auth password of consumer "${c.username}"`);
      }
    }
  }

  /** jwt-weak-secret: shorter than the hash of the strongest HS algorithm it verifies. */
  #hsSecret(subject: string, path: YamlPath, secret: string, base64: boolean, algs: readonly string[], what: string): void {
    let need = 0;
    let alg = '';
    for (const a of algs) {
      const n = HS_MIN_BYTES[a];
      if (n !== undefined && n > need) {
        need = n;
        alg = a;
      }
    }
    if (need === 0) return;
    const length = base64 ? Buffer.from(secret, 'base64').length : Buffer.byteLength(secret, 'utf8');
    if (length >= need) return;
    this.#add(
      'jwt-weak-secret',
      'high',
      subject,
      path,
      `${what} is shorter than ${need} bytes (the minimum for ${alg}): one captured token is enough to guess it offline and then sign any token`,
      `use a random secret of at least ${need} bytes from \${ENV} (openssl rand -base64 ${need})`,
    );
  }

  /** secret-in-file: the value is written literally, or as ${VAR:-default}. The value itself is never shown. */
  #secretInFile(subject: string, path: YamlPath, what: string): void {
    const raw = this.#locate.source(path);
    if (raw === undefined) return;
    if (!ENV_RE.test(raw)) {
      this.#add('secret-in-file', 'low', subject, path, `${what} is written in the config file: anyone who can read the file (or its repository) has it`, 'write it as ${ENV_VAR}, with no default, and set the variable where the gateway runs');
    } else if (ENV_DEFAULT_RE.test(raw)) {
      this.#add('secret-in-file', 'low', subject, path, `${what} has a default value in the config file: whenever the variable is unset, the gateway runs with that known secret`, 'drop the ":-default" so that a missing variable stops the gateway');
    }
  }

  // ---- upstreams -------------------------------------------------------------------------

  #upstreams(): void {
    for (const [k, u] of this.#config.upstreams.entries()) this.#upstream(u, ['upstreams', k]);
    for (const [i, r] of this.#config.routes.entries()) {
      if (this.#locate.has(['routes', i, 'upstream'])) this.#upstream(r.upstream, ['routes', i, 'upstream']);
    }
  }

  #upstream(u: UpstreamConfig, path: YamlPath): void {
    if (u.scheme !== 'https' || u.tls.verify) return;
    this.#add(
      'upstream-tls-unverified',
      'medium',
      `upstream:${u.id}`,
      [...path, 'tls', 'verify'],
      `upstream "${u.id}" is https with tls.verify: false: anyone between the gateway and it can impersonate it and read the traffic, credentials passed upstream included`,
      'set tls.verify: true, with tls.ca (and tls.servername) for a private CA',
    );
  }
}

/** What the browser attaches on its own that this auth plugin accepts, or undefined. */
function ambientCredential(p: Placed): string | undefined {
  const c = p.config;
  switch (p.name) {
    case 'jwt-auth':
      return `a token in the cookie "${String(c.cookie)}" (jwt-auth always reads it)`;
    case 'key-auth':
    case 'openid-connect':
      return c.cookie !== undefined ? `a credential in the cookie "${String(c.cookie)}" (${p.name})` : undefined;
    case 'basic-auth':
      return 'HTTP Basic credentials (browsers resend cached ones)';
    case 'forward-auth': {
      const headers = Array.isArray(c.request_headers) ? (c.request_headers as string[]).map((h) => h.toLowerCase()) : [];
      const sent = headers.filter((h) => h === 'cookie' || h === 'authorization');
      return sent.length > 0 ? `the ${sent.join(' and ')} header${sent.length > 1 ? 's' : ''} (forward-auth passes ${sent.length > 1 ? 'them' : 'it'} to its service)` : undefined;
    }
    default:
      return undefined;
  }
}

function describeSubject(subject: string): string {
  const colon = subject.indexOf(':');
  if (colon > 0 && ['global_rule', 'consumer', 'consumer_group'].includes(subject.slice(0, colon))) {
    return `${subject.slice(0, colon).replace('_', ' ')} "${subject.slice(colon + 1)}"`;
  }
  return `route "${subject}"`;
}

function hostPort(l: ListenConfig): string {
  return `${l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}`;
}

function bytes(n: number): string {
  if (n >= 1024 * 1024 && n % (1024 * 1024) === 0) return `${n / (1024 * 1024)} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} bytes`;
}

function unquote(raw: string): string {
  return /^(["']).*\1$/s.test(raw) ? raw.slice(1, -1) : raw;
}

function hasUrlPassword(url: string): boolean {
  try {
    return new URL(url).password !== '';
  } catch {
    return false;
  }
}
