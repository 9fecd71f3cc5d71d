/**
 * Tunnel mode, the fast path: after both 101s, client and upstream sockets are
 * joined as a byte pipe. Frames are not parsed or unmasked; a boundary tracker
 * per direction reads only frame headers, so the gateway can count messages,
 * see close codes, and inject its own close frame between frames (idle timeout,
 * shutdown, revocation, upstream loss).
 *
 * Each direction's tracker is driven header by header (`scan`): every frame header
 * is checked before any byte of that frame is forwarded, against the route's
 * `websocket.max_payload` (the payload lengths of one message's frames, as sent)
 * and, with a plugin `frame` phase on the route (limit-messages), through
 * `Pipeline.runFrame`. A refusal
 * forwards the bytes before the frame, then ends that direction with the gateway's
 * close frame right there (a frame boundary), so the refused frame never reaches
 * the other side. The first bytes of a header split across TCP chunks are held back
 * (at most 13) until the header is complete and allowed. Without a frame phase no
 * plugin is called per frame.
 *
 * Listeners are module-level functions; per-socket state hangs off a symbol.
 */
import type { Socket } from 'node:net';
import type { ErrorCode } from '../../core/errors.js';
import { ERRORS } from '../../core/errors.js';
import { channels, type MessageRejectedEvent } from '../../core/events.js';
import type { Direction, FrameVerdict } from '../../core/plugin.js';
import type { ConnectionStats, Exchange, LiveConnection } from '../../server/exchange.js';
import type { LiveRegistry } from '../http/sse.js';
import { buildCloseFrame, FrameBoundaryTracker, isSendableCloseCode } from './frame-boundary.js';

const kTunnel = Symbol('tunnel');
type TunnelSocket = Socket & { [kTunnel]?: Tunnel };

/** How long peers get to finish the closing handshake after the gateway closed. */
const CLOSE_GRACE_MS = 3000;

/** Opcode of a close frame: never reported to frame phases. Control opcodes are 0x8 and above. */
const OP_CLOSE = 0x8;
const OP_CONTINUATION = 0x0;

/** One direction of the tunnel: bytes read from `src`, written to `dst`. */
interface Leg {
  /** Who sends on this leg. */
  readonly dir: Direction;
  readonly src: TunnelSocket;
  readonly dst: TunnelSocket;
  readonly tracker: FrameBoundaryTracker;
  /** Frames the gateway injects toward `dst` must be masked (toward the upstream). */
  readonly masked: boolean;
  /** A close frame waiting for the next frame boundary of this direction. */
  pendingClose: Buffer | undefined;
  /** The gateway sent its own close toward `dst`: forward nothing more. */
  stopped: boolean;
  /** Payload bytes announced so far by the frames of the data message in progress. */
  msgBytes: number;
}

/** A message over the route's max_payload, refused on its frame header. */
const TOO_BIG: Exclude<FrameVerdict, void | undefined> = {
  action: 'close',
  code: ERRORS.WS_MESSAGE_TOO_BIG.close,
  reason: 'message too big',
  error: 'WS_MESSAGE_TOO_BIG',
};

export class Tunnel implements LiveConnection {
  readonly exchange: Exchange;
  readonly #live: LiveRegistry;
  /** client -> upstream */
  readonly up: Leg;
  /** upstream -> client */
  readonly down: Leg;
  #closedSockets = 0;
  #graceTimer: NodeJS.Timeout | undefined;
  #gatewayError: ErrorCode | undefined;
  #gatewayCloseCode: number | undefined;
  /** Some plugin has a frame phase: frame headers go through the pipeline (decided once). */
  readonly #framePlugins: boolean;
  /** The route's websocket.max_payload: the largest message, summed over its frames' lengths. */
  readonly #maxMessage: number;

  constructor(x: Exchange, client: Socket, upstream: Socket, live: LiveRegistry) {
    this.exchange = x;
    this.#live = live;
    this.up = { dir: 'client', src: client, dst: upstream, tracker: new FrameBoundaryTracker(), masked: true, pendingClose: undefined, stopped: false, msgBytes: 0 };
    this.down = { dir: 'upstream', src: upstream, dst: client, tracker: new FrameBoundaryTracker(), masked: false, pendingClose: undefined, stopped: false, msgBytes: 0 };
    this.#framePlugins = x.pipeline.hasFrame;
    this.#maxMessage = x.route.websocket.max_payload;
  }

