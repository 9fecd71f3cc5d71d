/**
 * Named diagnostics channels. The core publishes; observers (access log, metrics,
 * admin) subscribe. Publishing costs nothing when nobody listens.
 */
import { channel } from 'node:diagnostics_channel';
import type { ConnectionSummary, RequestContext } from './plugin.js';

/** A request or connection finished (every way it can end, rejections included). */
export interface FinishedEvent {
  /** The gateway instance that handled it (several may run in one process). */
  source: object;
  ctx: RequestContext | undefined;
  summary: ConnectionSummary;
  method: string;
  path: string;
  routeId: string | undefined;
  clientIp: string;
  requestId: string;
  /** Cause of a rejection or failure, for the log only. */
  detail?: string;
  /** From the request's arrival to the end, seconds, high resolution (routed requests only). */
  elapsedSeconds?: number;
}

/** A WebSocket or SSE connection was accepted and joined to its upstream. */
export interface OpenedEvent {
  source: object;
  ctx: RequestContext;
  protocol: 'websocket' | 'sse';
  mode?: 'tunnel' | 'frame';
  /** From the request's arrival to the 101 (or the stream's head) sent to the client, seconds. */
  handshakeSeconds: number;
}

/**
 * A WebSocket message was refused: dropped or closed by a plugin, or over a limit
 * the frame-mode parser enforces. Never carries the message or any part of it.
 * Plugins publish their own rejections (they know the reason); frame mode publishes
 * the ones the parser detects (size limits, protocol errors).
 */
export interface MessageRejectedEvent {
  /** The gateway instance when the gateway publishes; plugins have none to give. */
  source?: object | undefined;
  routeId: string;
  /** Who sent the refused message. */
  direction: 'client' | 'upstream';
  /** A short, stable label to count by: a catalogue code or the plugin's own reason. */
  reason: string;
  /** The plugin that refused it, or undefined for the route's own limits and protocol errors. */
  plugin: string | undefined;
}

/**
 * A shared store (Redis) failed a command or became unreachable. Published per failure
 * (metrics count them); the log says so once per interval. Never carries a password.
 */
export interface StoreErrorEvent {
  /** `redis`, `redis-cluster` or `redis-sentinel`. */
  store: string;
  /** `host:port` (or the cluster's first node / the sentinel group name), without credentials. */
  address: string;
  /** A short label: `timeout`, `connection`, `script`, ... */
  kind: string;
}

/**
 * The gateway connected to an upstream node for a request or connection: how long
 * the TCP (and TLS) connect took and, for a WebSocket, the upstream handshake (from
 * writing the upgrade request to a valid 101). Published once per new upstream
 * connection (a reused keep-alive connection publishes nothing).
 */
export interface UpstreamConnectedEvent {
  source: object;
  routeId: string;
  upstreamId: string;
  protocol: 'websocket' | 'http';
  /** TCP (and TLS) connect of the node that answered, seconds. */
  connectSeconds: number;
  /** WebSocket only: the upgrade request written to the upstream's valid 101, seconds. */
  handshakeSeconds?: number;
}

export const channels = {
  opened: channel('portcullis:connection:opened'),
  finished: channel('portcullis:finished'),
  messageRejected: channel('portcullis:message:rejected'),
  storeError: channel('portcullis:store:error'),
  upstreamConnected: channel('portcullis:upstream:connected'),
} as const;
