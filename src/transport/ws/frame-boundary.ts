/**
 * Frame boundaries of a WebSocket byte stream, for tunnel mode.
 *
 * After the 101 the gateway forwards bytes without parsing or unmasking payloads.
 * One `FrameBoundaryTracker` per direction reads only the frame headers (and the two
 * close-code bytes of a close frame) so the gateway can:
 *   - inject its own frame (a close on idle timeout or shutdown) between two frames,
 *   - count messages and control frames for the access log,
 *   - learn the close code the peer sent.
 *
 * Payloads are skipped by length arithmetic, never copied. A header split across
 * chunks is collected in a 14-byte buffer allocated once per tracker. The work per
 * chunk is O(frames in the chunk), not O(bytes), and `feed` allocates nothing.
 *
 * The tracker does not check RSV bits (an extension it does not know may define
 * them) or masking direction (the caller knows which side it is on).
 *
 * Two ways to drive it: `feed` (the plain tunnel: whole chunks, or up to the next
 * boundary) and `scan` (a tunnel whose route has a plugin `frame` phase: one frame
 * header at a time, reporting where each header starts so the caller can stop
 * before a refused frame). `feed` is left exactly as the plain tunnel needs it.
 */
import { randomFillSync } from 'node:crypto';

const OP_CONTINUATION = 0x0;
const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PONG = 0xa;

/** Largest header: 2 + 8 (64-bit length) + 4 (mask key). */
const MAX_HEADER = 14;

/** Close code a close frame with an empty payload stands for (RFC 6455 §7.1.5). */
export const CLOSE_NO_STATUS = 1005;

/**
 * Protocol violations the tracker notices. Every one of them means close 1002
 * (`WS_PROTOCOL_ERROR`) except `WS_FRAME_TOO_LONG`, which means 1009
 * (`WS_MESSAGE_TOO_BIG`).
 */
export type FrameErrorCode =
  /** Opcode 3-7 or 0xB-0xF. */
  | 'WS_RESERVED_OPCODE'
  /** Control frame (close, ping, pong) with a payload over 125 bytes. */
  | 'WS_CONTROL_TOO_LONG'
  /** Control frame with FIN=0. */
  | 'WS_CONTROL_FRAGMENTED'
  /** Close frame with a 1-byte payload (a close code needs 2). */
  | 'WS_CLOSE_BAD_LENGTH'
  /** The most significant bit of a 64-bit payload length is set. */
  | 'WS_LENGTH_TOP_BIT'
  /** A 64-bit payload length above 2^53 - 1, which cannot be counted exactly. */
  | 'WS_FRAME_TOO_LONG'
  /** A continuation frame with no fragmented message open. */
  | 'WS_UNEXPECTED_CONTINUATION'
  /** A new text or binary frame while a fragmented message is still open. */
  | 'WS_EXPECTED_CONTINUATION';

/** Number of header bytes implied by the second header byte. */
function headerSize(b1: number): number {
  const len7 = b1 & 0x7f;
  return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (b1 & 0x80 ? 4 : 0);
}

export class FrameBoundaryTracker {
  /** Completed data messages: frames with FIN=1 and opcode text, binary or continuation. */
  messages = 0;
  /** Completed control frames (close, ping, pong). */
  controlFrames = 0;
  /**
   * Code of the first close frame seen: read from its first two payload bytes
   * (unmasked when masked), or 1005 when its payload is empty. Set as soon as the
   * bytes have arrived, which may be before the close frame is complete.
   */
  closeCode: number | undefined = undefined;
  /** True once a whole close frame has gone through. */
  closeSeen = false;
  /**
   * Set on the first protocol violation noticed. From then on `feed` consumes
   * everything it is given and `atBoundary` is false; the caller decides what to do.
   */
  error: FrameErrorCode | undefined = undefined;

  /**
   * Set by `scan`: true when it stopped right after a complete frame header (the
   * `frame*` fields then describe that frame), false when it consumed the chunk.
   */
  frameReady = false;
  /**
   * Where the header `scan` just completed starts in the chunk it was given;
   * negative when it began in an earlier chunk (its bytes are then in `header()`).
   */
  frameStart = 0;
  /** Payload length the header `scan` just completed announces. */
  frameLength = 0;

  /** Only for a header split across chunks: allocated on first need (RSS per idle tunnel). */
  private hdr: Buffer | undefined;
  private hdrLen = 0;
  /** True between the end of a header and the end of that frame's payload. */
  private inPayload = false;
  /** Payload bytes of the current frame still to come. */
  private remaining = 0;
  private opcode = 0;
  private fin = false;
  /** A text or binary frame with FIN=0 was seen and its final fragment was not. */
  private fragmented = false;
  /** Close-code bytes still to read from the current payload (0 for any other frame). */
  private codeNeeded = 0;
  private codeAcc = 0;
  /** First two mask key bytes (0 when unmasked): all the close code needs. */
  private mask0 = 0;
  private mask1 = 0;

  /** True between frames: at the start, and after the last byte of a frame. */
  get atBoundary(): boolean {
    return !this.inPayload && this.hdrLen === 0 && this.error === undefined;
  }