  /** Join the sockets. `upHead`: bytes the upstream sent right after its 101. */
  start(upHead: Buffer): void {
    const client = this.up.src;
    const upstream = this.down.src;
    client[kTunnel] = this;
    upstream[kTunnel] = this;
    // No setNoDelay here: the listener sets it on accept, and the upstream socket got it
    // when the handshake was written (each call is a syscall on the handshake path).
    upstream.setTimeout(0);
    client.on('data', onData);
    upstream.on('data', onData);
    client.on('drain', onDrain);
    upstream.on('drain', onDrain);
    client.on('end', onEnd);
    upstream.on('end', onEnd);
    client.on('close', onClose);
    upstream.on('close', onClose);
    client.on('error', onError);
    upstream.on('error', onError);
    const idle = this.exchange.route.websocket.idle_timeout;
    if (idle > 0) client.setTimeout(idle * 1000, onIdle);
    this.#live.add(this);
    this.exchange.opened('websocket', 'tunnel');
    if (upHead.length > 0) this.forward(this.down, upHead);
    // Both sockets may have been paused during the handshake (the client's bytes were
    // discarded, the upstream's head was read): start reading both now.
    client.resume();
    upstream.resume();
  }

  legFrom(socket: TunnelSocket): Leg {
    return socket === this.up.src ? this.up : this.down;
  }

