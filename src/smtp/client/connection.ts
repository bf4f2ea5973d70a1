// The client's hold on one socket: reply framing, the queue of reply handlers (one per command
// sent, nodemailer style, so pipelining needs no special case), deadlines and the STARTTLS
// upgrade. It can adopt an already-connected socket — plain or TLS, possibly with bytes already
// read — which is how the ODMR turnaround hands a server-side socket to the client role.
// Invariants: replies are delivered to handlers strictly in order; at most one timer is armed per
// connection (deadlines move without touching it, so there is no per-command timer churn); after
// the first failure (network error, peer close, timeout, malformed reply) the socket is destroyed
// and every pending and future handler rejects with the same transient MtaError.

import net from 'node:net';
import tls from 'node:tls';
import { MtaError } from '../../errors.js';
import { type Clock, systemClock } from '../../util/clock.js';
import { type Reply, ReplyParser, type ReplyLimits } from './reply.js';

export interface ConnectionOptions {
  clock?: Clock;
  limits?: Partial<ReplyLimits>;
  /** Bytes already read from the socket that belong to this (client) role. */
  initialBytes?: Buffer;
}

export interface ConnectOptions extends ConnectionOptions {
  connectTimeoutMs?: number;
  localAddress?: string;
  /** A unix-domain socket to connect to (host and port are then only names for messages). */
  path?: string;
}

interface Handler {
  resolve(r: Reply): void;
  reject(e: MtaError): void;
  timeoutMs: number;
  what: string;
}

/** Most replies that may arrive before anyone asked for them (e.g. a greeting sent early). */
const MAX_EARLY = 8;

export class SmtpConnection {
  private sock: net.Socket;
  private readonly clock: Clock;
  private readonly parser: ReplyParser;
  private readonly peer: string;
  private handlers: (Handler | undefined)[] = [];
  private head = 0;
  private early: Reply[] = [];
  private deadline = 0;
  private deadlineWhat = '';
  private timerAt = 0;
  private cancelTimer: (() => void) | undefined;
  private failure: MtaError | undefined;
  private failWaiters = new Set<(e: MtaError) => void>();

  constructor(socket: net.Socket, opts: ConnectionOptions = {}) {
    this.sock = socket;
    this.clock = opts.clock ?? systemClock;
    this.parser = new ReplyParser(opts.limits);
    this.peer = `${socket.remoteAddress ?? '?'}[${socket.remotePort ?? '?'}]`;
    socket.setNoDelay(true);
    this.attach(socket);
    if (opts.initialBytes && opts.initialBytes.length > 0) this.onData(opts.initialBytes);
    if (socket.destroyed) this.fail(this.closedError('socket already closed'));
    else socket.resume();
  }

  /** Opens a TCP connection; rejects with a transient MtaError (451 4.4.1) on failure or timeout. */
  static connect(host: string, port: number, opts: ConnectOptions = {}): Promise<SmtpConnection> {
    const clock = opts.clock ?? systemClock;
    return new Promise((resolve, reject) => {
      const sockOpts: net.NetConnectOpts =
        opts.path !== undefined
          ? { path: opts.path }
          : opts.localAddress !== undefined
            ? { host, port, localAddress: opts.localAddress }
            : { host, port };
      const sock = net.connect(sockOpts);
      const fail = (why: string) => {
        cancel();
        sock.destroy();
        reject(
          new MtaError('SMTP_CONNECT', 'transient', `connect to ${opts.path ?? `${host}[${port}]`}: ${why}`, {
            smtp: { code: 451, enhanced: '4.4.1' },
          }),
        );
      };
      const cancel = clock.setTimer(opts.connectTimeoutMs ?? 30_000, () => fail('connection timed out'));
      sock.once('error', (e) => fail(e.message));
      sock.once('connect', () => {
        cancel();
        sock.removeAllListeners('error');
        resolve(new SmtpConnection(sock, opts));
      });
    });
  }

  get socket(): net.Socket {
    return this.sock;
  }

  get secure(): boolean {
    return this.sock instanceof tls.TLSSocket && this.sock.encrypted === true;
  }

  get alive(): boolean {
    return this.failure === undefined;
  }

