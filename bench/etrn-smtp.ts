// Minimal SMTP pieces for the ETRN/ATRN benchmark: a counting SMTP server session (used by the
// ETRN sink and, after the ATRN turnaround, by the benchmark's ODMR customer), a listener built
// on it, and a reply reader for the few client commands before a turnaround.
// Invariant: the server session is a correct small ESMTP server for what logmta sends (EHLO,
// PIPELINING, one transaction per message, dot-unstuffing is irrelevant: it only counts), answers
// commands strictly in order (pipelined groups work), and disables Nagle so replies leave at once.
// Fails: a reply reader rejects on timeout or close; the server session just ends with its socket.

import net from 'node:net';

export interface Arrival {
  /** performance.now() when the final dot arrived (before our 250 is written). */
  at: number;
  recipients: string[];
}

/** Serves SMTP on `socket` until QUIT or close; calls `onMessage` at each end of data. */
export function serveSmtp(
  socket: net.Socket,
  onMessage: (a: Arrival) => void,
  opts: { greet?: boolean; name?: string } = {},
): Promise<void> {
  socket.setNoDelay(true);
  socket.setEncoding('latin1');
  const name = opts.name ?? 'bench-sink.test';
  let buf = '';
  let inData = false;
  let rcpts: string[] = [];
  const done = new Promise<void>((resolve) => {
    socket.once('close', () => resolve());
  });
  socket.on('error', () => {});
  socket.on('data', (chunk: string) => {
    buf += chunk;
    let out = '';
    let pos = 0;
    let quit = false;
    for (;;) {
      const i = buf.indexOf('\r\n', pos);
      if (i < 0) break;
      const line = buf.slice(pos, i);
      pos = i + 2;
      if (inData) {
        if (line === '.') {
          inData = false;
          onMessage({ at: performance.now(), recipients: rcpts });
          out += '250 2.0.0 ok\r\n';
        }
        continue;
      }
      const verb = line.slice(0, 4).toUpperCase();
      if (verb === 'EHLO')
        out += `250-${name}\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n`;
      else if (verb === 'HELO') out += `250 ${name}\r\n`;
      else if (verb === 'MAIL') {
        rcpts = [];
        out += '250 2.1.0 ok\r\n';
      } else if (verb === 'RCPT') {
        const m = /<([^>]*)>/.exec(line);
        rcpts.push(m?.[1] ?? '');
        out += '250 2.1.5 ok\r\n';
      } else if (verb === 'DATA') {
        inData = true;
        out += '354 go ahead\r\n';
      } else if (verb === 'RSET' || verb === 'NOOP') out += '250 2.0.0 ok\r\n';
      else if (verb === 'QUIT') {
        out += '221 2.0.0 bye\r\n';
        quit = true;
        break;
      } else out += '502 5.5.2 not here\r\n';
    }
    buf = buf.slice(pos);
    if (out !== '') socket.write(out);
    if (quit) socket.end();
  });
  socket.resume();
  if (opts.greet ?? true) socket.write(`220 ${name} ESMTP\r\n`);
  return done;
}

/** A loopback SMTP sink that counts messages, remembering each arrival. */
export class CountingSink {
  readonly arrivals: Arrival[] = [];
  private waiters: Array<{ pred: () => boolean; resolve: () => void }> = [];
  private readonly sockets = new Set<net.Socket>();
  connections = 0;

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  static start(): Promise<CountingSink> {
    return new Promise((resolve, reject) => {
      let sink: CountingSink | undefined;
      const server = net.createServer({ noDelay: true }, (s) => {
        if (!sink) return s.destroy();
        sink.connections++;
        sink.sockets.add(s);
        s.once('close', () => sink?.sockets.delete(s));
        void serveSmtp(s, (a) => sink?.arrived(a));
      });
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const addr = server.address() as net.AddressInfo;
        sink = new CountingSink(server, addr.port);
        resolve(sink);
      });
    });
  }

  private arrived(a: Arrival): void {
    this.arrivals.push(a);
    this.waiters = this.waiters.filter((w) => {
      if (!w.pred()) return true;
      w.resolve();
      return false;
    });
  }

  /** Forgets the arrivals so far (a new run may reuse domain names). */
  reset(): void {
    this.arrivals.length = 0;
  }

  /** Arrivals with a recipient in `domain`. */
  countFor(domain: string): number {
    const suffix = `@${domain}`;
    return this.arrivals.filter((a) => a.recipients.some((r) => r.endsWith(suffix))).length;
  }

  /** Resolves with the time of the `n`th arrival for `domain`; rejects after `ms`. */
  async waitFor(domain: string, n: number, ms: number): Promise<number> {
    const suffix = `@${domain}`;
    const nth = (): number | undefined =>
      this.arrivals.filter((a) => a.recipients.some((r) => r.endsWith(suffix)))[n - 1]?.at;
    if (nth() === undefined) {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(
          () =>
            reject(new Error(`sink: ${this.countFor(domain)} of ${n} messages for ${domain} after ${ms} ms`)),
          ms,
        );
        this.waiters.push({
          pred: () => nth() !== undefined,
          resolve: () => {
            clearTimeout(t);
            resolve();
          },
        });
      });
    }
    return nth()!;
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** Reads whole SMTP replies ("250-a\r\n250 b\r\n") from a socket, in order. */
export class ReplyReader {
  private buf = '';
  private cur = '';
  private readonly replies: string[] = [];
  private waiter: (() => void) | undefined;
  private closed = false;
  private readonly onData = (d: Buffer): void => {
    this.buf += d.toString('latin1');
    for (;;) {
      const i = this.buf.indexOf('\r\n');
      if (i < 0) break;
      const line = this.buf.slice(0, i + 2);
      this.buf = this.buf.slice(i + 2);
      this.cur += line;
      if (line[3] !== '-') {
        this.replies.push(this.cur);
        this.cur = '';
      }
    }
    this.waiter?.();
  };
  private readonly onClose = (): void => {
    this.closed = true;
    this.waiter?.();
  };

  constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on('data', this.onData);
    socket.on('close', this.onClose);
    socket.on('error', () => {});
  }

  static connect(port: number, host = '127.0.0.1'): Promise<ReplyReader> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host }, () => {
        s.off('error', reject);
        resolve(new ReplyReader(s));
      });
      s.once('error', reject);
    });
  }

  async read(ms = 30_000): Promise<string> {
    const end = Date.now() + ms;
    while (this.replies.length === 0) {
      if (this.closed) throw new Error('connection closed while waiting for a reply');
      const left = end - Date.now();
      if (left <= 0) throw new Error('timed out waiting for a reply');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          this.waiter = undefined;
          resolve();
        };
      });
    }
    return this.replies.shift()!;
  }

  async ask(line: string, ms?: number): Promise<string> {
    this.socket.write(`${line}\r\n`);
    return this.read(ms);
  }

  /** Stops reading (before a turnaround); false if bytes beyond the replies read had arrived. */
  detach(): boolean {
    this.socket.off('data', this.onData);
    this.socket.off('close', this.onClose);
    this.socket.pause();
    return this.replies.length === 0 && this.buf === '' && this.cur === '';
  }
}

/** A loopback port that was free a moment ago (for listeners a child process must bind). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}