  /**
   * Bytes of a frame header collected so far while the rest has not arrived (0 when
   * not inside a header). They are the last `pendingHeader` bytes fed, or all of
   * the bytes fed since the header began.
   */
  get pendingHeader(): number {
    return this.error === undefined ? this.hdrLen : 0;
  }

  /** Opcode of the current (or last) frame. */
  get frameOpcode(): number {
    return this.opcode;
  }

  /** FIN bit of the current (or last) frame. */
  get frameFin(): boolean {
    return this.fin;
  }

  /**
   * A copy of the header `scan` just completed when it was split across chunks
   * (`frameStart < 0`): the caller held its first bytes back and now forwards it whole.
   */
  header(): Buffer {
    return Buffer.from(this.hdr!.subarray(0, headerSize(this.hdr![1])));
  }

  /**
   * Consumes bytes of the frame stream and returns how many bytes of `chunk` were
   * consumed. Without `stopAtBoundary` that is always `chunk.length`. With it, the
   * tracker stops at the first frame boundary it reaches in `chunk` (returning 0 when
   * it is already at one), so the caller can forward `chunk.subarray(0, n)`, inject
   * its own frame and drop or hold the rest.
   */
  feed(chunk: Buffer, stopAtBoundary = false): number {
    const len = chunk.length;
    if (this.error !== undefined) return len;
    if (stopAtBoundary && this.atBoundary) return 0;
    let pos = 0;

    while (pos < len) {
      if (this.inPayload) {
        if (this.codeNeeded !== 0) pos = this.readCloseCode(chunk, pos, len);
        const avail = len - pos;
        if (avail < this.remaining) {
          this.remaining -= avail;
          return len;
        }
        pos += this.remaining;
        this.remaining = 0;
        this.inPayload = false;
        this.endFrame();
        if (stopAtBoundary) return pos;
        continue;
      }

      // Header, fast path: the whole header is in this chunk and nothing is stashed.
      if (this.hdrLen === 0 && len - pos >= 2) {
        const size = headerSize(chunk[pos + 1]);
        if (len - pos >= size) {
          this.startFrame(chunk, pos);
          pos += size;
          if (this.error !== undefined) return len;
          if (!this.inPayload && stopAtBoundary) return pos;
          continue;
        }
      }

      // Header, slow path: collect it byte by byte across chunks (at most 14 bytes).
      const hdr = (this.hdr ??= Buffer.alloc(MAX_HEADER));
      let need = this.hdrLen < 2 ? 2 : headerSize(hdr[1]);
      for (;;) {
        while (this.hdrLen < need && pos < len) hdr[this.hdrLen++] = chunk[pos++];
        if (this.hdrLen < need) return len;
        if (need !== 2) break;
        need = headerSize(hdr[1]);
        if (need === 2) break;
      }
      this.hdrLen = 0;
      this.startFrame(hdr, 0);
      if (this.error !== undefined) return len;
      if (!this.inPayload && stopAtBoundary) return pos;
    }
    return len;
  }

  /**
   * Consumes bytes of `chunk` from `pos` up to the end of the next complete frame
   * header and returns the position right after it, with `frameReady` true and
   * `frameStart`, `frameOpcode`, `frameFin`, `frameLength` describing the frame (a
   * frame with no payload is already complete then). When no header completes in
   * the rest of the chunk it consumes it all, returns `chunk.length` and sets
   * `frameReady` false; a header that has begun is then `pendingHeader` bytes long.
   * Allocates nothing. On a protocol violation `error` is set and the chunk consumed.
   */
  scan(chunk: Buffer, pos: number): number {
    const len = chunk.length;
    this.frameReady = false;
    if (this.error !== undefined) return len;
    while (pos < len) {
      if (this.inPayload) {
        if (this.codeNeeded !== 0) pos = this.readCloseCode(chunk, pos, len);
        const avail = len - pos;
        if (avail < this.remaining) {
          this.remaining -= avail;
          return len;
        }
        pos += this.remaining;
        this.remaining = 0;
        this.inPayload = false;
        this.endFrame();
        continue;
      }

      if (this.hdrLen === 0 && len - pos >= 2) {
        const size = headerSize(chunk[pos + 1]);
        if (len - pos >= size) {
          this.frameLength = this.startFrame(chunk, pos);
          if (this.error !== undefined) return len;
          this.frameStart = pos;
          this.frameReady = true;
          return pos + size;
        }
      }

      const hdr = (this.hdr ??= Buffer.alloc(MAX_HEADER));
      let need = this.hdrLen < 2 ? 2 : headerSize(hdr[1]);
      for (;;) {
        while (this.hdrLen < need && pos < len) hdr[this.hdrLen++] = chunk[pos++];
        if (this.hdrLen < need) return len;
        if (need !== 2) break;
        need = headerSize(hdr[1]);
        if (need === 2) break;
      }
      this.hdrLen = 0;
      this.frameLength = this.startFrame(hdr, 0);
      if (this.error !== undefined) return len;
      this.frameStart = pos - need;
      this.frameReady = true;
      return pos;
    }
    return len;
  }

