/**
 * Event boundaries of a Server-Sent Events stream.
 *
 * The gateway streams SSE unbuffered but may insert a heartbeat comment only
 * between events, never inside one. `SseBoundaryTracker` follows just enough of
 * the event-stream grammar to know whether the bytes forwarded so far end on an
 * event boundary: lines end with CRLF, LF or CR (mixed freely), and a blank line
 * ends an event (a comment-only block included).
 *
 * The state after a chunk depends only on the chunk's trailing run of CR/LF bytes
 * and the byte before it, so `feed` scans backwards from the end and looks at a
 * few bytes for a normal chunk: O(1) per chunk, no allocation. Only a chunk made
 * entirely of line terminators is walked in full, starting from the previous state,
 * which keeps it exact for chunks of any size down to one byte.
 *
 * A UTF-8 BOM at the very start of the stream is treated as line content; the only
 * effect is that a first blank line straight after a BOM is not seen as a boundary
 * (a missed boundary delays a heartbeat; it never lets one split an event).
 */

const LF = 0x0a;
const CR = 0x0d;

/** At the start of a line, and the previous line (if any) ended an event. */
const BETWEEN_EVENTS = 0;
/** At the start of a line inside an event: the previous line was not blank. */
const LINE_START = 1;
/** Inside a line. */
const IN_LINE = 2;

/** A comment line and the blank line ending it: an event the client ignores. */
export const HEARTBEAT = Buffer.from(':\n\n');

export class SseBoundaryTracker {
  private state = BETWEEN_EVENTS;
  /** The last byte seen was CR, so an LF right after it belongs to the same line end. */
  private afterCr = false;

  /**
   * True between events: at the start of the stream and after the blank line that
   * ends an event (a CR ending that blank line counts; an LF that may follow it is
   * part of the same line end).
   */
  get atBoundary(): boolean {
    return this.state === BETWEEN_EVENTS;
  }

  /** Accounts for bytes forwarded to the client. */
  feed(chunk: Buffer): void {
    const len = chunk.length;
    if (len === 0) return;
    let i = len - 1;
    let b = chunk[i];
    if (b !== LF && b !== CR) {
      this.state = IN_LINE;
      this.afterCr = false;
      return;
    }
    // Find where the trailing run of line terminators starts.
    while (i > 0) {
      b = chunk[i - 1];
      if (b !== LF && b !== CR) break;
      i--;
    }
    if (i > 0) {
      // A content byte precedes the run: the run starts inside a line.
      this.state = IN_LINE;
      this.afterCr = false;
    }
    let state = this.state;
    let afterCr = this.afterCr;
    for (; i < len; i++) {
      b = chunk[i];
      if (afterCr && b === LF) {
        afterCr = false;
        continue;
      }
      afterCr = b === CR;
      state = state === IN_LINE ? LINE_START : BETWEEN_EVENTS;
    }
    this.state = state;
    this.afterCr = afterCr;
  }
}
