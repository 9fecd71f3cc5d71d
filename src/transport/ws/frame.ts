/**
 * Frame mode: the gateway terminates WebSocket on both sides (with `ws`) and
 * passes every complete message through the route's message plugins: client
 * messages in priority order, upstream messages in reverse. Used only when some
 * plugin on the route has a `message` phase.
 *
 * Messages stay in order: while a plugin verdict is pending, later messages of
 * that direction wait in a queue and the source is paused (a pending verdict
 * counts as a full buffer).
 */
import type { WebSocket } from 'ws';
import type { ErrorCode } from '../../core/errors.js';
import { ERRORS } from '../../core/errors.js';
import { WsMessage } from '../../core/pipeline.js';
import type { Direction, MessageVerdict } from '../../core/plugin.js';
import type { Exchange, LiveConnection } from '../../server/exchange.js';
import type { LiveRegistry } from '../http/sse.js';
import { errorForWsError, peerCloseCode } from './close-codes.js';

/** Pause a source while its destination holds more than this many unsent bytes. */
const HIGH_WATER = 1024 * 1024;
const CLOSE_GRACE_MS = 3000;

interface Side {
  readonly dir: Direction;
  /** Where messages of this direction come from and go to. */
  readonly src: WebSocket;
  readonly dst: WebSocket;
  readonly queue: [Buffer, boolean][];
  busy: boolean;
  paused: boolean;
  count: number;
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

  constructor(x: Exchange, client: WebSocket, upstream: WebSocket, live: LiveRegistry) {
    this.exchange = x;
    this.#live = live;
    this.#fromClient = { dir: 'client', src: client, dst: upstream, queue: [], busy: false, paused: false, count: 0 };
    this.#fromUpstream = { dir: 'upstream', src: upstream, dst: client, queue: [], busy: false, paused: false, count: 0 };
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
    const verdict = this.exchange.pipeline.runMessage(msg, this.exchange.ctx);
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
        if (v.reply !== undefined && side.src.readyState === side.src.OPEN) side.src.send(v.reply);
        return;
      case 'close': {
        const error = v.error ?? 'MESSAGE_REJECTED';
        if (v.detail) this.exchange.log.info({ request_id: this.exchange.ctx.id, direction: side.dir, error, detail: v.detail }, 'message rejected');
        // Toward the sender: the verdict's code. Toward the other side: going away.
        this.#gatewayError = error;
        this.#gatewayCode = v.code;
        this.#closing = true;
        this.#closeSocket(side.src, v.code, v.reason ?? error);
        this.#closeSocket(side.dst, 1001, '');
        this.#armGrace();
        return;
      }
    }
  }

  #send(side: Side, data: Buffer, binary: boolean): void {
    const dst = side.dst;
    if (dst.readyState !== dst.OPEN) return;
    const s = this.exchange.summary;
    if (side.dir === 'client') s.bytesIn += data.length;
    else s.bytesOut += data.length;
    if (dst.bufferedAmount > HIGH_WATER) {
      this.#pause(side);
      dst.send(data, { binary }, () => this.#resume(side));
    } else {
      dst.send(data, { binary });
    }
  }

  #pause(side: Side): void {
    if (!side.paused) {
      side.paused = true;
      side.src.pause();
    }
  }

  #resume(side: Side): void {
    if (side.paused && !side.busy) {
      side.paused = false;
      side.src.resume();
    }
  }

  #onClose(side: Side, code: number, reason: Buffer): void {
    if (!this.#firstCloser && !this.#closing) {
      this.#firstCloser = side.dir;
      this.#firstCode = code;
    }
    if (!this.#closing) {
      this.#closing = true;
      // Pass the close on: same code and reason, or the code a proxy must use when a side vanished.
      const forward = peerCloseCode(side.dir, code);
      this.#closeSocket(side.dst, forward, forward === code ? reason.toString() : '');
      this.#armGrace();
    }
    if (++this.#closedCount === 2) this.#finish();
  }

  #onError(side: Side, err: Error): void {
    // ws closes the failing side itself with the right code (1002, 1007, 1009); tell the other side we are going away.
    const error = errorForWsError(err);
    if (!this.#closing) {
      this.#closing = true;
      this.#gatewayError = error;
      this.#gatewayCode = ERRORS[error].close;
      this.exchange.log.info({ request_id: this.exchange.ctx.id, direction: side.dir, error, detail: err.message }, 'websocket error');
      this.#closeSocket(side.dst, 1001, '');
      this.#armGrace();
    }
  }

  close(code: number, reason: string, error: ErrorCode | undefined): void {
    if (this.#closing) return;
    this.#closing = true;
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
