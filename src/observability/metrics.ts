/**
 * Prometheus metrics (prom-client), one registry per gateway. Everything comes from
 * the diagnostics channels (`core/events.ts`) or is read at scrape time; nothing here
 * runs per message or per byte:
 *
 * - connections, handshakes, rejections: counted when a connection opens or finishes;
 * - messages and bytes: at each scrape, the totals of finished connections plus the
 *   counters the live connections keep anyway (`LiveConnection.stats()`);
 * - active connections: counted at each scrape from the live registry.
 *
 * Labels are bounded: route ids (from the config), protocol, direction, plugin,
 * reason class (`reasons.ts`), close class; `consumer` only when configured, capped.
 * Never a client address, a path or an error detail. `docs/metrics.md` lists them all.
 *
 * Node's process metrics (CPU, memory, event loop, GC) are process-wide: one
 * registry per process holds them, rendered after the gateway's own.
 *
 * With `gateway.workers` > 1 every worker keeps its own registry, and a scrape
 * (which reaches one worker) collects every worker's `snapshot()` through the admin
 * relay (`admin/cluster.ts`, attached by `gatherFrom`) and answers the instance's
 * total (`aggregateWorkers`): the gateway's series summed, the process series kept
 * per worker with a `pid` label.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { availableParallelism } from 'node:os';
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Config, MetricsSettings } from '../config/types.js';
import { errorBody } from '../core/errors.js';
import type { FinishedEvent, MessageRejectedEvent, OpenedEvent, StoreErrorEvent, UpstreamConnectedEvent } from '../core/events.js';
import type { Logger } from '../core/log.js';
import type { RequestContext } from '../core/plugin.js';
import type { LiveConnection } from '../server/exchange.js';
import { VERSION } from '../version.js';
import { closeClass, reasonClass } from './reasons.js';

/** What the metrics read from their gateway: the current config (it changes on reload) and the live connections. */
export interface MetricsHost {
  readonly config: Config;
  readonly connections: Iterable<LiveConnection>;
}

/** Connect and handshake latency buckets, seconds (0.5 ms to 10 s). */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Distinct values kept for labels that come from plugins (plugin names, message rejection reasons). */
const MAX_PLUGIN_VALUES = 64;

/** The value of `consumer` beyond max_consumer_labels. */
export const OTHER = 'other';

/** How long a clustered scrape waits for the workers' metrics; a worker later than that is left out. */
export const WORKER_SCRAPE_TIMEOUT_MS = 2000;

/** One metric as `Registry.getMetricsAsJSON()` gives it (plain JSON: it crosses the cluster IPC channel). */
interface MetricJson {
  name: string;
  help: string;
  type: string;
  aggregator?: string;
  values: { value: number | null; labels: Record<string, string | number>; metricName?: string }[];
}

/** One worker's metrics, for a clustered scrape. */
export interface MetricsSnapshot {
  pid: number;
  /** The gateway's registry: summed across workers. */
  gateway: MetricJson[];
  /** Node's process metrics: kept per worker (`pid` label). */
  process: MetricJson[];
}

/** Every worker's share of a relayed call (the admin relay's RelayResult). */
export interface WorkerSnapshots {
  answers: { pid: number; value?: unknown; error?: string }[];
  /** Workers asked that did not answer in time, or died. */
  missing: number;
}

/** Asks every worker of the instance for its snapshot (rejects when the cluster primary does not answer). */
export type GatherWorkers = (timeoutMs: number) => Promise<WorkerSnapshots>;

type Protocol = 'websocket' | 'sse' | 'http';

interface Totals {
  route: string;
  protocol: Protocol;
  consumer: string | undefined;
  bytesIn: number;
  bytesOut: number;
  messagesIn: number;
  messagesOut: number;
}

let processRegistry: Registry | undefined;