  /**
   * Parses a complete header at `buf[off]`; ends the frame at once when it has no
   * payload. Returns the payload length (meaningless when it set `error`).
   */
  private startFrame(buf: Buffer, off: number): number {
    const b0 = buf[off];
    const b1 = buf[off + 1];
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    let p = off + 2;
    let length = b1 & 0x7f;
    if (length === 126) {
      length = (buf[p] << 8) | buf[p + 1];
      p += 2;
    } else if (length === 127) {
      const hi = buf.readUInt32BE(p);
      if (hi >= 0x80000000) {
        this.error = 'WS_LENGTH_TOP_BIT';
        return 0;
      }
      if (hi > 0x1fffff) {
        this.error = 'WS_FRAME_TOO_LONG';
        return 0;
      }
      length = hi * 0x100000000 + buf.readUInt32BE(p + 4);
      p += 8;
    }

    if (opcode >= OP_CLOSE) {
      if (opcode > OP_PONG) {
        this.error = 'WS_RESERVED_OPCODE';
        return 0;
      }
      if (!fin) {
        this.error = 'WS_CONTROL_FRAGMENTED';
        return 0;
      }
      if (length > 125) {
        this.error = 'WS_CONTROL_TOO_LONG';
        return 0;
      }
    } else if (opcode === OP_CONTINUATION) {
      if (!this.fragmented) {
        this.error = 'WS_UNEXPECTED_CONTINUATION';
        return 0;
      }
    } else if (opcode === OP_TEXT || opcode === OP_BINARY) {
      if (this.fragmented) {
        this.error = 'WS_EXPECTED_CONTINUATION';
        return 0;
      }
    } else {
      this.error = 'WS_RESERVED_OPCODE';
      return 0;
    }

    this.opcode = opcode;
    this.fin = fin;
    this.codeNeeded = 0;
    if (opcode === OP_CLOSE) {
      if (length === 1) {
        this.error = 'WS_CLOSE_BAD_LENGTH';
        return 0;
      }
      if (this.closeCode === undefined) {
        if (length === 0) {
          this.closeCode = CLOSE_NO_STATUS;
        } else {
          this.codeNeeded = 2;
          this.codeAcc = 0;
          if (b1 & 0x80) {
            this.mask0 = buf[p];
            this.mask1 = buf[p + 1];
          } else {
            this.mask0 = 0;
            this.mask1 = 0;
          }
        }
      }
    }

    if (length === 0) {
      this.endFrame();
    } else {
      this.remaining = length;
      this.inPayload = true;
    }
    return length;
  }

  /** Reads close-code bytes at the start of a close payload; returns the new position. */
  private readCloseCode(chunk: Buffer, pos: number, len: number): number {
    while (this.codeNeeded !== 0 && pos < len) {
      const b = chunk[pos++] ^ (this.codeNeeded === 2 ? this.mask0 : this.mask1);
      this.codeAcc = (this.codeAcc << 8) | b;
      this.codeNeeded--;
      this.remaining--;
    }
    if (this.codeNeeded === 0) this.closeCode = this.codeAcc;
    return pos;
  }

  private endFrame(): void {
    if (this.opcode >= OP_CLOSE) {
      this.controlFrames++;
      if (this.opcode === OP_CLOSE) this.closeSeen = true;
    } else if (this.fin) {
      this.messages++;
      this.fragmented = false;
    } else {
      this.fragmented = true;
    }
  }
}

/** Close codes an endpoint may put on the wire (RFC 6455 §7.4, as ws checks them). */
export function isSendableCloseCode(code: number): boolean {
  return (
    (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) ||
    (code >= 3000 && code <= 4999)
  );
}

/**
 * Builds one close frame. `code` 1005 means a close frame with an empty payload (the
 * reason is then ignored). Otherwise the reason is cut to fit 123 bytes of UTF-8,
 * never inside a character. A masked frame (client to server) gets a random key.
 * Throws `TypeError` for a code that must not be sent.
 */
export function buildCloseFrame(code: number, reason: string, masked: boolean): Buffer {
  const empty = code === CLOSE_NO_STATUS;
  if (!empty && (!Number.isInteger(code) || !isSendableCloseCode(code))) {
    throw new TypeError(`close code ${code} must not be sent`);
  }
  const headerLen = masked ? 6 : 2;
  const frame = Buffer.allocUnsafe(headerLen + (empty ? 0 : 125));
  let payloadLen = 0;
  if (!empty) {
    frame[headerLen] = code >>> 8;
    frame[headerLen + 1] = code & 0xff;
    // Buffer#write never writes a partial character, so this cuts on a character boundary.
    const reasonLen = reason.length === 0 ? 0 : frame.write(reason, headerLen + 2, 123, 'utf8');
    payloadLen = 2 + reasonLen;
  }
  frame[0] = 0x80 | OP_CLOSE;
  frame[1] = (masked ? 0x80 : 0) | payloadLen;
  if (masked) {
    randomFillSync(frame, 2, 4);
    for (let i = 0; i < payloadLen; i++) frame[headerLen + i] ^= frame[2 + (i & 3)];
  }
  return frame.subarray(0, headerLen + payloadLen);
}