  /** The error that ended this connection, if it has ended. */
  get error(): MtaError | undefined {
    return this.failure;
  }

  get remote(): string {
    return this.peer;
  }

  /** Waits for the next reply without sending anything (the greeting, the reply to raw data). */
  expect(timeoutMs: number, what: string): Promise<Reply> {
    if (this.failure) return Promise.reject(this.failure);
    const early = this.early.shift();
    if (early !== undefined) return Promise.resolve(early);
    return new Promise<Reply>((resolve, reject) => {
      const first = this.head === this.handlers.length;
      this.handlers.push({ resolve, reject, timeoutMs, what });
      if (first) this.arm(timeoutMs, what);
    });
  }

  /** Writes a command line and queues a handler for its reply. */
  send(line: string, timeoutMs: number, what: string): Promise<Reply> {
    if (this.failure) return Promise.reject(this.failure);
    this.sock.write(line);
    return this.expect(timeoutMs, what);
  }

  /** Writes raw bytes in one corked batch; returns false when the socket wants a drain first. */
  write(chunks: readonly Buffer[] | Buffer | string): boolean {
    if (this.failure) return false;
    if (typeof chunks === 'string' || Buffer.isBuffer(chunks)) return this.sock.write(chunks);
    this.sock.cork();
    let ok = true;
    for (const c of chunks) ok = this.sock.write(c);
    this.sock.uncork();
    return ok;
  }

