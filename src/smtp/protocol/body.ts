// Incremental reader for message bodies: DATA (dot-terminated, dot-stuffed) and BDAT chunks.
//
// Feed it the received Buffers as they come (any split, the terminator may straddle chunks). It
// collects the message as a list of Buffer views into the input (the content is never copied) and
// stops exactly after the terminator, returning how many bytes it consumed so that
// pipelined commands after the final dot stay in the input.
//
// Policies (documented choices; each violation is recorded as `error`, the reader keeps consuming
// until the end of the message so that the session stays in sync, stores nothing more, and the
// session answers after the end):
// - End of DATA is only CRLF "." CRLF (the first CRLF may be the one ending the DATA command).
//   "." lines after a bare LF or ending in a bare LF never end the message (SMTP smuggling defence).
// - Bare LF (LF without CR) is normalised to CRLF, as Postfix does; counted in `bareLf`.
// - Bare CR (CR not followed by LF) rejects the message: 550 5.6.0. NUL rejects it: 550 5.6.0.
//   Relaying either is how smuggling and header-injection attacks pass through MTAs.
// - A text line longer than `maxLineLength` octets including CRLF (default 1000, RFC 5321 4.5.3.1.6;
//   the stuffing dot is not counted) rejects the message: 552 5.6.0 (0 disables the check).
// - More than `maxSize` octets (after unstuffing, before our Received: header) rejects: 552 5.3.4.
// - Received: fields in the header section are counted; `maxReceived` or more rejects the message
//   as a mail loop: 554 5.4.6 (with ours that makes more than maxReceived hops).
// - binary (BODY=BINARYMIME via BDAT): none of the line policies apply; size and loop checks do.
// Performance: each fed buffer is searched as one latin1 string (same offsets; the engine's string
// search costs a fraction of a Buffer.indexOf call), per line one search for LF and at most one
// for CR (cached); the content itself is never copied: chunks are views into the input.
// Fails: never throws on input bytes.

import type { SmtpReply } from './reply.js';

export type BodyError = 'size' | 'lineLength' | 'bareCr' | 'nul' | 'loop';

export interface BodyReaderOptions {
  /** Maximum message size in octets (after unstuffing). */
  maxSize: number;
  /** Maximum text line length in octets, including CRLF; 0 = unlimited. */
  maxLineLength?: number;
  /** Reject when the header section holds this many Received: fields. */
  maxReceived?: number;
  /** true for DATA (dot-stuffed, ends at CRLF.CRLF); false for BDAT chunks. */
  dotTerminated: boolean;
  /** BODY=BINARYMIME: no bare CR/LF, NUL or line-length policy. */
  binary?: boolean;
}

const S_START = 0; // at a line start after CRLF (or at the very beginning)
const S_START_LF = 1; // at a line start after a bare LF: a "." here never ends the message
const S_DOT = 2; // "." seen at a strict line start (dropped)
const S_DOTCR = 3; // ".\r" seen; the CR is held back until we know whether LF follows
const S_MID = 4; // inside a line

const CRLF = Buffer.from('\r\n');
const CR = Buffer.from('\r');
const RECEIVED = Buffer.from('received:');

/** The reply for a body policy error. */
export function bodyErrorReply(e: BodyError): SmtpReply {
  switch (e) {
    case 'size':
      return { code: 552, enhanced: '5.3.4', text: 'Message size exceeds fixed maximum message size' };
    case 'lineLength':
      return { code: 552, enhanced: '5.6.0', text: 'Message line too long (RFC 5321 limit is 1000 octets)' };
    case 'bareCr':
      return { code: 550, enhanced: '5.6.0', text: 'Bare CR not allowed in message content' };
    case 'nul':
      return { code: 550, enhanced: '5.6.0', text: 'NUL not allowed in message content' };
    case 'loop':
      return { code: 554, enhanced: '5.4.6', text: 'Too many Received headers: mail loop detected' };
  }
}

export class BodyReader {
  /** The message content, CRLF line endings, unstuffed; emptied once an error is recorded. */
  chunks: Buffer[] = [];
  /** Octets of content seen (counted on even after an error). */
  size = 0;
  error: BodyError | null = null;
  /** DATA: the terminator has been consumed. */
  done = false;
  receivedCount = 0;
  /** How many bare LFs were normalised to CRLF. */
  bareLf = 0;

  private state = S_START;
  private lastCR = false;
  private lineLen = 0;
  private inHeaders = true;
  private readonly hdr = Buffer.alloc(9);
  private hdrLen = 0;
  private readonly maxSize: number;
  private readonly maxLine: number;
  private readonly maxReceived: number;
  private readonly dot: boolean;
  private readonly binary: boolean;

  constructor(opts: BodyReaderOptions) {
    this.maxSize = opts.maxSize;
    this.maxLine = opts.maxLineLength ?? 1000;
    this.maxReceived = opts.maxReceived ?? 100;
    this.dot = opts.dotTerminated;
    this.binary = opts.binary ?? false;
  }

