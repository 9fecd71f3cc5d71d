/**
 * websocket-size-limit (Kong's attribute names; priority 1000000): the largest
 * WebSocket message accepted from the client (`client_max_payload`, default 1 MiB)
 * and from the upstream (`upstream_max_payload`, default 16 MiB), in bytes, measured
 * on the whole message after reassembly of fragments and after decompression.
 *
 * The limit is enforced WHILE the message is received, by the frame-mode parser
 * (`frameLimits`: the gateway sets ws's `maxPayload` of that side to the smaller of
 * this and the route's `websocket.max_payload`), so an oversized message is refused
 * as soon as its frame headers (or its inflated bytes) pass the limit and is never
 * buffered whole. The sender is closed with 1009, the other side with 1001, and
 * nothing of the message is forwarded. Control frames are bounded by the protocol
 * (125 bytes) and not counted.
 *
 * The message phase is a last-line check on what reaches it (a message a plugin
 * ran before it replaced with a larger one); it also puts the route in frame mode.
 */
import { channels, type MessageRejectedEvent } from '../../core/events.js';
import { definePlugin } from '../../core/plugin.js';
import type { Message, MessageVerdict, RequestContext } from '../../core/plugin.js';

export interface WebSocketSizeLimitConfig {
  client_max_payload: number;
  upstream_max_payload: number;
}

const NAME = 'websocket-size-limit';
function tooBig(msg: Message, ctx: RequestContext, limit: number): MessageVerdict {
  if (channels.messageRejected.hasSubscribers) {
    const ev: MessageRejectedEvent = { routeId: ctx.routeId, direction: msg.direction, reason: 'WS_MESSAGE_TOO_BIG', plugin: NAME };
    channels.messageRejected.publish(ev);
  }
  return {
    action: 'close',
    code: 1009,
    reason: 'WS_MESSAGE_TOO_BIG',
    error: 'WS_MESSAGE_TOO_BIG',
    detail: `${msg.direction} message of ${msg.data.length} bytes over ${limit}`,
  };
}

export default definePlugin<WebSocketSizeLimitConfig, WebSocketSizeLimitConfig>({
  name: NAME,
  version: '1.0.0',
  priority: 1000000,
  schema: {
    type: 'object',
    properties: {
      client_max_payload: {
        type: 'integer',
        minimum: 1,
        maximum: 2147483647,
        default: 1048576,
        description: 'Largest message from the client, bytes, after reassembly and decompression.',
      },
      upstream_max_payload: {
        type: 'integer',
        minimum: 1,
        maximum: 2147483647,
        default: 16777216,
        description: 'Largest message from the upstream, bytes, after reassembly and decompression.',
      },
    },
    additionalProperties: false,
  },
  frameLimits(config) {
    return { clientMaxPayload: config.client_max_payload, upstreamMaxPayload: config.upstream_max_payload };
  },
  message(msg, ctx, config) {
    const limit = msg.direction === 'client' ? config.client_max_payload : config.upstream_max_payload;
    if (msg.data.length > limit) return tooBig(msg, ctx, limit);
    return undefined;
  },
});