/** Node's default metrics, registered once per process (their GC observer and event-loop histogram never stop). */
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/** At most `max` distinct values; later ones become `other`. */
class Capped {
  readonly #seen = new Set<string>();
  readonly #max: number;
  constructor(max: number) {
    this.#max = max;
  }
  get(v: string): string {
    if (this.#seen.has(v)) return v;
    if (this.#seen.size >= this.#max) return OTHER;
    this.#seen.add(v);
    return v;
  }
}

const CHANNELS = {
  opened: 'portcullis:connection:opened',
  finished: 'portcullis:finished',
  messageRejected: 'portcullis:message:rejected',
  storeError: 'portcullis:store:error',
  upstreamConnected: 'portcullis:upstream:connected',
} as const;

export class Metrics {
  /** This gateway's registry (process metrics are rendered from a shared one). */
  readonly registry = new Registry();
  readonly #host: MetricsHost;
  readonly #settings: MetricsSettings;
  readonly #log: Logger;
  readonly #consumers: Capped | undefined;
  readonly #pluginValues = new Capped(MAX_PLUGIN_VALUES);
  readonly #reasonValues = new Capped(MAX_PLUGIN_VALUES);
  /** Contexts of this gateway's open WebSocket/SSE connections (opened, not finished). */
  readonly #open = new WeakSet<RequestContext>();
  /** Open connections per route (attributes plugin events that carry no gateway). */
  readonly #openPerRoute = new Map<string, number>();
  /** Bytes and messages of finished requests and connections. */
  readonly #totals = new Map<string, Totals>();
  readonly #listeners: [string, (m: unknown) => void][];
  #config: Config;
  /** Route ids of #config; an event for another route makes the next scrape prune. */
  #routeIds: Set<string>;
  #stale = false;
  #server: http.Server | undefined;
  #closed = false;
  /** With workers: how a scrape collects every worker's snapshot. */
  #gather: GatherWorkers | undefined;

  readonly #active: Gauge<string>;
  readonly #opened: Counter<string>;
  readonly #closedConns: Counter<string>;
  readonly #handshakes: Counter<string>;
  readonly #messages: Counter<string>;
  readonly #bytes: Counter<string>;
  readonly #messageRejections: Counter<string>;
  readonly #limitRejections: Counter<string>;
  readonly #connectSeconds: Histogram<string>;
  readonly #handshakeSeconds: Histogram<string>;
  readonly #clientHandshakeSeconds: Histogram<string>;
  readonly #storeErrors: Counter<string>;

  constructor(host: MetricsHost, settings: MetricsSettings, log: Logger) {
    this.#host = host;
    this.#settings = settings;
    this.#log = log;
    this.#config = host.config;
    this.#routeIds = new Set(host.config.routes.map((r) => r.id));
    this.#consumers = settings.consumer_label ? new Capped(settings.max_consumer_labels) : undefined;
    const c = settings.consumer_label ? ['consumer'] : [];
    const registers = [this.registry];

    // 'first': the workers of an instance run one version, so their sum would be wrong.
    new Gauge({ name: 'portcullis_build_info', help: 'Always 1; the version as a label.', labelNames: ['version'], registers, aggregator: 'first' }).set(
      { version: VERSION },
      1,
    );
    this.#active = new Gauge({
      name: 'portcullis_connections_active',
      help: 'Open WebSocket and SSE connections (joined to their upstream).',
      labelNames: ['route', 'protocol', ...c],
      registers,
    });
    this.#opened = new Counter({
      name: 'portcullis_connections_opened_total',
      help: 'WebSocket and SSE connections joined to their upstream.',
      labelNames: ['route', 'protocol', ...c],
      registers,
    });
    this.#closedConns = new Counter({
      name: 'portcullis_connections_closed_total',
      help: 'WebSocket and SSE connections that ended, by close class (none for SSE) and by who closed.',
      labelNames: ['route', 'protocol', 'close_class', 'closed_by', ...c],
      registers,
    });
    this.#handshakes = new Counter({
      name: 'portcullis_handshakes_total',
      help: 'WebSocket handshakes, SSE and plain HTTP requests, by outcome (accepted, rejected, aborted) and rejection class.',
      labelNames: ['route', 'protocol', 'outcome', 'reason'],
      registers,
    });
    this.#messages = new Counter({
      name: 'portcullis_messages_total',
      help: 'WebSocket data messages received, by sender (client or upstream), finished and live connections.',
      labelNames: ['route', 'direction', ...c],
      registers,
    });
    this.#bytes = new Counter({
      name: 'portcullis_bytes_total',
      help: 'Bytes forwarded, by sender (client or upstream), finished and live connections.',
      labelNames: ['route', 'protocol', 'direction', ...c],
      registers,
    });
    this.#messageRejections = new Counter({
      name: 'portcullis_message_rejections_total',
      help: 'WebSocket messages refused (dropped, or the connection closed), by plugin and reason.',
      labelNames: ['route', 'plugin', 'direction', 'reason'],
      registers,
    });
    this.#limitRejections = new Counter({
      name: 'portcullis_limit_rejections_total',
      help: 'Handshakes and requests refused by a limit, and connections a limit closed, by plugin and code.',
      labelNames: ['route', 'plugin', 'code'],
      registers,
    });
    this.#connectSeconds = new Histogram({
      name: 'portcullis_upstream_connect_seconds',
      help: 'TCP connect to an upstream node (new connections only).',
      labelNames: ['route', 'protocol'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#handshakeSeconds = new Histogram({
      name: 'portcullis_upstream_handshake_seconds',
      help: 'WebSocket upstream handshake: upgrade request written to a valid 101.',
      labelNames: ['route'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#clientHandshakeSeconds = new Histogram({
      name: 'portcullis_handshake_seconds',
      help: 'WebSocket and SSE handshakes as the client sees them: request received to 101 or stream head sent (accepted), or to the refusal (rejected, aborted). Includes every plugin and the upstream.',
      labelNames: ['route', 'protocol', 'outcome'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#storeErrors = new Counter({
      name: 'portcullis_store_errors_total',
      help: 'Failed commands and lost connections of shared stores (Redis), process-wide.',
      labelNames: ['store', 'address', 'kind'],
      registers,
    });

    this.#listeners = [
      [CHANNELS.opened, (m) => this.#onOpened(m as OpenedEvent)],
      [CHANNELS.finished, (m) => this.#onFinished(m as FinishedEvent)],
      [CHANNELS.messageRejected, (m) => this.#onMessageRejected(m as MessageRejectedEvent)],
      [CHANNELS.storeError, (m) => this.#onStoreError(m as StoreErrorEvent)],
      [CHANNELS.upstreamConnected, (m) => this.#onUpstreamConnected(m as UpstreamConnectedEvent)],
    ];
    for (const [name, fn] of this.#listeners) subscribe(name, fn);
  }

  /** The consumer label value, or undefined when consumers are not a label. */
  #consumer(ctx: RequestContext | undefined): string | undefined {
    if (!this.#consumers) return undefined;
    const name = ctx?.consumer?.username;
    return name === undefined ? '' : this.#consumers.get(name);
  }

  #withConsumer(labels: Record<string, string>, consumer: string | undefined): Record<string, string> {
    if (consumer !== undefined) labels.consumer = consumer;
    return labels;
  }

  /** An event for a route the config no longer has (a connection older than a reload): prune at the next scrape. */
  #seen(route: string): void {
    if (route !== '' && !this.#routeIds.has(route)) this.#stale = true;
  }

  #onOpened(ev: OpenedEvent): void {
    if (ev.source !== this.#host) return;
    const ctx = ev.ctx;
    this.#seen(ctx.routeId);
    this.#open.add(ctx);
    const route = ctx.routeId;
    this.#openPerRoute.set(route, (this.#openPerRoute.get(route) ?? 0) + 1);
    this.#opened.inc(this.#withConsumer({ route, protocol: ev.protocol }, this.#consumer(ctx)));
    this.#handshakes.inc({ route, protocol: ev.protocol, outcome: 'accepted', reason: 'none' });
    this.#clientHandshakeSeconds.observe({ route, protocol: ev.protocol, outcome: 'accepted' }, ev.handshakeSeconds);
  }

  #onFinished(ev: FinishedEvent): void {
    if (ev.source !== this.#host) return;
    const s = ev.summary;
    const ctx = ev.ctx;
    const route = ev.routeId ?? '';
    this.#seen(route);
    const consumer = this.#consumer(ctx);
    const protocol = protocolOf(ev);
    this.#addTotals(route, protocol, consumer, s.bytesIn, s.bytesOut, s.messagesIn ?? 0, s.messagesOut ?? 0);

    if (ctx !== undefined && this.#open.delete(ctx)) {
      const n = (this.#openPerRoute.get(route) ?? 1) - 1;
      if (n > 0) this.#openPerRoute.set(route, n);
      else this.#openPerRoute.delete(route);
      this.#closedConns.inc(
        this.#withConsumer(
          {
            route,
            protocol,
            close_class: protocol === 'websocket' ? closeClass(s.closeCode) : 'none',
            closed_by: s.closedBy ?? 'unknown',
          },
          consumer,
        ),
      );
      // A limit that closed a live connection (limit-messages on_exceed: close).
      if (s.closedBy === 'gateway' && s.error && reasonClass(s.error) === 'limit') this.#limitRejected(route, s.rejectedBy, s.error);
      return;
    }

    // Never opened: a plain request, or a handshake refused, failed or abandoned.
    let outcome: 'accepted' | 'rejected' | 'aborted';
    let reason = 'none';
    if (s.error) {
      outcome = 'rejected';
      reason = reasonClass(s.error);
      if (reason === 'limit') this.#limitRejected(route, s.rejectedBy, s.error);
    } else if (s.status === 499 && s.closedBy === 'client') {
      outcome = 'aborted';
    } else if (protocol === 'websocket') {
      // The upstream refused the upgrade (its answer was relayed).
      outcome = 'rejected';
      reason = 'upstream';
    } else {
      outcome = 'accepted';
    }
    this.#handshakes.inc({ route, protocol, outcome, reason });
    if (protocol !== 'http') this.#clientHandshakeSeconds.observe({ route, protocol, outcome }, ev.elapsedSeconds ?? s.durationMs / 1000);
  }

  #limitRejected(route: string, plugin: string | undefined, code: string): void {
    this.#limitRejections.inc({ route, plugin: plugin === undefined ? 'gateway' : this.#pluginValues.get(plugin), code });
  }

  #addTotals(route: string, protocol: Protocol, consumer: string | undefined, bytesIn: number, bytesOut: number, messagesIn: number, messagesOut: number): void {
    if (bytesIn === 0 && bytesOut === 0 && messagesIn === 0 && messagesOut === 0) return;
    const key = consumer === undefined ? `${route}\u0000${protocol}` : `${route}\u0000${protocol}\u0000${consumer}`;
    let t = this.#totals.get(key);
    if (!t) {
      t = { route, protocol, consumer, bytesIn: 0, bytesOut: 0, messagesIn: 0, messagesOut: 0 };
      this.#totals.set(key, t);
    }
    t.bytesIn += bytesIn;
    t.bytesOut += bytesOut;
    t.messagesIn += messagesIn;
    t.messagesOut += messagesOut;
  }

  #onMessageRejected(ev: MessageRejectedEvent): void {
    // Plugins publish without a gateway: count theirs when this gateway has open connections on that route.
    if (ev.source !== this.#host && !(ev.source === undefined && this.#openPerRoute.has(ev.routeId))) return;
    this.#seen(ev.routeId);
    this.#messageRejections.inc({
      route: ev.routeId,
      plugin: ev.plugin === undefined ? 'none' : this.#pluginValues.get(ev.plugin),
      direction: ev.direction,
      reason: this.#reasonValues.get(String(ev.reason).slice(0, 64)),
    });
  }

  #onStoreError(ev: StoreErrorEvent): void {
    this.#storeErrors.inc({ store: String(ev.store), address: String(ev.address), kind: String(ev.kind) });
  }

  #onUpstreamConnected(ev: UpstreamConnectedEvent): void {
    if (ev.source !== this.#host) return;
    this.#seen(ev.routeId);
    this.#connectSeconds.observe({ route: ev.routeId, protocol: ev.protocol }, ev.connectSeconds);
    if (ev.handshakeSeconds !== undefined) this.#handshakeSeconds.observe({ route: ev.routeId }, ev.handshakeSeconds);
  }

  /** Recompute what is read at scrape time: active connections, messages and bytes. */
  async #refresh(): Promise<void> {
    const config = this.#host.config;
    if (config !== this.#config || this.#stale) {
      this.#config = config;
      this.#routeIds = new Set(config.routes.map((r) => r.id));
      this.#stale = false;
      await this.#prune();
    }
    const byKey = new Map<string, Totals>();
    for (const [key, t] of this.#totals) byKey.set(key, { ...t });
    const active = new Map<string, { route: string; protocol: Protocol; consumer: string | undefined; n: number }>();
    const zero = this.#consumers ? '' : undefined;
    for (const r of config.routes) {
      active.set(activeKey(r.id, 'sse', zero), { route: r.id, protocol: 'sse', consumer: zero, n: 0 });
      if (r.enable_websocket) active.set(activeKey(r.id, 'websocket', zero), { route: r.id, protocol: 'websocket', consumer: zero, n: 0 });
    }
    for (const conn of this.#host.connections) {
      const x = conn.exchange;
      const route = x.route.id;
      const protocol: Protocol = x.summary.protocol === 'sse' ? 'sse' : 'websocket';
      const consumer = this.#consumer(x.ctx);
      const ak = activeKey(route, protocol, consumer);
      const a = active.get(ak);
      if (a) a.n++;
      else active.set(ak, { route, protocol, consumer, n: 1 });
      const st = conn.stats();
      const key = consumer === undefined ? `${route}\u0000${protocol}` : `${route}\u0000${protocol}\u0000${consumer}`;
      let t = byKey.get(key);
      if (!t) {
        t = { route, protocol, consumer, bytesIn: 0, bytesOut: 0, messagesIn: 0, messagesOut: 0 };
        byKey.set(key, t);
      }
      t.bytesIn += st.bytesIn;
      t.bytesOut += st.bytesOut;
      t.messagesIn += st.messagesIn;
      t.messagesOut += st.messagesOut;
    }

    this.#active.reset();
    for (const a of active.values()) this.#active.set(this.#withConsumer({ route: a.route, protocol: a.protocol }, a.consumer), a.n);
    this.#bytes.reset();
    this.#messages.reset();
    // Messages of several protocols (only WebSocket has any) land in one series per route and direction.
    const messages = new Map<string, { route: string; consumer: string | undefined; in: number; out: number }>();
    for (const t of byKey.values()) {
      this.#bytes.inc(this.#withConsumer({ route: t.route, protocol: t.protocol, direction: 'client' }, t.consumer), t.bytesIn);
      this.#bytes.inc(this.#withConsumer({ route: t.route, protocol: t.protocol, direction: 'upstream' }, t.consumer), t.bytesOut);
      if (t.protocol !== 'websocket') continue;
      const mk = `${t.route}\u0000${t.consumer ?? ''}`;
      const m = messages.get(mk) ?? { route: t.route, consumer: t.consumer, in: 0, out: 0 };
      m.in += t.messagesIn;
      m.out += t.messagesOut;
      messages.set(mk, m);
    }
    for (const m of messages.values()) {
      this.#messages.inc(this.#withConsumer({ route: m.route, direction: 'client' }, m.consumer), m.in);
      this.#messages.inc(this.#withConsumer({ route: m.route, direction: 'upstream' }, m.consumer), m.out);
    }
  }

  /**
   * After a reload: drop the series of routes the config no longer has, so they do
   * not stay forever. A connection still open on such a route shows in the scrapes
   * while it lives (its bytes from zero: a counter reset); once it ends, the next
   * scrape drops its series again.
   */
  async #prune(): Promise<void> {
    const routes = this.#routeIds;
    const gone = (route: string | number | undefined): boolean => route !== undefined && route !== '' && !routes.has(String(route));
    for (const [key, t] of this.#totals) if (gone(t.route)) this.#totals.delete(key);
    const metrics = [this.#opened, this.#closedConns, this.#handshakes, this.#messageRejections, this.#limitRejections, this.#connectSeconds, this.#handshakeSeconds, this.#clientHandshakeSeconds];
    for (const m of metrics) {
      const { values } = await m.get();
      for (const v of values) {
        if (!gone(v.labels.route)) continue;
        const { le: _le, ...labels } = v.labels as Record<string, string | number>;
        m.remove(labels as Record<string, string>);
      }
    }
  }

  /**
   * With `gateway.workers` > 1 (the admin side attaches its relay here): a scrape
   * answers every worker's metrics, collected by `gather`, instead of this worker's.
   */
  gatherFrom(gather: GatherWorkers): void {
    this.#gather = gather;
  }

  /** This gateway's and this process's metrics as plain JSON: a worker's share of a clustered scrape. */
  async snapshot(): Promise<MetricsSnapshot> {
    await this.#refresh();
    const [gateway, proc] = await Promise.all([this.registry.getMetricsAsJSON(), processMetrics().getMetricsAsJSON()]);
    return { pid: process.pid, gateway: gateway as unknown as MetricJson[], process: proc as unknown as MetricJson[] };
  }

  /**
   * The scrape, in the Prometheus text format: this gateway's metrics then the
   * process's; with workers, the whole instance's (`aggregateWorkers`).
   */
  async render(): Promise<{ contentType: string; body: string }> {
    if (this.#gather) return this.#renderWorkers(this.#gather);
    await this.#refresh();
    const own = await this.registry.metrics();
    const proc = await processMetrics().metrics();
    return { contentType: this.registry.contentType, body: `${own.endsWith('\n') ? own : `${own}\n`}${proc}` };
  }

  async #renderWorkers(gather: GatherWorkers): Promise<{ contentType: string; body: string }> {
    const w = this.#host.config.gateway.workers;
    const expected = w === 'auto' ? availableParallelism() : w;
    let result: WorkerSnapshots;
    let note: string | undefined;
    try {
      result = await gather(WORKER_SCRAPE_TIMEOUT_MS);
    } catch (err) {
      // No primary to ask (shutting down, or it is gone): what this worker knows, said as such.
      this.#log.warn({ err: err instanceof Error ? err.message : String(err) }, 'metrics: the other workers could not be asked');
      result = { answers: [{ pid: process.pid, value: await this.snapshot() }], missing: 0 };
      note = 'the cluster primary did not answer: this answer has only the metrics of the worker that received the scrape';
    }
    const { text, scraped, missing, failed } = await aggregateWorkers(result, expected, note);
    if (missing > 0) this.#log.warn({ scraped, missing, failed }, 'metrics: workers missing from a scrape');
    return { contentType: this.registry.contentType, body: text };
  }

  /** Start the separate listener (`metrics.listen`), if configured: GET /metrics only. */
  async start(): Promise<void> {
    const spec = this.#settings.listen;
    if (!spec || this.#server) return;
    const opts: http.ServerOptions = { headersTimeout: 10_000, requestTimeout: 30_000, keepAliveTimeout: 5_000, insecureHTTPParser: false };
    const server = spec.tls ? https.createServer({ ...opts, cert: spec.tls.certPem, key: spec.tls.keyPem }) : http.createServer(opts);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => this.#serve(req, res));
    server.on('clientError', (_err, socket) => socket.destroy());
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: spec.host, port: spec.port }, () => {
        server.off('error', reject);
        server.on('error', (err) => this.#log.error({ err: err.message }, 'metrics listener error'));
        resolve();
      });
    });
    this.#log.info({ metrics: this.address() }, 'metrics listening');
  }

  /** The separate listener's address, once started. */
  address(): { host: string; port: number; tls: boolean } | undefined {
    const a = this.#server?.address() as AddressInfo | null | undefined;
    return a ? { host: a.address, port: a.port, tls: this.#settings.listen?.tls !== undefined } : undefined;
  }

  #serve(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '').split('?')[0];
    if ((req.method !== 'GET' && req.method !== 'HEAD') || path !== '/metrics' || this.#closed) {
      const body = errorBody('ROUTE_NOT_FOUND', 'Not found');
      res.writeHead(404, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
      return;
    }
    this.render().then(
      ({ contentType, body }) => {
        res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      (err: unknown) => {
        this.#log.error({ err: err instanceof Error ? err.message : String(err) }, 'metrics render failed');
        const body = errorBody('INTERNAL_ERROR', 'Internal error');
        res.writeHead(500, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
      },
    );
  }

  /** Unsubscribe and close the separate listener. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const [name, fn] of this.#listeners) unsubscribe(name, fn);
    const server = this.#server;
    if (server) {
      const done = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await done;
    }
  }
}

/**
 * The whole instance's metrics from its workers' snapshots: the gateway's series
 * summed by prom-client's `AggregatorRegistry.aggregate` (counters, histograms and
 * `portcullis_connections_active`; `portcullis_build_info` is taken once), Node's
 * process series kept per worker with a `pid` label (a sum of event-loop lag, of
 * start times or of fd limits means nothing), and `portcullis_workers_scraped` /
 * `portcullis_workers_missing` saying how many workers the answer covers. Workers
 * missing (no answer in time, an error, not running) are left out, and a comment
 * line says so. `expected` is the configured number of workers.
 */
export async function aggregateWorkers(
  result: WorkerSnapshots,
  expected: number,
  note?: string,
): Promise<{ text: string; scraped: number; missing: number; failed: number }> {
  const snaps: MetricsSnapshot[] = [];
  let failed = 0;
  for (const a of result.answers) {
    if (a.error === undefined && isSnapshot(a.value)) snaps.push(a.value);
    else failed++;
  }
  snaps.sort((a, b) => a.pid - b.pid);
  const scraped = snaps.length;
  const missing = Math.max(result.missing + failed, expected - scraped, 0);
  const parts: MetricJson[][] = snaps.map((s) => s.gateway.map(numeric));
  parts.push([
    workerGauge('portcullis_workers_scraped', 'Workers whose metrics this answer holds (gateway.workers > 1 only).', scraped),
    workerGauge('portcullis_workers_missing', 'Workers left out of this answer: no answer in time, failed, or not running (gateway.workers > 1 only).', missing),
  ]);
  for (const s of snaps) {
    const pid = s.pid;
    // Labelled per worker, each series is its own: 'first' keeps it as it is (and keeps what 'omit' would drop).
    parts.push(s.process.map((m) => ({ ...m, aggregator: 'first', values: m.values.map((v) => ({ ...v, value: v.value ?? NaN, labels: { ...v.labels, pid } })) })));
  }
  const body = await AggregatorRegistry.aggregate(parts).metrics();
  const notes: string[] = [];
  if (note) notes.push(`# portcullis: ${note}`);
  if (missing > 0) {
    notes.push(
      `# portcullis: ${missing} of ${scraped + missing} workers missing from this answer (no answer within ${WORKER_SCRAPE_TIMEOUT_MS} ms, failed, or not running); their counts are not included`,
    );
  }
  const head = notes.length > 0 ? `${notes.join('\n')}\n` : '';
  return { text: `${head}${body.endsWith('\n') ? body : `${body}\n`}`, scraped, missing, failed };
}

function workerGauge(name: string, help: string, value: number): MetricJson {
  return { name, help, type: 'gauge', aggregator: 'sum', values: [{ value, labels: {} }] };
}

/** NaN crosses the IPC channel as null: give it back (a sum would read null as 0). */
function numeric(m: MetricJson): MetricJson {
  return m.values.some((v) => v.value === null) ? { ...m, values: m.values.map((v) => ({ ...v, value: v.value ?? NaN })) } : m;
}

function isSnapshot(v: unknown): v is MetricsSnapshot {
  if (typeof v !== 'object' || v === null) return false;
  const s = v as Partial<MetricsSnapshot>;
  return typeof s.pid === 'number' && Array.isArray(s.gateway) && Array.isArray(s.process);
}

function activeKey(route: string, protocol: Protocol, consumer: string | undefined): string {
  return consumer === undefined ? `${route}\u0000${protocol}` : `${route}\u0000${protocol}\u0000${consumer}`;
}

/** websocket, sse (a stream, or a request asking for one), or http. */
function protocolOf(ev: FinishedEvent): Protocol {
  const p = ev.summary.protocol;
  if (p === 'websocket' || p === 'sse') return p;
  const accept = ev.ctx?.headers.accept;
  return typeof accept === 'string' && accept.includes('text/event-stream') ? 'sse' : 'http';
}
