// Watching a spliced ODMR session: after ATRN's 250 a node relays bytes between its customer
// (now the SMTP server) and a domain's home (now the SMTP client) without taking part. To serve
// several homes in one customer session it must know where one home's session ends: at the
// home's QUIT, outside any mail transaction, with every command answered. This watcher follows
// both directions just enough to tell — command lines, DATA content up to its final dot (after
// the customer's 354), BDAT chunks by their byte count, and replies by their final line — and
// holds back a QUIT that is not the end of the customer's whole session.
// Pure: bytes in, decisions out; no sockets.
// Invariant: `clean` is true only between transactions with no reply outstanding, so a home that
// ends (or dies) uncleanly is never followed by another session on the same customer connection
// (that would write commands into an open DATA). A QUIT line is never forwarded when held.

type Mode = 'cmd' | 'data' | 'bdat';

export interface FromHome {
  /** Bytes to pass on to the customer. */
  forward: Buffer;
  /** The home sent QUIT (not forwarded when `holdQuit`); what follows it is dropped. */
  quit: boolean;
}

export class SpliceWatch {
  private mode: Mode = 'cmd';
  private cmdLine: Buffer[] = [];
  private cmdLen = 0;
  private bdatLeft = 0;
  private lastBdat = false;
  /** DATA terminator scan: 0 line start, 1 after "." at line start, 2 after ".\r", 3 mid-line. */
  private dot = 0;
  private readonly pending: string[] = [];
  private replyLine = '';
  private quitSeen = false;
  /** Messages the customer took (2xx to the final dot or to BDAT LAST). */
  messages = 0;

  /** @param holdQuit keep a QUIT from the customer (another home follows in this session). */
  constructor(private readonly holdQuit: boolean) {}

  /** Commands sent and not yet answered. */
  get outstanding(): number {
    return this.pending.length;
  }

  /** Between transactions, every command answered, nothing half-sent. */
  get clean(): boolean {
    return this.mode === 'cmd' && this.cmdLen === 0 && this.pending.length === 0;
  }

  get quit(): boolean {
    return this.quitSeen;
  }

  fromHome(chunk: Buffer): FromHome {
    if (this.quitSeen) return { forward: Buffer.alloc(0), quit: true };
    // Content goes on as it comes; a command line only once complete (it might be a QUIT to hold).
    const out: Buffer[] = [];
    let i = 0;
    while (i < chunk.length) {
      if (this.mode === 'bdat') {
        const n = Math.min(this.bdatLeft, chunk.length - i);
        out.push(chunk.subarray(i, i + n));
        i += n;
        this.bdatLeft -= n;
        if (this.bdatLeft === 0) this.mode = 'cmd';
        continue;
      }
      if (this.mode === 'data') {
        const from = i;
        while (i < chunk.length && this.mode === 'data') {
          const c = chunk[i++]!;
          if (this.dot === 0) this.dot = c === 0x2e ? 1 : c === 0x0a ? 0 : 3;
          else if (this.dot === 1) this.dot = c === 0x0d ? 2 : c === 0x0a ? 0 : 3;
          else if (this.dot === 2) {
            if (c === 0x0a) {
              // ".\r\n" alone on a line: the end of the data, answered like a command.
              this.mode = 'cmd';
              this.pending.push('.');
              this.dot = 0;
            } else this.dot = 3;
          } else if (c === 0x0a) this.dot = 0;
        }
        out.push(chunk.subarray(from, i));
        continue;
      }
      const lf = chunk.indexOf(0x0a, i);
      if (lf < 0) {
        this.cmdLine.push(Buffer.from(chunk.subarray(i)));
        this.cmdLen += chunk.length - i;
        break;
      }
      this.cmdLine.push(chunk.subarray(i, lf + 1));
      i = lf + 1;
      const whole = this.cmdLine.length === 1 ? this.cmdLine[0]! : Buffer.concat(this.cmdLine);
      this.cmdLine = [];
      this.cmdLen = 0;
      const line = whole.toString('latin1').replace(/\r?\n$/, '');
      const verb = (line.split(' ')[0] ?? '').toUpperCase();
      if (verb === 'QUIT') {
        this.quitSeen = true;
        // The QUIT goes on only when this is the end of the customer's whole session.
        if (!this.holdQuit) out.push(whole);
        return { forward: Buffer.concat(out), quit: true };
      }
      out.push(whole);
      if (verb === 'BDAT') {
        const m = /^BDAT\s+(\d+)(\s+LAST)?\s*$/i.exec(line);
        this.bdatLeft = m ? Number(m[1]) : 0;
        this.lastBdat = m?.[2] !== undefined;
        if (this.bdatLeft > 0) this.mode = 'bdat';
        this.pending.push(this.lastBdat ? 'BDAT-LAST' : 'BDAT');
      } else this.pending.push(verb);
    }
    return { forward: out.length === 1 ? out[0]! : Buffer.concat(out), quit: false };
  }

  /** Replies from the customer (all passed on to the home). */
  fromCustomer(chunk: Buffer): void {
    this.replyLine += chunk.toString('latin1');
    for (;;) {
      const lf = this.replyLine.indexOf('\n');
      if (lf < 0) break;
      const line = this.replyLine.slice(0, lf);
      this.replyLine = this.replyLine.slice(lf + 1);
      // A reply ends at a line "ddd " (or "ddd" alone); "ddd-" continues it.
      if (!/^\d{3}(?: |\r?$)/.test(line)) continue;
      const verb = this.pending.shift();
      if ((verb === '.' || verb === 'BDAT-LAST') && line.startsWith('2')) this.messages++;
      if (verb === 'DATA' && line.startsWith('354')) {
        this.mode = 'data';
        this.dot = 0;
      }
    }
  }

  /** Whether the last BDAT chunk seen was the LAST one (diagnostics). */
  get lastChunk(): boolean {
    return this.lastBdat;
  }
}
