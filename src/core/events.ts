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
}

/** A WebSocket or SSE connection was accepted and joined to its upstream. */
export interface OpenedEvent {
  source: object;
  ctx: RequestContext;
  protocol: 'websocket' | 'sse';
  mode?: 'tunnel' | 'frame';
}

export const channels = {
  opened: channel('portcullis:connection:opened'),
  finished: channel('portcullis:finished'),
} as const;
