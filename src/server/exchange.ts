/**
 * One request or connection from routing to its end: the context, the route's
 * pipeline and upstream, and the single place that finishes it (log phase,
 * access log event) exactly once, on every way it can end.
 */
import type { RouteConfig } from '../config/types.js';
import type { ErrorCode } from '../core/errors.js';
import { channels, type FinishedEvent, type OpenedEvent, type UpstreamConnectedEvent } from '../core/events.js';
import type { Logger } from '../core/log.js';
import type { Pipeline } from '../core/pipeline.js';
import type { ConnectionSummary, Protocol, Rejection } from '../core/plugin.js';
import type { Upstream } from '../upstream/upstream.js';
import type { ConsumerBlocks } from './blocks.js';
import type { Context } from './context.js';

/** A live WebSocket or SSE connection the gateway can end (shutdown, revocation). */
export interface LiveConnection {
  readonly exchange: Exchange;
  /** End gracefully for shutdown: WebSocket close with `code`, SSE stream ended. */
  shutdown(code: number, reason: string): void;
  /**
   * End gracefully for a cause (credential expired, revoked, idle): WebSocket close
   * with `code` and `reason` toward the client (1001 toward the upstream), SSE
   * stream ended; `error` is recorded for the log.
   */
  close(code: number, reason: string, error: ErrorCode | undefined): void;
  /** Cut now. */
  destroy(): void;
  /**
   * What went through so far, each way (`in`: from the client). Read on demand
   * (metrics scrape, admin API) from counters the transport keeps anyway; for SSE
   * the message counts are 0 (events are not counted).
   */
  stats(): ConnectionStats;
}

/** Counters of a live connection; the same numbers end up in its ConnectionSummary. */
export interface ConnectionStats {
  bytesIn: number;
  bytesOut: number;
  messagesIn: number;
  messagesOut: number;
}

export interface ForwardingInfo {
  /** Socket peer address. */
  readonly peer: string;
  readonly peerTrusted: boolean;
  /** Believed X-Forwarded-For entries (from trusted proxies), client first. */
  readonly forwardedFor: string[];
  readonly proto: 'http' | 'https';
  readonly port: number;
}

export class Exchange {
  readonly ctx: Context;
  readonly route: RouteConfig;
  /** The route's pipeline; after authentication, the identified consumer's (see runAccess). */
  pipeline: Pipeline;
  readonly upstream: Upstream;
  readonly fwd: ForwardingInfo;
  readonly log: Logger;
  readonly summary: ConnectionSummary;
  /** The gateway instance, named in published events. */
  readonly source: object;
  #finished = false;
  /** When the exchange began, for the handshake-latency figures (performance.now(), ms). */
  readonly #startedHr = performance.now();
  /** Run once when the exchange finishes, before the log phase (the gateway's handshake bookkeeping). */
  onFinish: (() => void) | undefined = undefined;
  /** Consumers blocked by the admin API: an identified consumer among them is refused after rewrite. */
  blocks: ConsumerBlocks | undefined = undefined;

  constructor(
    source: object,
    ctx: Context,
    route: RouteConfig,
    pipeline: Pipeline,
    upstream: Upstream,
    fwd: ForwardingInfo,
    log: Logger,
    protocol: Protocol,
  ) {
    this.source = source;
    this.ctx = ctx;
    this.route = route;
    this.pipeline = pipeline;
    this.upstream = upstream;
    this.fwd = fwd;
    this.log = log;
    this.summary = {
      protocol,
      status: 0,
      durationMs: 0,
      bytesIn: 0,
      bytesOut: 0,
      messagesIn: null,
      messagesOut: null,
    };
  }

  get finished(): boolean {
    return this.#finished;
  }

  /**
   * The request phases: every plugin's rewrite, then (with the consumer's own plugin
   * configs merged in, once one is identified) every plugin's access. Synchronous
   * unless a plugin returns a promise.
   */
  runAccess(): Rejection | undefined | Promise<Rejection | undefined> {
    const r = this.pipeline.runPhase('rewrite', this.ctx, this.summary);
    if (r instanceof Promise) return r.then((v) => (v ? v : this.#access()));
    return r ? r : this.#access();
  }

  #access(): Rejection | undefined | Promise<Rejection | undefined> {
    const consumer = this.ctx.consumer;
    if (consumer) {
      const wait = this.blocks?.remaining(consumer.username) ?? 0;
      if (wait > 0) {
        return { reject: 'REVOKED', headers: { 'retry-after': String(wait) }, detail: `consumer blocked by the admin API for ${wait} s more` };
      }
      this.pipeline = this.pipeline.forConsumer(consumer.username);
    }
    return this.pipeline.runPhase('access', this.ctx, this.summary);
  }

  /** The connection was accepted and joined to its upstream: tell observers. */
  opened(protocol: 'websocket' | 'sse', mode?: 'tunnel' | 'frame'): void {
    if (channels.opened.hasSubscribers) {
      const ev: OpenedEvent = {
        source: this.source,
        ctx: this.ctx,
        protocol,
        ...(mode ? { mode } : {}),
        handshakeSeconds: (performance.now() - this.#startedHr) / 1000,
      };
      channels.opened.publish(ev);
    }
  }

  /**
   * A new connection to an upstream node was made for this exchange: tell observers
   * how long the connect (and the WebSocket upstream handshake) took, in ms.
   */
  upstreamConnected(protocol: 'websocket' | 'http', connectMs: number, handshakeMs?: number): void {
    if (channels.upstreamConnected.hasSubscribers) {
      const ev: UpstreamConnectedEvent = {
        source: this.source,
        routeId: this.route.id,
        upstreamId: this.upstream.config.id,
        protocol,
        connectSeconds: connectMs / 1000,
        ...(handshakeMs !== undefined ? { handshakeSeconds: handshakeMs / 1000 } : {}),
      };
      channels.upstreamConnected.publish(ev);
    }
  }

  /**
   * The client went away before a response or 101 reached it: logged as 499 (the
   * status NGINX uses for it), closed by the client. No-op once finished.
   */
  clientLeft(detail?: string): void {
    if (this.#finished) return;
    this.summary.status = 499;
    this.summary.closedBy = 'client';
    this.finish(detail);
  }

  /** Runs the log phase and publishes the finished event, once. */
  finish(detail?: string): void {
    if (this.#finished) return;
    this.#finished = true;
    this.onFinish?.();
    const s = this.summary;
    s.durationMs = Date.now() - this.ctx.startedAt;
    this.pipeline.runLog(this.ctx, s, this.log);
    if (channels.finished.hasSubscribers) {
      const ev: FinishedEvent = {
        source: this.source,
        ctx: this.ctx,
        summary: s,
        method: this.ctx.method,
        path: this.ctx.path,
        routeId: this.route.id,
        clientIp: this.ctx.clientIp,
        requestId: this.ctx.id,
        ...(detail ? { detail } : {}),
        elapsedSeconds: (performance.now() - this.#startedHr) / 1000,
      };
      channels.finished.publish(ev);
    }
  }
}
