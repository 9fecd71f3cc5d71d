/**
 * Frame mode: the gateway terminates WebSocket on both sides (with `ws`) and
 * passes every complete message through the route's message plugins: client
 * messages in priority order, upstream messages in reverse. Used only when some
 * plugin on the route has a `message` or `control` phase or sets frame limits.
 * Pings and pongs (answered by ws itself) go to the `control` phase when some
 * plugin has one.
 *
 * Messages stay in order: while a plugin verdict is pending, later messages of
 * that direction wait in a queue and the source is paused (a pending verdict
 * counts as a full buffer).
 *
 * Flow control, both directions: when the destination holds more than
 * `websocket.max_buffered` unsent bytes the source is paused (TCP backpressure
 * then reaches the fast peer) and resumed once the destination has drained. A
 * destination that keeps the buffer above the mark for `websocket.stall_timeout`
 * seconds has stopped reading: it is closed with 1008 WS_STALLED, the other side
 * with 1001.
 */
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import type { ErrorCode } from '../../core/errors.js';
import { ERRORS } from '../../core/errors.js';
import { channels, type MessageRejectedEvent } from '../../core/events.js';
import { WsMessage } from '../../core/pipeline.js';
import type { Direction, MessageVerdict } from '../../core/plugin.js';
import type { ConnectionStats, Exchange, LiveConnection } from '../../server/exchange.js';
import type { LiveRegistry } from '../http/sse.js';
import { errorForWsError, peerCloseCode } from './close-codes.js';

const CLOSE_GRACE_MS = 3000;
const SEND_TEXT = { binary: false } as const;
const SEND_BINARY = { binary: true } as const;

interface Side {
  readonly dir: Direction;
  /** Where messages of this direction come from and go to. */
  readonly src: WebSocket;
  readonly dst: WebSocket;
  readonly queue: [Buffer, boolean][];
  /** A plugin verdict is pending. */
  busy: boolean;
  /** dst holds more than max_buffered unsent bytes. */
  blocked: boolean;
  /** When it became blocked (ms). */
  blockedAt: number;
  /** Sends still waiting for their write callback since it became blocked. */
  pendingWrites: number;
  /** src is paused (busy or blocked). */
  paused: boolean;
  stallTimer: NodeJS.Timeout | undefined;
  /** dst's socket is corked until the next tick (messages of one read leave in one write). */
  corked: boolean;
  count: number;
  /** The write callback of sends made while blocked: one function per side, not per message. */
  drained: () => void;
}

export class FrameBridge implements LiveConnection {
  readonly exchange: Exchange;
  readonly #live: LiveRegistry;
  readonly #fromClient: Side;
  readonly #fromUpstream: Side;
  #pinger: NodeJS.Timeout | undefined;
  #idleTimer: NodeJS.Timeout | undefined;
  #lastActivity = Date.now();
  #graceTimer: NodeJS.Timeout | undefined;
  #closing = false;
  #closedCount = 0;
  #gatewayError: ErrorCode | undefined;
  #gatewayCode: number | undefined;
  #firstCloser: 'client' | 'upstream' | undefined;
  #firstCode: number | undefined;

  readonly #maxBuffered: number;
  readonly #stallMs: number;

  constructor(x: Exchange, client: WebSocket, upstream: WebSocket, live: LiveRegistry) {
    this.exchange = x;
    this.#live = live;
    this.#maxBuffered = x.route.websocket.max_buffered;
    this.#stallMs = x.route.websocket.stall_timeout * 1000;
    this.#fromClient = this.#side('client', client, upstream);
    this.#fromUpstream = this.#side('upstream', upstream, client);
  }

