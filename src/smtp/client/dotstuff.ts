// Dot-stuffing for DATA (RFC 5321 §4.5.2), Buffer-based and incremental across chunk boundaries.
// Invariant: the output never contains a line "." before the terminator, and never copies message
// bytes — it returns subarrays of the input interleaved with a shared "." buffer, ready for a
// corked socket write. A dot is doubled after every LF, bare or not, so that a stored message
// with bare LFs cannot smuggle an end-of-data sequence ("\n.\r\n") to a lenient receiver.

const DOT = Buffer.from('.');
const CRLF = Buffer.from('\r\n');
const TERMINATOR = Buffer.from('.\r\n');
const CRLF_TERMINATOR = Buffer.from('\r\n.\r\n');
const LF_DOT = Buffer.from('\n.');

export class DotStuffer {
  /** Last byte written so far; LF at the start means "at the beginning of a line". */
  private last = 10;
  private prev = 13;

  /** Appends the wire form of `chunk` to `out`. */
  push(chunk: Buffer, out: Buffer[]): void {
    const n = chunk.length;
    if (n === 0) return;
    let start = 0;
    if (this.last === 10 && chunk[0] === 46 /* . */) out.push(DOT);
    let i = chunk.indexOf(LF_DOT);
    while (i >= 0) {
      // Emit through the LF and its dot, then one extra dot: "\n." -> "\n..".
      out.push(chunk.subarray(start, i + 2));
      out.push(DOT);
      start = i + 2;
      i = chunk.indexOf(LF_DOT, start);
    }
    if (start < n) out.push(start === 0 ? chunk : chunk.subarray(start));
    this.prev = n >= 2 ? (chunk[n - 2] ?? 0) : this.last;
    this.last = chunk[n - 1] ?? 0;
  }

  /** Appends the end-of-data sequence, adding a CRLF when the message did not end with one. */
  end(out: Buffer[]): void {
    if (this.last === 10 && this.prev === 13) out.push(TERMINATOR);
    else if (this.last === 10) {
      // Bare LF at the end: finish the line properly before the terminator.
      out.push(CRLF, TERMINATOR);
    } else out.push(CRLF_TERMINATOR);
    this.last = 10;
    this.prev = 13;
  }
}

/** Wire form of a whole message for DATA, terminator included. */
export function dotStuff(chunks: readonly Buffer[]): Buffer[] {
  const s = new DotStuffer();
  const out: Buffer[] = [];
  for (const c of chunks) s.push(c, out);
  s.end(out);
  return out;
}