  /** Resolves once the socket's write buffer drained; the deadline guards a stalled peer. */
  drain(timeoutMs: number, what: string): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (!this.sock.writableNeedDrain) return Promise.resolve();
    const idle = this.head === this.handlers.length;
    if (idle) this.arm(timeoutMs, what);
    return this.waitEvent(this.sock, 'drain').finally(() => {
      if (idle && this.head === this.handlers.length) this.disarm();
    });
  }

  /**
   * Upgrades to TLS after the peer's 220 to STARTTLS. Any byte the peer sent after that reply is
   * a protocol violation (and the classic STARTTLS injection attack), so it fails the connection.
   */
  async startTls(opts: tls.ConnectionOptions, timeoutMs: number): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.early.length > 0 || this.parser.pending || this.head !== this.handlers.length) {
      const e = this.protocolError('peer sent data after its STARTTLS reply');
      this.fail(e);
      throw e;
    }
    const raw = this.sock;
    this.detach(raw);
    const secure = tls.connect({ ...opts, socket: raw });
    this.sock = secure;
    this.attach(secure);
    this.arm(timeoutMs, 'TLS handshake');
    try {
      await this.waitEvent(secure, 'secureConnect');
    } finally {
      if (this.head === this.handlers.length) this.disarm();
    }
  }

  /** Graceful close after QUIT: half-close our side; the socket is destroyed if the peer lingers. */
  end(lingerMs = 5_000): void {
    if (this.failure) return;
    const sock = this.sock;
    sock.end();
    this.clock.setTimer(lingerMs, () => sock.destroy());
    this.shutdown(this.closedError('connection closed'));
  }

  /**
   * Gives the socket up, open and paused, to another role (the ODMR customer's turnaround: after
   * the provider's 250 to ATRN we are its SMTP server). `clean` is false when the peer sent more
   * than the replies read — it may not speak before our greeting — or a reply is still awaited.
   * The connection is over for this object: every later use rejects.
   */
  release(): { socket: net.Socket; clean: boolean } {
    const sock = this.sock;
    const clean =
      this.failure === undefined &&
      this.early.length === 0 &&
      !this.parser.pending &&
      this.head === this.handlers.length;
    sock.pause();
    this.detach(sock);
    if (!this.failure) this.shutdown(this.closedError('handed to another role'));
    return { socket: sock, clean };
  }

  /** Immediate close; pending handlers reject. */
  close(): void {
    this.fail(this.closedError('connection closed'));
  }

  /** Ends the connection with an error: rejects every pending handler, destroys the socket. */
  fail(err: MtaError): void {
    this.sock.destroy();
    if (!this.failure) this.shutdown(err);
  }

  private shutdown(err: MtaError): void {
    this.failure = err;
    this.disarm();
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    const pending = this.handlers;
    const from = this.head;
    this.handlers = [];
    this.head = 0;
    this.early = [];
    for (let i = from; i < pending.length; i++) pending[i]?.reject(err);
    for (const w of this.failWaiters) w(err);
    this.failWaiters.clear();
  }

  // --- internals --------------------------------------------------------------------------

  private readonly onData = (chunk: Buffer): void => {
    let replies: Reply[];
    try {
      replies = this.parser.feed(chunk);
    } catch (e) {
      this.fail(e instanceof MtaError ? e : this.protocolError(String(e)));
      return;
    }
    for (const r of replies) this.dispatch(r);
  };

  private readonly onEnd = (): void => {
    this.fail(this.closedError('connection closed by peer'));
  };

  private readonly onError = (e: Error): void => {
    this.fail(
      new MtaError('SMTP_NETWORK', 'transient', `connection to ${this.peer} failed: ${e.message}`, {
        smtp: { code: 451, enhanced: '4.4.2' },
        cause: e,
      }),
    );
  };

  private readonly onClose = (): void => {
    this.fail(this.closedError('connection closed'));
  };

  private attach(s: net.Socket): void {
    s.on('data', this.onData);
    s.on('end', this.onEnd);
    s.on('error', this.onError);
    s.on('close', this.onClose);
  }

  private detach(s: net.Socket): void {
    s.off('data', this.onData);
    s.off('end', this.onEnd);
    s.off('error', this.onError);
    s.off('close', this.onClose);
  }

  private dispatch(r: Reply): void {
    if (this.failure) return;
    if (this.head === this.handlers.length) {
      this.early.push(r);
      if (this.early.length > MAX_EARLY) this.fail(this.protocolError('peer sent unsolicited replies'));
      return;
    }
    const h = this.handlers[this.head];
    this.handlers[this.head] = undefined;
    this.head++;
    if (this.head === this.handlers.length) {
      this.handlers = [];
      this.head = 0;
      this.disarm();
    } else {
      const next = this.handlers[this.head];
      if (next) this.arm(next.timeoutMs, next.what);
    }
    h?.resolve(r);
  }

  private waitEvent(emitter: net.Socket, event: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onFail = (e: MtaError) => {
        emitter.off(event, onEvent);
        reject(e);
      };
      const onEvent = () => {
        this.failWaiters.delete(onFail);
        resolve();
      };
      this.failWaiters.add(onFail);
      emitter.once(event, onEvent);
    });
  }

  /** Moves the deadline; the single timer is only (re)armed when it would fire too late. */
  private arm(ms: number, what: string): void {
    const now = this.clock.now();
    this.deadline = now + ms;
    this.deadlineWhat = what;
    if (this.cancelTimer === undefined || this.timerAt > this.deadline) {
      this.cancelTimer?.();
      this.schedule(now, this.deadline);
    }
  }

  private disarm(): void {
    this.deadline = 0;
  }

  private schedule(now: number, at: number): void {
    this.timerAt = at;
    this.cancelTimer = this.clock.setTimer(at - now, this.onTimer);
  }

  private readonly onTimer = (): void => {
    this.cancelTimer = undefined;
    if (this.deadline === 0 || this.failure) return;
    const now = this.clock.now();
    if (now < this.deadline) {
      this.schedule(now, this.deadline);
      return;
    }
    this.fail(
      new MtaError(
        'SMTP_TIMEOUT',
        'transient',
        `timeout waiting for ${this.deadlineWhat} from ${this.peer}`,
        {
          smtp: { code: 451, enhanced: '4.4.2' },
        },
      ),
    );
  };

  private closedError(why: string): MtaError {
    return new MtaError('SMTP_CONN_CLOSED', 'transient', `${why} (${this.peer})`, {
      smtp: { code: 451, enhanced: '4.4.2' },
    });
  }

  private protocolError(why: string): MtaError {
    return new MtaError('SMTP_REPLY_PROTOCOL', 'transient', `${why} (${this.peer})`, {
      smtp: { code: 451, enhanced: '4.5.0' },
    });
  }
}