  /**
   * Consume bytes of `buf`. Returns the number consumed: all of them, or (DATA) the bytes up to and
   * including the terminator, after which `done` is true.
   */
  feed(buf: Buffer): number {
    const len = buf.length;
    if (len === 0 || this.done) return 0;
    const strict = !this.binary;
    const dot = this.dot;
    const maxLine = this.maxLine;
    // The per-line state lives in locals while the buffer is scanned and is written back once.
    let state = this.state;
    let lineLen = this.lineLen;
    let lastCR = this.lastCR;
    let pos = 0;
    let seg = 0;
    let nextCR = -1;
    if (lastCR && buf[0] !== 10 && strict) this.fail('bareCr');
    const nul = strict && this.error === null ? buf.indexOf(0) : -1;
    // Searched as a one-byte string: the engine's string search is several times cheaper per
    // call than Buffer.indexOf, and a latin1 string has the buffer's offsets.
    const text = buf.toString('latin1', 0, len);

    while (pos < len) {
      if (state === S_START || state === S_START_LF) {
        lastCR = false;
        if (dot && buf[pos] === 46) {
          this.emit(buf, seg, pos);
          seg = ++pos;
          state = state === S_START ? S_DOT : S_MID;
          continue;
        }
        state = S_MID;
      } else if (state === S_DOT) {
        if (buf[pos] === 13) {
          this.emit(buf, seg, pos);
          seg = ++pos;
          state = S_DOTCR;
          continue;
        }
        state = S_MID;
      } else if (state === S_DOTCR) {
        if (buf[pos] === 10) {
          pos++;
          seg = pos;
          this.done = true;
          break;
        }
        // The held CR was not followed by LF: it is a bare CR after a stuffed dot.
        if (strict) this.fail('bareCr');
        this.emit(CR, 0, 1);
        lineLen++;
        state = S_MID;
      }

      // S_MID: the rest of a line starts at pos.
      const lf = text.indexOf('\n', pos);
      if (this.inHeaders) this.collectHeader(buf, pos, lf === -1 ? len : lf);
      if (lf === -1) {
        lineLen += len - pos;
        if (strict && this.error === null) {
          if (nextCR < pos) nextCR = text.indexOf('\r', pos);
          if (nextCR !== -1 && nextCR < len - 1) this.fail('bareCr');
          if (maxLine > 0 && lineLen + 1 > maxLine) this.fail('lineLength');
        }
        lastCR = buf[len - 1] === 13;
        pos = len;
        break;
      }
      const hasCR = lf > 0 ? buf[lf - 1] === 13 : lastCR;
      let total = lineLen + (lf + 1 - pos);
      if (strict) {
        if (nextCR < pos && this.error === null) {
          nextCR = text.indexOf('\r', pos);
          if (nextCR === -1) nextCR = len;
        }
        if (nextCR < lf - 1 && this.error === null) this.fail('bareCr');
        if (!hasCR) {
          // Normalise a bare LF to CRLF.
          this.emit(buf, seg, lf);
          this.emit(CRLF, 0, 2);
          seg = lf + 1;
          this.bareLf++;
          total++;
        }
        if (maxLine > 0 && total > maxLine) this.fail('lineLength');
      }
      if (this.inHeaders) {
        this.endHeaderLine(total);
        this.hdrLen = 0;
      }
      lineLen = 0;
      lastCR = false;
      state = hasCR || !strict ? S_START : S_START_LF;
      pos = lf + 1;
    }
    this.state = state;
    this.lineLen = lineLen;
    this.lastCR = lastCR;
    this.emit(buf, seg, pos);
    if (nul !== -1 && nul < pos) this.fail('nul');
    return pos;
  }

  /**
   * BDAT LAST: the message ends here. A CR held back at the end of the last chunk (waiting for an
   * LF in a next chunk that will never come) is a bare CR.
   */
  end(): void {
    if (this.lastCR && !this.binary) this.fail('bareCr');
    this.lastCR = false;
  }

  private emit(buf: Buffer, from: number, to: number): void {
    if (to <= from) return;
    this.size += to - from;
    if (this.error !== null) return;
    if (this.size > this.maxSize) {
      this.fail('size');
      return;
    }
    this.chunks.push(from === 0 && to === buf.length ? buf : buf.subarray(from, to));
  }

  private fail(e: BodyError): void {
    if (this.error !== null) return;
    this.error = e;
    this.chunks = [];
  }

  private collectHeader(buf: Buffer, from: number, to: number): void {
    const n = Math.min(to - from, 9 - this.hdrLen);
    for (let i = 0; i < n; i++) this.hdr[this.hdrLen++] = buf[from + i] as number;
  }

  /** A header-section line ended; `total` is its length with terminator. */
  private endHeaderLine(total: number): void {
    if (total <= 2 && (this.hdrLen === 0 || this.hdr[0] === 13)) {
      this.inHeaders = false;
      return;
    }
    if (this.hdrLen < 9) return;
    for (let i = 0; i < 9; i++) {
      const c = this.hdr[i] as number;
      if ((c >= 65 && c <= 90 ? c | 0x20 : c) !== RECEIVED[i]) return;
    }
    if (++this.receivedCount >= this.maxReceived) this.fail('loop');
  }
}
