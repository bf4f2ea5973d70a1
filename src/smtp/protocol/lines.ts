// Input framing for the SMTP server: an ordered queue of received Buffers from which the session
// takes either command lines (readLine) or raw bytes (peek/advance, for DATA and BDAT bodies).
//
// Invariants:
// - Bytes leave the queue exactly once and in order; switching between line and byte mode never
//   loses or duplicates a byte (the session needs this for pipelined DATA and BDAT).
// - A line longer than `maxLine` octets (terminator included) is never buffered: once the limit is
//   passed the bytes are dropped until the next LF, then readLine returns TOO_LONG once. So a
//   client sending an endless line costs at most `maxLine` bytes of memory.
// - Bare LF policy for command lines: LF alone is accepted as a terminator and a CR before it is
//   stripped. Many broken clients send LF-only commands, and a command line has no smuggling risk
//   (the DATA terminator is handled strictly by the body reader, not here). A CR elsewhere in a
//   command line is left in the line, where the command parser rejects it as a syntax error.
// - Lines are decoded as UTF-8 (SMTPUTF8 addresses); invalid sequences become U+FFFD and then fail
//   address syntax checks.
// Fails: never throws on any input.

export const TOO_LONG: unique symbol = Symbol('line too long');
export type ReadLineResult = string | typeof TOO_LONG | null;

export class LineBuffer {
  private chunks: Buffer[] = [];
  /** Offset of the first unconsumed byte in chunks[0]. */
  private off = 0;
  /** Unconsumed byte count over all chunks. */
  private total = 0;
  /** Pieces of the current incomplete line that were removed from `chunks`. */
  private partial: Buffer[] = [];
  private partialLen = 0;
  /** Dropping an overlong line until its LF. */
  private discarding = false;

  /** Maximum line length in octets, including the line terminator. */
  constructor(public maxLine = 512) {}

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
  }

  /** Bytes received and not yet consumed (including a buffered partial line). */
  get buffered(): number {
    return this.total + this.partialLen;
  }

  /** True when no whole unconsumed input remains for byte-mode reads. */
  get empty(): boolean {
    return this.total === 0;
  }

  /** The next command line without its terminator, TOO_LONG, or null when no full line is buffered. */
  readLine(): ReadLineResult {
    while (this.chunks.length > 0) {
      const c = this.chunks[0] as Buffer;
      const lf = c.indexOf(10, this.off);
      if (lf === -1) {
        const n = c.length - this.off;
        if (!this.discarding) {
          if (this.partialLen + n >= this.maxLine) {
            // No terminator can fit any more: drop what we have and everything up to the next LF.
            this.discarding = true;
            this.partial = [];
            this.partialLen = 0;
          } else {
            this.partial.push(this.off === 0 ? c : c.subarray(this.off));
            this.partialLen += n;
          }
        }
        this.dropFirst();
        continue;
      }
      const end = lf + 1;
      const n = end - this.off;
      const start = this.off;
      this.consume(n);
      if (this.discarding || this.partialLen + n > this.maxLine) {
        this.discarding = false;
        this.partial = [];
        this.partialLen = 0;
        return TOO_LONG;
      }
      if (this.partialLen === 0) {
        let e = lf;
        if (e > start && c[e - 1] === 13) e--;
        return c.toString('utf8', start, e);
      }
      this.partial.push(c.subarray(start, end));
      const line = Buffer.concat(this.partial, this.partialLen + n);
      this.partial = [];
      this.partialLen = 0;
      let lineEnd = line.length - 1;
      if (lineEnd > 0 && line[lineEnd - 1] === 13) lineEnd--;
      return line.toString('utf8', 0, lineEnd);
    }
    return null;
  }

  /** The unconsumed bytes of the first chunk (a view, not a copy), or null when none. */
  peek(): Buffer | null {
    const c = this.chunks[0];
    if (c === undefined) return null;
    return this.off === 0 ? c : c.subarray(this.off);
  }

  /** Consume n bytes returned by peek(). */
  advance(n: number): void {
    this.consume(n);
  }

  /**
   * Remove and return every unconsumed byte, including a partial command line. Used to drop
   * pipelined plaintext after STARTTLS and to hand input over when the socket changes owner.
   */
  takeAll(): Buffer {
    const parts = this.partial;
    for (let i = 0; i < this.chunks.length; i++) {
      const c = this.chunks[i] as Buffer;
      parts.push(i === 0 && this.off > 0 ? c.subarray(this.off) : c);
    }
    const out = Buffer.concat(parts);
    this.chunks = [];
    this.off = 0;
    this.total = 0;
    this.partial = [];
    this.partialLen = 0;
    this.discarding = false;
    return out;
  }

  private consume(n: number): void {
    this.total -= n;
    this.off += n;
    const c = this.chunks[0];
    if (c !== undefined && this.off >= c.length) this.dropFirst();
  }

  private dropFirst(): void {
    const c = this.chunks.shift();
    if (c !== undefined) this.total -= c.length - this.off;
    this.off = 0;
  }
}