  #side(dir: Direction, src: WebSocket, dst: WebSocket): Side {
    const side: Side = {
      dir, src, dst, queue: [], busy: false, blocked: false, blockedAt: 0, pendingWrites: 0, paused: false, stallTimer: undefined, corked: false, count: 0,
      drained: () => this.#drained(side),
    };
    return side;
  }

  start(): void {
    const client = this.#fromClient.src;
    const upstream = this.#fromUpstream.src;
    client.on('message', (data: Buffer, isBinary: boolean) => this.#onMessage(this.#fromClient, data, isBinary));
    upstream.on('message', (data: Buffer, isBinary: boolean) => this.#onMessage(this.#fromUpstream, data, isBinary));
    client.on('close', (code: number, reason: Buffer) => this.#onClose(this.#fromClient, code, reason));
    upstream.on('close', (code: number, reason: Buffer) => this.#onClose(this.#fromUpstream, code, reason));
    client.on('error', (err: Error) => this.#onError(this.#fromClient, err));
    upstream.on('error', (err: Error) => this.#onError(this.#fromUpstream, err));
    // Control plugins (limit-messages) see pings and pongs; ws answers the pings itself (autoPong).
    if (this.exchange.pipeline.hasControl) {
      client.on('ping', (data: Buffer) => this.#onControl(this.#fromClient, 'ping', data));
      client.on('pong', (data: Buffer) => this.#onControl(this.#fromClient, 'pong', data));
      upstream.on('ping', (data: Buffer) => this.#onControl(this.#fromUpstream, 'ping', data));
      upstream.on('pong', (data: Buffer) => this.#onControl(this.#fromUpstream, 'pong', data));
    }
    const settings = this.exchange.route.websocket;
    // Idle means no message and no ping from either peer: the gateway's own pings (and
    // the pongs they draw) must not keep an abandoned connection alive.
    if (settings.idle_timeout > 0) {
      client.on('ping', () => this.#touch());
      upstream.on('ping', () => this.#touch());
      this.#idleTimer = setTimeout(checkIdle, settings.idle_timeout * 1000, this);
    }
    if (settings.ping_interval > 0) {
      this.#pinger = setInterval(() => {
        if (client.readyState === client.OPEN) client.ping();
      }, settings.ping_interval * 1000);
      this.#pinger.unref();
    }
    this.#live.add(this);
    this.exchange.opened('websocket', 'frame');
  }

  #touch(): void {
    this.#lastActivity = Date.now();
  }

  /** Idle check: close when quiet for idle_timeout, else look again when it could be. */
  checkIdle(): void {
    this.#idleTimer = undefined;
    if (this.#closing) return;
    const idleMs = this.exchange.route.websocket.idle_timeout * 1000;
    const quiet = Date.now() - this.#lastActivity;
    if (quiet >= idleMs) {
      this.close(ERRORS.WS_IDLE_TIMEOUT.close, 'idle timeout', 'WS_IDLE_TIMEOUT');
      return;
    }
    this.#idleTimer = setTimeout(checkIdle, idleMs - quiet, this);
  }

  #onControl(side: Side, kind: 'ping' | 'pong', data: Buffer): void {
    if (this.#closing) return;
    const v = this.exchange.pipeline.runControl(kind, side.dir, data.length, this.exchange.ctx);
    if (v && v.action === 'close') this.#closeFrom(side, v);
  }

  #onMessage(side: Side, data: Buffer, isBinary: boolean): void {
    this.#lastActivity = Date.now();
    if (this.#closing) return;
    if (side.busy) {
      side.queue.push([data, isBinary]);
      return;
    }
    this.#process(side, data, isBinary);
  }

  #process(side: Side, data: Buffer, isBinary: boolean): void {
    side.count++;
    const msg = new WsMessage(side.dir, data, isBinary);
    const verdict = this.exchange.pipeline.runMessage(msg, this.exchange.ctx, this.exchange.summary);
    if (verdict instanceof Promise) {
      side.busy = true;
      this.#pause(side);
      verdict.then(
        (v) => this.#settled(side, msg, v),
        () => this.#settled(side, msg, { action: 'close', code: 1011, error: 'PLUGIN_ERROR' }),
      );
      return;
    }
    this.#apply(side, msg, verdict);
  }

  #settled(side: Side, msg: WsMessage, v: MessageVerdict): void {
    side.busy = false;
    this.#apply(side, msg, v);
    while (!side.busy && side.queue.length > 0 && !this.#closing) {
      const [data, isBinary] = side.queue.shift()!;
      this.#process(side, data, isBinary);
    }
    if (!side.busy) this.#resume(side);
  }

  #apply(side: Side, msg: WsMessage, v: MessageVerdict): void {
    if (this.#closing) return;
    if (!v || v.action === 'pass') return this.#send(side, msg.data, msg.binary);
    switch (v.action) {
      case 'replace': {
        const data = typeof v.data === 'string' ? Buffer.from(v.data) : v.data;
        return this.#send(side, data, v.binary ?? msg.binary);
      }
      case 'drop':
        if (v.detail) this.exchange.log.info({ request_id: this.exchange.ctx.id, direction: side.dir, error: v.error ?? 'MESSAGE_REJECTED', detail: v.detail }, 'message dropped');
        if (v.reply !== undefined && side.src.readyState === side.src.OPEN) side.src.send(v.reply);
        return;
      case 'close':
        return this.#closeFrom(side, v);
    }
  }

  /** A close verdict on something side.src sent. */
  #closeFrom(side: Side, v: { code: number; reason?: string; error?: ErrorCode; detail?: string }): void {
    const error = v.error ?? 'MESSAGE_REJECTED';
    if (v.detail) this.exchange.log.info({ request_id: this.exchange.ctx.id, direction: side.dir, error, detail: v.detail }, 'message rejected');
    // Toward the sender: the verdict's code. Toward the other side: going away.
    this.#gatewayError = error;
    this.#gatewayCode = v.code;
    this.#beginClose();
    this.#closeSocket(side.src, v.code, v.reason ?? error);
    this.#closeSocket(side.dst, 1001, '');
    this.#armGrace();
  }

  #send(side: Side, data: Buffer, binary: boolean): void {
    const dst = side.dst;
    if (dst.readyState !== dst.OPEN) return;
    const s = this.exchange.summary;
    if (side.dir === 'client') s.bytesIn += data.length;
    else s.bytesOut += data.length;
    const opts = binary ? SEND_BINARY : SEND_TEXT;
    // ws hands over every message of one socket read in the same tick; without this each
    // would be its own write syscall (77% of frame mode's CPU in the profile). Corking the
    // destination until the next tick sends them in one writev, as the tunnel does.
    if (!side.corked) {
      const sock = (dst as unknown as { _socket?: Socket })._socket;
      if (sock && !sock.destroyed) {
        side.corked = true;
        sock.cork();
        process.nextTick(uncork, side, sock);
      }
    }
    if (dst.bufferedAmount + data.length <= this.#maxBuffered) {
      dst.send(data, opts);
      return;
    }
    // Over the high-water mark: stop reading from the source until dst drains.
    if (!side.blocked) this.#block(side);
    side.pendingWrites++;
    dst.send(data, opts, side.drained);
  }

  #block(side: Side): void {
    side.blocked = true;
    side.blockedAt = Date.now();
    this.#pause(side);
    if (this.#stallMs > 0 && !side.stallTimer) side.stallTimer = setTimeout(checkStall, this.#stallMs, this, side);
  }

  /** A send made while blocked was written (or failed because the socket closed). */
  #drained(side: Side): void {
    side.pendingWrites--;
    if (!side.blocked) return;
    // The last pending write always unblocks, so a side can never stay blocked with nothing to wait for.
    if (side.pendingWrites > 0 && side.dst.bufferedAmount > this.#maxBuffered) return;
    side.blocked = false;
    this.#resume(side);
  }

  /** Stall check: the destination kept the buffer above the mark for stall_timeout? */
  checkStall(side: Side): void {
    side.stallTimer = undefined;
    if (this.#closing || !side.blocked) return;
    const waited = Date.now() - side.blockedAt;
    if (waited < this.#stallMs) {
      side.stallTimer = setTimeout(checkStall, this.#stallMs - waited, this, side);
      return;
    }
    // side.dst stopped reading. Its close frame waits behind what it has not read: it
    // gets it if it resumes within the grace period, else it is cut.
    const stalled = side.dst;
    this.exchange.log.warn(
      {
        request_id: this.exchange.ctx.id,
        peer: side.dir === 'client' ? 'upstream' : 'client',
        buffered: stalled.bufferedAmount,
        stall_timeout: this.#stallMs / 1000,
        error: 'WS_STALLED',
      },
      'websocket peer stopped reading',
    );
    this.#gatewayError = 'WS_STALLED';
    this.#gatewayCode = ERRORS.WS_STALLED.close;
    this.#beginClose();
    this.#closeSocket(stalled, ERRORS.WS_STALLED.close, 'WS_STALLED');
    this.#closeSocket(side.src, 1001, '');
    this.#armGrace();
  }

  #pause(side: Side): void {
    if (!side.paused) {
      side.paused = true;
      side.src.pause();
    }
  }

  #resume(side: Side): void {
    if (side.paused && !side.busy && !side.blocked) {
      side.paused = false;
      side.src.resume();
    }
  }

  /**
   * From now on nothing is forwarded. Paused sources are resumed (what they send is
   * discarded) so that their close frames, and the end of their connections, are
   * read rather than left behind the pause.
   */
  #beginClose(): void {
    this.#closing = true;
    for (const side of [this.#fromClient, this.#fromUpstream]) {
      side.queue.length = 0;
      if (side.stallTimer) {
        clearTimeout(side.stallTimer);
        side.stallTimer = undefined;
      }
      if (side.paused) {
        side.paused = false;
        side.src.resume();
      }
    }
  }

  #onClose(side: Side, code: number, reason: Buffer): void {
    if (!this.#firstCloser && !this.#closing) {
      this.#firstCloser = side.dir;
      this.#firstCode = code;
    }
    if (!this.#closing) {
      this.#beginClose();
      // Pass the close on: same code and reason, or the code a proxy must use when a side vanished.
      const forward = peerCloseCode(side.dir, code);
      this.#closeSocket(side.dst, forward, forward === code ? reason.toString() : '');
      this.#armGrace();
    }
    if (++this.#closedCount === 2) this.#finish();
  }

  #onError(side: Side, err: Error): void {
    // The failing side is already closed with the catalogue's code (harden.ts); tell the other side we are going away.
    const error = errorForWsError(err);
    if (!this.#closing) {
      this.#gatewayError = error;
      this.#gatewayCode = ERRORS[error].close;
      this.exchange.log.info({ request_id: this.exchange.ctx.id, direction: side.dir, error, detail: err.message }, 'websocket error');
      this.#beginClose();
      this.#closeSocket(side.dst, 1001, '');
      this.#armGrace();
      const plugin = this.#limitPlugin(side.dir, err);
      if (plugin !== undefined) this.exchange.summary.rejectedBy = plugin;
      if (channels.messageRejected.hasSubscribers) this.#publishRejected(side.dir, error, plugin);
    }
  }

  /** The plugin whose size limit the parser enforced, when that is what failed. */
  #limitPlugin(dir: Direction, err: Error): string | undefined {
    const code = (err as NodeJS.ErrnoException).code;
    const sizeLimit = code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' || code === 'WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH';
    const x = this.exchange;
    return sizeLimit ? x.pipeline.frameLimits(x.route.websocket)[dir].plugin : undefined;
  }

  /** A message refused by the parser: over a size limit (the plugin that set it, if any) or a protocol error. */
  #publishRejected(dir: Direction, reason: ErrorCode, plugin: string | undefined): void {
    const x = this.exchange;
    const ev: MessageRejectedEvent = {
      source: x.source,
      routeId: x.route.id,
      direction: dir,
      reason,
      plugin,
    };
    channels.messageRejected.publish(ev);
  }

  stats(): ConnectionStats {
    const s = this.exchange.summary;
    return { bytesIn: s.bytesIn, bytesOut: s.bytesOut, messagesIn: this.#fromClient.count, messagesOut: this.#fromUpstream.count };
  }

  close(code: number, reason: string, error: ErrorCode | undefined): void {
    if (this.#closing) return;
    this.#beginClose();
    this.#gatewayError = error;
    this.#gatewayCode = code;
    this.#closeSocket(this.#fromUpstream.dst, code, reason);
    this.#closeSocket(this.#fromClient.dst, code === 1014 ? 1001 : code, reason);
    this.#armGrace();
  }

  shutdown(code: number, reason: string): void {
    this.close(code, reason, 'SHUTTING_DOWN');
  }

  destroy(): void {
    this.#fromClient.src.terminate();
    this.#fromUpstream.src.terminate();
  }

  #closeSocket(ws: WebSocket, code: number, reason: string): void {
    if (ws.readyState === ws.CLOSING || ws.readyState === ws.CLOSED) return;
    try {
      if (code === 1005) ws.close();
      else ws.close(code, reason);
    } catch {
      ws.terminate();
    }
  }

  #armGrace(): void {
    if (this.#graceTimer) return;
    this.#graceTimer = setTimeout(() => this.destroy(), CLOSE_GRACE_MS);
    this.#graceTimer.unref();
  }

  #finish(): void {
    if (this.#pinger) clearInterval(this.#pinger);
    if (this.#fromClient.stallTimer) clearTimeout(this.#fromClient.stallTimer);
    if (this.#fromUpstream.stallTimer) clearTimeout(this.#fromUpstream.stallTimer);
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    if (this.#graceTimer) clearTimeout(this.#graceTimer);
    this.#live.delete(this);
    const s = this.exchange.summary;
    s.messagesIn = this.#fromClient.count;
    s.messagesOut = this.#fromUpstream.count;
    if (this.#gatewayError) {
      s.closedBy = 'gateway';
      s.error = this.#gatewayError;
      s.closeCode = this.#gatewayCode;
    } else {
      s.closedBy = this.#firstCloser ?? 'client';
      s.closeCode = this.#firstCode ?? 1006;
    }
    this.exchange.finish();
  }
}

function checkIdle(bridge: FrameBridge): void {
  bridge.checkIdle();
}

function checkStall(bridge: FrameBridge, side: Side): void {
  bridge.checkStall(side);
}

function uncork(side: { corked: boolean }, sock: Socket): void {
  side.corked = false;
  sock.uncork();
}