  /**
   * A gateway close is waiting for the end of the frame in progress (`leg.pendingClose`):
   * forward up to that frame's end, then send the close; nothing after it is forwarded.
   * Bytes are counted as they are written on: what the gateway drops is not counted.
   */
  #forwardToClose(leg: Leg, chunk: Buffer): void {
    const n = leg.tracker.feed(chunk, true);
    if (leg.tracker.atBoundary) {
      if (n > 0) this.#write(leg, n === chunk.length ? chunk : chunk.subarray(0, n));
      this.#sendClose(leg, leg.pendingClose!);
      return;
    }
    this.#write(leg, chunk);
  }

  #protocolError(tracker: FrameBoundaryTracker): void {
    this.exchange.log.info({ request_id: this.exchange.ctx.id, reason: tracker.error }, 'websocket protocol violation in tunnel');
    this.#gatewayError = 'WS_PROTOCOL_ERROR';
    this.#gatewayCloseCode = ERRORS.WS_PROTOCOL_ERROR.close;
    this.destroy();
  }

  /**
   * Bytes `leg.src` sent: every frame header is checked (max_payload, then the plugins'
   * `frame` phase) before the frame is forwarded. The chunk is written in as few pieces
   * as it allows (one, unless a header split across chunks completes or a frame is
   * refused); the first bytes of a header still incomplete at the end of the chunk
   * are held back (the tracker keeps them) until the rest arrives.
   */
  forward(leg: Leg, chunk: Buffer): void {
    if (leg.stopped) return;
    // A gateway close waiting for the end of the current frame: no new header is read before it.
    if (leg.pendingClose) return this.#forwardToClose(leg, chunk);
    const tracker = leg.tracker;
    const x = this.exchange;
    const len = chunk.length;
    let from = 0;
    let pos = 0;
    let full = false;
    while (pos < len) {
      pos = tracker.scan(chunk, pos);
      if (tracker.error !== undefined) {
        this.#protocolError(tracker);
        return;
      }
      if (!tracker.frameReady) break;
      const start = tracker.frameStart;
      const opcode = tracker.frameOpcode;
      if (opcode !== OP_CLOSE) {
        let v: FrameVerdict;
        if (opcode < OP_CLOSE) {
          // A data frame: its message so far, against max_payload (control frames are at most 125 bytes).
          leg.msgBytes = opcode === OP_CONTINUATION ? leg.msgBytes + tracker.frameLength : tracker.frameLength;
          if (leg.msgBytes > this.#maxMessage) v = this.#tooBig(leg);
        }
        if (v === undefined && this.#framePlugins) v = x.pipeline.runFrame(leg.dir, opcode, tracker.frameFin, tracker.frameLength, x.ctx, x.summary);
        if (v !== undefined) {
          // Forward what came before the refused frame (none of a header split across chunks was sent), then close here.
          if (start > from) this.#write(leg, chunk.subarray(from, start));
          this.#refuse(leg, v);
          return;
        }
      }
      if (start < 0) {
        // A header split across chunks, allowed: its held-back bytes go first, then the chunk after it.
        full = !this.#write(leg, tracker.header()) || full;
        from = pos;
      }
    }
    // Hold back the first bytes of a header that is not complete yet.
    const end = Math.max(from, len - tracker.pendingHeader);
    if (end > from) full = !this.#write(leg, from === 0 && end === len ? chunk : chunk.subarray(from, end)) || full;
    if (full) leg.src.pause();
  }

  /** A message over max_payload: published like frame mode's size refusals, logged with its size. */
  #tooBig(leg: Leg): FrameVerdict {
    const x = this.exchange;
    if (channels.messageRejected.hasSubscribers) {
      const ev: MessageRejectedEvent = { source: x.source, routeId: x.route.id, direction: leg.dir, reason: 'WS_MESSAGE_TOO_BIG', plugin: undefined };
      channels.messageRejected.publish(ev);
    }
    return { ...TOO_BIG, detail: `a message of at least ${leg.msgBytes} bytes, max_payload ${this.#maxMessage}` };
  }

  /** Write forwarded bytes and count them; false when dst's buffer is full. */
  #write(leg: Leg, bytes: Buffer): boolean {
    this.#count(leg, bytes.length);
    return leg.dst.write(bytes);
  }

  /**
   * A frame phase refused a frame `leg.src` sent, which nothing of has been
   * forwarded: `leg` is at a frame boundary, so it ends at once with 1001 toward
   * `leg.dst`; the sender gets the verdict's code at the next boundary of the other
   * direction.
   */
  #refuse(leg: Leg, v: Exclude<FrameVerdict, void | undefined>): void {
    const error = v.error ?? 'MESSAGE_REJECTED';
    const x = this.exchange;
    if (v.detail) x.log.info({ request_id: x.ctx.id, direction: leg.dir, error, detail: v.detail }, 'message rejected');
    // A code that must not be sent (a plugin bug) becomes 1011, as a failing plugin would.
    const code = isSendableCloseCode(v.code) ? v.code : 1011;
    if (this.#gatewayCloseCode === undefined) {
      this.#gatewayCloseCode = code;
      this.#gatewayError = error;
    }
    if (!leg.dst.destroyed && leg.dst.writable) this.#sendClose(leg, buildCloseFrame(1001, '', leg.masked));
    else leg.stopped = true;
    this.#closeLeg(leg === this.up ? this.down : this.up, code, v.reason ?? error);
    this.#armGrace();
  }

  #count(leg: Leg, n: number): void {
    const s = this.exchange.summary;
    if (leg === this.up) s.bytesIn += n;
    else s.bytesOut += n;
  }

  stats(): ConnectionStats {
    const s = this.exchange.summary;
    return { bytesIn: s.bytesIn, bytesOut: s.bytesOut, messagesIn: this.up.tracker.messages, messagesOut: this.down.tracker.messages };
  }

  /**
   * Close both sides with `code`, each at its next frame boundary. Used for idle
   * timeout, shutdown, revocation and upstream loss.
   */
  close(code: number, reason: string, error: ErrorCode | undefined): void {
    if (this.#gatewayCloseCode === undefined && this.#closer() === undefined) {
      this.#gatewayCloseCode = code;
      this.#gatewayError = error;
    }
    this.#closeLeg(this.down, code, reason);
    this.#closeLeg(this.up, code === 1014 ? 1001 : code, reason);
    this.#armGrace();
  }

  #armGrace(): void {
    if (!this.#graceTimer) {
      this.#graceTimer = setTimeout(destroyTunnel, CLOSE_GRACE_MS, this);
      this.#graceTimer.unref();
    }
  }

  #closeLeg(leg: Leg, code: number, reason: string): void {
    if (leg.stopped || leg.pendingClose || leg.dst.destroyed || !leg.dst.writable) return;
    const frame = buildCloseFrame(code, reason, leg.masked);
    // The bytes of a header still incomplete were held back: that is a boundary too.
    if (leg.tracker.atBoundary || leg.tracker.pendingHeader > 0) this.#sendClose(leg, frame);
    else {
      leg.pendingClose = frame;
      leg.src.resume();
    }
  }

  #sendClose(leg: Leg, frame: Buffer): void {
    leg.pendingClose = undefined;
    leg.stopped = true;
    leg.dst.end(frame);
  }

  /** Which side sent the first close frame, if any. */
  #closer(): 'client' | 'upstream' | undefined {
    if (this.up.tracker.closeSeen) return 'client';
    if (this.down.tracker.closeSeen) return 'upstream';
    return undefined;
  }

  /** A side sent FIN. After its close frame that is the normal end; without one it is a loss. */
  ended(socket: TunnelSocket): void {
    const leg = this.legFrom(socket);
    if (leg.tracker.closeSeen) {
      if (!leg.stopped && !leg.dst.writableEnded) leg.dst.end();
      return;
    }
    if (leg === this.down) this.close(ERRORS.UPSTREAM_CLOSED.close, 'upstream closed', 'UPSTREAM_CLOSED');
    else this.close(1001, 'client closed', undefined);
  }

  socketClosed(socket: TunnelSocket): void {
    const leg = this.legFrom(socket);
    if (++this.#closedSockets === 2) {
      this.#finish();
      return;
    }
    // One socket is gone: the other side learns it with a close frame (or at once if it cannot).
    if (!leg.tracker.closeSeen) this.ended(socket);
    else if (!leg.dst.destroyed && !leg.stopped && !leg.dst.writableEnded) leg.dst.end();
  }

  shutdown(code: number, reason: string): void {
    this.close(code, reason, 'SHUTTING_DOWN');
  }

  idle(): void {
    this.close(ERRORS.WS_IDLE_TIMEOUT.close, 'idle timeout', 'WS_IDLE_TIMEOUT');
  }

  destroy(): void {
    this.up.src.destroy();
    this.down.src.destroy();
  }

  #finish(): void {
    if (this.#graceTimer) clearTimeout(this.#graceTimer);
    this.#live.delete(this);
    const s = this.exchange.summary;
    s.messagesIn = this.up.tracker.messages;
    s.messagesOut = this.down.tracker.messages;
    const closer = this.#closer();
    if (this.#gatewayCloseCode !== undefined && (this.#gatewayError !== undefined || closer === undefined)) {
      s.closedBy = 'gateway';
      s.closeCode = this.#gatewayCloseCode;
      if (this.#gatewayError) s.error = this.#gatewayError;
    } else if (closer) {
      s.closedBy = closer;
      s.closeCode = (closer === 'client' ? this.up : this.down).tracker.closeCode ?? 1005;
    } else {
      s.closedBy = 'client';
      s.closeCode = 1006;
    }
    this.exchange.finish();
  }
}

function tunnelOf(socket: TunnelSocket): Tunnel {
  return socket[kTunnel]!;
}

function onData(this: TunnelSocket, chunk: Buffer): void {
  const t = tunnelOf(this);
  t.forward(t.legFrom(this), chunk);
}

function onDrain(this: TunnelSocket): void {
  // `this` drained: resume the socket that writes into it.
  const t = tunnelOf(this);
  const other = this === t.up.src ? t.down.src : t.up.src;
  other.resume();
}

function onEnd(this: TunnelSocket): void {
  tunnelOf(this).ended(this);
}

function onClose(this: TunnelSocket): void {
  tunnelOf(this).socketClosed(this);
}

function onError(this: TunnelSocket): void {
  // 'close' follows; the cause (reset, EPIPE) needs no handling of its own.
}

function onIdle(this: TunnelSocket): void {
  tunnelOf(this).idle();
}

function destroyTunnel(t: Tunnel): void {
  t.destroy();
}
