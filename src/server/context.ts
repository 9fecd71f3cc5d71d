/** Builds the RequestContext every phase sees, once per request or handshake. */
import type { IncomingHttpHeaders } from 'node:http';
import type { Consumer, PluginLogger, RequestContext } from '../core/plugin.js';

export class Context implements RequestContext {
  readonly id: string;
  readonly routeId: string;
  readonly method: string;
  readonly path: string;
  readonly query: string;
  readonly host: string;
  readonly scheme: 'http' | 'https';
  readonly headers: IncomingHttpHeaders;
  readonly clientIp: string;
  readonly websocket: boolean;
  readonly startedAt: number;
  readonly params: Readonly<Record<string, string>>;
  consumer: Consumer | undefined = undefined;
  expiresAt: number | undefined = undefined;
  readonly upstreamHeaders: Record<string, string | null> = {};
  readonly responseHeaders: Record<string, string> = {};
  // Sets and maps most requests never use are made on first use: a tunnelled connection
  // keeps its context for its whole life, and every empty collection is RSS per connection.
  #dropProtocols: Set<string> | undefined;
  #stripQuery: Set<string> | undefined;
  #vars: Map<string, unknown> | undefined;

  get dropProtocols(): Set<string> {
    return (this.#dropProtocols ??= new Set());
  }

  get stripQuery(): Set<string> {
    return (this.#stripQuery ??= new Set());
  }

  get vars(): Map<string, unknown> {
    return (this.#vars ??= new Map());
  }

  /** The withheld subprotocols, without creating the set. */
  droppedProtocols(): ReadonlySet<string> | undefined {
    return this.#dropProtocols !== undefined && this.#dropProtocols.size > 0 ? this.#dropProtocols : undefined;
  }
  readonly log: PluginLogger;

  constructor(init: {
    id: string;
    routeId: string;
    method: string;
    path: string;
    query: string;
    host: string;
    scheme: 'http' | 'https';
    headers: IncomingHttpHeaders;
    clientIp: string;
    websocket: boolean;
    startedAt: number;
    params: Record<string, string>;
    log: PluginLogger;
  }) {
    this.id = init.id;
    this.routeId = init.routeId;
    this.method = init.method;
    this.path = init.path;
    this.query = init.query;
    this.host = init.host;
    this.scheme = init.scheme;
    this.headers = init.headers;
    this.clientIp = init.clientIp;
    this.websocket = init.websocket;
    this.startedAt = init.startedAt;
    this.params = init.params;
    this.log = init.log;
  }

  limitLifetime(epochMs: number): void {
    if (this.expiresAt === undefined || epochMs < this.expiresAt) this.expiresAt = epochMs;
  }

  /**
   * Header changes for the upstream request: the plugins' changes, the request id,
   * and who the consumer is. Copies of the consumer headers sent by the client are
   * always removed.
   */
  upstreamSet(): Record<string, string | null> {
    const c = this.consumer;
    return {
      ...this.upstreamHeaders,
      'x-request-id': this.id,
      'x-consumer-username': c ? c.username : null,
      'x-credential-identifier': c?.credential_id ?? null,
      'x-consumer-group': c?.group_id ?? null,
    };
  }

  /** Path and query for the upstream request, with stripped query parameters removed. */
  upstreamTarget(): string {
    if (this.query === '') return this.path;
    if (this.#stripQuery === undefined || this.#stripQuery.size === 0) return `${this.path}?${this.query}`;
    const params = new URLSearchParams(this.query);
    for (const name of this.stripQuery) params.delete(name);
    const q = params.toString();
    return q === '' ? this.path : `${this.path}?${q}`;
  }
}
