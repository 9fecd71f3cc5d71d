/**
 * What frame mode adds to `ws`'s parser. `ws` enforces almost all of RFC 6455 by
 * itself (masking, reserved bits and opcodes, control frames, continuations, close
 * codes, UTF-8, size limits before allocation; docs/architecture.md lists it). Two
 * things it does differently from what the gateway wants:
 *
 * 1. A 64-bit payload length with its most significant bit set breaks RFC 6455
 *    section 5.2 ("the most significant bit MUST be 0"), but `ws` reports it as a
 *    length above 2^53 - 1 and closes with 1009. Here it is a protocol error: 1002.
 * 2. On a parse error `ws` closes the peer itself, with its own code and no reason,
 *    before it emits `error`. The gateway closes first, with the catalogue's close
 *    code and the catalogue code as the reason (as for every close it makes), so
 *    `ws`'s own close finds the connection closing and does nothing. The codes then
 *    agree with the log: too many fragments or buffered chunks are 1009
 *    WS_MESSAGE_TOO_BIG (ws says 1008).
 *
 * Both reach into `ws` internals (`_receiver`, `getPayloadLength64`, `_buffers`,
 * `createError`); their shape is checked once and the conformance suite
 * (test/conformance-*.test.js) pins the behaviour against the installed `ws`.
 */
import * as wsModule from 'ws';
import type { WebSocket } from 'ws';
import { ERRORS } from '../../core/errors.js';
import { errorForWsError } from './close-codes.js';

type Callback = (err?: Error) => void;

interface ReceiverInternals {
  _bufferedBytes: number;
  _buffers: Buffer[];
  getPayloadLength64(cb: Callback): void;
  createError(ctor: ErrorConstructor | RangeErrorConstructor, message: string, prefix: boolean, status: number, code: string): Error;
  prependListener(event: 'error', fn: (this: ReceiverInternals, err: Error) => void): void;
  [kOwner]?: WebSocket;
}

const kOwner = Symbol('portcullis:websocket');

const ReceiverProto = (wsModule as unknown as { Receiver?: { prototype: ReceiverInternals } }).Receiver?.prototype;
const originalLength64 = ReceiverProto?.getPayloadLength64;
const usable = typeof originalLength64 === 'function' && typeof ReceiverProto?.createError === 'function';

/** Reads the 8-byte length only when its top bit is clear; else fails the frame with 1002. */
function guardedLength64(this: ReceiverInternals, cb: Callback): void {
  // ws consumes the 8 bytes once all are buffered; the first is then the head of _buffers[0].
  if (this._bufferedBytes >= 8 && (this._buffers[0]![0]! & 0x80) !== 0) {
    cb(this.createError(RangeError, 'the most significant bit of a 64-bit payload length must be 0', true, 1002, 'WS_ERR_INVALID_PAYLOAD_LENGTH_MSB'));
    return;
  }
  originalLength64!.call(this, cb);
}

/** Runs before ws's own error listener: close with the catalogue's code and the code as reason. */
function closeFirst(this: ReceiverInternals, err: Error): void {
  const ws = this[kOwner];
  if (!ws || ws.readyState !== ws.OPEN) return;
  const error = errorForWsError(err);
  try {
    ws.close(ERRORS[error].close, error);
  } catch {
    // ws then closes with its own code.
  }
}

/**
 * Apply both changes to a WebSocket whose parser exists (after `open` for a
 * client, in the `handleUpgrade` callback for a server): before any frame is read.
 */
export function hardenReceiver(ws: WebSocket): void {
  const receiver = (ws as unknown as { _receiver?: ReceiverInternals | null })._receiver;
  if (!usable || !receiver || !Array.isArray(receiver._buffers)) return;
  receiver[kOwner] = ws;
  receiver.getPayloadLength64 = guardedLength64;
  receiver.prependListener('error', closeFirst);
}
