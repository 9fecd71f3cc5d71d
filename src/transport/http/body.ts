/**
 * HTTP/1.1 response body framing (RFC 9112 section 6), for responses read on a raw
 * socket: Content-Length, chunked, or delimited by the connection's close. Pure: it
 * is fed what the socket reads after the head and hands back the payload as
 * subarrays of those reads (no copy), so a stream that sends one chunk per read
 * costs one slice per read.
 */

/** Longest chunk-size line (with extensions) or trailer line accepted. */
const MAX_LINE = 4096;
/** Largest trailer section accepted after the last chunk. */
const MAX_TRAILERS = 16 * 1024;
const HEX = /^[0-9a-fA-F]{1,13}$/;

// chunked states
const SIZE = 0;
const DATA = 1;
const DATA_END = 2;
const TRAILERS = 3;

export class BodyDecoder {
  readonly #chunked: boolean;
  /** Identity: bytes left (-1: until close). Chunked: bytes left in the current chunk. */
  #remaining: number;
  #state = SIZE;
  /** A line split across reads (bounded by MAX_LINE). */
  #line = '';
  #trailerBytes = 0;
  /** The message is complete: nothing more belongs to it. */
  done = false;
  /** The chunked framing was broken; `done` is set too. */
  malformed = false;
  /** The body ends when the connection closes (no Content-Length, not chunked). */
  readonly closeDelimited: boolean;

  /** `headers`: lowercase names (repeated ones joined with ", "). */
  constructor(headers: Readonly<Record<string, string | string[] | undefined>>, status: number) {
    const te = headers['transfer-encoding'];
    this.#chunked = /(^|,)\s*chunked\s*$/i.test(Array.isArray(te) ? te.join(', ') : te ?? '');
    const len = headers['content-length'];
    const n = typeof len === 'string' && /^\d{1,15}$/.test(len) ? Number(len) : -1;
    this.#remaining = this.#chunked ? 0 : n;
    this.closeDelimited = !this.#chunked && n < 0;
    if (status === 204 || status === 304 || (status >= 100 && status < 200)) this.done = true;
    else if (!this.#chunked && n === 0) this.done = true;
  }

  /**
   * Feed bytes read after the head. Payload slices go to `onData` in order. Returns
   * how many bytes of `chunk` belong to the message, framing included (fewer than
   * its length only once `done`: the rest is not part of this response).
   */
  feed(chunk: Buffer, onData?: (slice: Buffer) => void): number {
    if (this.done) return 0;
    const len = chunk.length;
    if (!this.#chunked) {
      let n = len;
      if (this.#remaining >= 0) {
        n = Math.min(this.#remaining, len);
        this.#remaining -= n;
        if (this.#remaining === 0) this.done = true;
      }
      if (n > 0 && onData) onData(n === len ? chunk : chunk.subarray(0, n));
      return n;
    }
    let i = 0;
    while (i < len && !this.done) {
      const state = this.#state;
      if (state === DATA) {
        const n = Math.min(this.#remaining, len - i);
        if (onData) onData(i === 0 && n === len ? chunk : chunk.subarray(i, i + n));
        i += n;
        this.#remaining -= n;
        if (this.#remaining === 0) this.#state = DATA_END;
        continue;
      }
      // The CRLF after a chunk's data, whole in this read: the usual case.
      if (state === DATA_END && this.#line === '' && chunk[i] === 0x0d && chunk[i + 1] === 0x0a) {
        i += 2;
        this.#state = SIZE;
        continue;
      }
      const nl = chunk.indexOf(0x0a, i);
      const end = nl === -1 ? len : nl;
      if (this.#line.length + (end - i) > MAX_LINE) return this.#broken(end);
      if (state === TRAILERS) {
        this.#trailerBytes += end - i + 1;
        if (this.#trailerBytes > MAX_TRAILERS) return this.#broken(end);
      }
      if (nl === -1) {
        this.#line += chunk.toString('latin1', i, len);
        return len;
      }
      let line = this.#line + chunk.toString('latin1', i, nl);
      this.#line = '';
      i = nl + 1;
      if (line.endsWith('\r')) line = line.slice(0, -1);
      if (state === SIZE) {
        const semi = line.indexOf(';');
        const hex = (semi === -1 ? line : line.slice(0, semi)).trim();
        if (!HEX.test(hex)) return this.#broken(i);
        const size = parseInt(hex, 16);
        if (size === 0) {
          this.#state = TRAILERS;
        } else {
          this.#remaining = size;
          this.#state = DATA;
        }
      } else if (state === DATA_END) {
        if (line !== '') return this.#broken(i);
        this.#state = SIZE;
      } else if (line === '') {
        this.done = true;
      }
    }
    return i;
  }

  #broken(consumed: number): number {
    this.malformed = true;
    this.done = true;
    return consumed;
  }
}
