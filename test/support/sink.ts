// A scriptable SMTP sink for integration tests. Listens on 127.0.0.1:0, records every
// transaction it accepts, and fails on cue: chosen replies to MAIL/RCPT/end of data, a disconnect
// during DATA, a drop right after the data arrived (to simulate duplicates), slow replies, and any
// mix of PIPELINING, STARTTLS (self-signed certificate), CHUNKING, DSN, SIZE, SMTPUTF8 and AUTH;
// or an LMTP server (RFC 2033: LHLO, one reply per recipient after the data), on a unix socket too.
// Invariant: it is itself a correct small ESMTP server — commands are processed strictly in order
// from the input buffer (so pipelined groups work), data is dot-unstuffed, BDAT chunks are read
// by count, bytes after STARTTLS are discarded. It trusts its tests: limits are loose.

import { createHash, createHmac, type Hash, randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { generate } from 'selfsigned';

export interface SinkTransaction {
  helo: string;
  sender: string;
  mailParams: string[];
  recipients: string[];
  rcptParams: string[][];
  data: Buffer;
  tls: boolean;
  authUser: string | undefined;
  chunked: boolean;
  /** digestOnly: the X-Big tag of the message (test/support/bigmail.ts) and its SHA-256 from there. */
  tag?: string;
  digest?: string;
  /** Octets of message data received. */
  size: number;
}

export interface SinkOptions {
  /** Port to listen on (default 0: any). A customer's host that is down first and up later. */
  port?: number;
  /** Listen on this unix socket path instead of a TCP port. */
  path?: string;
  /** Speak LMTP (RFC 2033): LHLO instead of EHLO, and one reply per recipient after the data. */
  lmtp?: boolean;
  /** With lmtp: the reply line for one recipient after the data (default 250); a 2xx delivers it. */
  lmtpReply?: (address: string) => string | undefined;
  /** Loopback address to listen on (default 127.0.0.1), e.g. 127.0.0.2 for a second MX host on the same port. */
  address?: string;
  hostname?: string;
  /** Whole greeting line(s) without CRLF, e.g. "554 5.7.1 go away". Default 220. */
  greeting?: string;
  /** Offer EHLO; false answers 502 to EHLO so the client must fall back to HELO. Default true. */
  ehlo?: boolean;
  pipelining?: boolean;
  starttls?: boolean;
  /** More options of the STARTTLS context, e.g. `{ maxVersion: 'TLSv1.1' }` for a peer whose
   *  TLS a modern client refuses (the handshake fails). */
  tlsContext?: tls.SecureContextOptions;
  chunking?: boolean;
  dsn?: boolean;
  /** Advertise SIZE with this limit (0 = no limit) and enforce it. Default: SIZE not offered. */
  size?: number;
  smtputf8?: boolean;
  eightBitMime?: boolean;
  /** Advertise BINARYMIME (RFC 3030; data arrives by BDAT anyway). Default false. */
  binaryMime?: boolean;
  auth?: { user: string; pass: string };
  /** MAIL and RCPT get 530 until AUTH succeeded. */
  requireAuth?: boolean;
  /** Return a reply line to override the 250 to MAIL FROM. */
  mailReply?: (sender: string) => string | undefined;
  /** Return a reply line to override the 250 to RCPT TO (e.g. "550 5.1.1 no such user"). */
  rcptReply?: (address: string, accepted: number) => string | undefined;
  /** Return a reply line to override the 250 after the end of data (e.g. "451 4.3.0 later"). */
  dataReply?: (tx: SinkTransaction) => string | undefined;
  /** 452 4.5.3 to every RCPT after this many accepted. */
  maxRecipients?: number;
  /** Close the connection as soon as message data starts arriving. */
  disconnectDuringData?: boolean;
  /** Record the transaction, then close without replying to the end of data (a function: for
   *  the transactions it returns true for). */
  dropAfterData?: boolean | ((tx: SinkTransaction) => boolean);
  /** Keep every chunk read from the clients, in order (`reads`): what arrived in one write. */
  keepReads?: boolean;
  /** Delay every reply by this many milliseconds. */
  delayMs?: number;
  /**
   * The reply to the end of data (and every reply after it on that connection) waits until the
   * returned promise settles: a delivery held on the wire. The transaction is recorded at once.
   */
  holdDataReply?: () => Promise<void>;
  /**
   * Keep no message data (transactions get `data` empty): only its size and, for messages made by
   * test/support/bigmail.ts, the tag and digest, computed as the bytes arrive (for huge messages).
   */
  digestOnly?: boolean;
}

/** Message data of one transaction: kept whole, or (digestOnly) hashed from the X-Big header on. */
class DataCollector {
  private parts: Buffer[] = [];
  bytes = 0;
  private head: Buffer = Buffer.alloc(0);
  private hash: Hash | undefined;
  tag: string | undefined;

  constructor(private readonly digestOnly: boolean) {}

  push(b: Buffer): void {
    this.bytes += b.length;
    if (!this.digestOnly) {
      this.parts.push(b);
      return;
    }
    if (this.hash) {
      this.hash.update(b);
      return;
    }
    if (this.head.length > 1 << 20) return; // no X-Big header: nothing to digest
    this.head = Buffer.concat([this.head, b]);
    const at = this.head.indexOf('X-Big: ');
    const eol = at < 0 ? -1 : this.head.indexOf('\n', at);
    if (eol < 0) return;
    this.tag = this.head
      .subarray(at + 7, eol)
      .toString('latin1')
      .replace(/\r$/, '');
    this.hash = createHash('sha256').update(this.head.subarray(at));
    this.head = Buffer.alloc(0);
  }

  /** The data (empty when digestOnly), and resets for the next message. */
  take(): { data: Buffer; size: number; tag?: string; digest?: string } {
    const out: { data: Buffer; size: number; tag?: string; digest?: string } = {
      data: Buffer.concat(this.parts),
      size: this.bytes,
    };
    if (this.hash && this.tag !== undefined) {
      out.tag = this.tag;
      out.digest = this.hash.digest('hex');
    }
    this.reset();
    return out;
  }

  reset(): void {
    this.parts = [];
    this.bytes = 0;
    this.head = Buffer.alloc(0);
    this.hash = undefined;
    this.tag = undefined;
  }
}

let certPromise: Promise<{ key: string; cert: string }> | undefined;

/** A self-signed certificate for "localhost", generated once per process. */
export function sinkCertificate(): Promise<{ key: string; cert: string }> {
  certPromise ??= generate([{ name: 'commonName', value: 'localhost' }], { keyType: 'ec' }).then((p) => ({
    key: p.private,
    cert: p.cert,
  }));
  return certPromise;
}

export class SmtpSink {
  readonly host: string;
  readonly transactions: SinkTransaction[] = [];
  /** Every command line received, across connections, without CRLF. */
  readonly commands: string[] = [];
  /** Commands grouped by the read that delivered them: a pipelining client sends groups. */
  readonly batches: string[][] = [];
  /** With keepReads: every chunk read from any client, in order. */
  readonly reads: Buffer[] = [];
  connections = 0;
  readonly opts: SinkOptions;
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly waiters: (() => void)[] = [];
  readonly secureContext: tls.SecureContext | undefined;

  private constructor(opts: SinkOptions, ctx: tls.SecureContext | undefined) {
    this.opts = opts;
    this.host = opts.address ?? '127.0.0.1';
    this.secureContext = ctx;
    this.server = net.createServer((s) => this.accept(s));
  }

  static async start(opts: SinkOptions = {}): Promise<SmtpSink> {
    let ctx: tls.SecureContext | undefined;
    if (opts.starttls) ctx = tls.createSecureContext({ ...(await sinkCertificate()), ...opts.tlsContext });
    const sink = new SmtpSink(opts, ctx);
    await new Promise<void>((resolve, reject) => {
      sink.server.once('error', reject);
      if (opts.path !== undefined) sink.server.listen(opts.path, () => resolve());
      else sink.server.listen(opts.port ?? 0, sink.host, () => resolve());
    });
    return sink;
  }

  /** Connections currently open (a killed client's close the kernel has delivered are gone). */
  get openConnections(): number {
    return this.sockets.size;
  }

  get port(): number {
    const a = this.server.address();
    return typeof a === 'object' && a !== null ? a.port : 0;
  }

  /** Resolves once at least n transactions were recorded. */
  async waitForTransactions(n: number): Promise<void> {
    while (this.transactions.length < n) await new Promise<void>((r) => this.waiters.push(r));
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  /**
   * Runs a session on a socket that is already connected, starting with `initial` bytes already
   * read from it (an ODMR customer after ATRN's 250: the provider is the client now).
   */
  serve(s: net.Socket, initial: Buffer = Buffer.alloc(0)): void {
    this.accept(s);
    if (initial.length > 0) s.unshift(initial);
  }

  /** @internal */
  record(tx: SinkTransaction): void {
    this.transactions.push(tx);
    for (const w of this.waiters.splice(0)) w();
  }

  private accept(s: net.Socket): void {
    this.connections++;
    this.sockets.add(s);
    s.setNoDelay(true);
    s.on('close', () => this.sockets.delete(s));
    s.on('error', () => {});
    new SinkSession(this, s).start();
  }
}

type Mode = 'command' | 'data' | 'bdat' | 'auth' | 'closed';

class SinkSession {
  private sock: net.Socket;
  private buf: Buffer = Buffer.alloc(0);
  private mode: Mode = 'command';
  private helo = '';
  private tls = false;
  private authUser: string | undefined;
  private tx: SinkTransaction | undefined;
  private readonly dataParts: DataCollector;
  private bdatLeft = 0;
  private bdatLast = false;
  private authStep: ((line: string) => void) | undefined;
  private out: Promise<void> = Promise.resolve();

  constructor(
    private readonly sink: SmtpSink,
    socket: net.Socket,
  ) {
    this.sock = socket;
    this.dataParts = new DataCollector(sink.opts.digestOnly === true);
  }

  start(): void {
    this.sock.on('data', this.onData);
    const host = this.sink.opts.hostname ?? 'sink.test';
    const g = this.sink.opts.greeting ?? `220 ${host} ESMTP sink`;
    this.reply(g);
    if (!g.startsWith('220')) this.reply(undefined, () => this.sock.end());
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.mode === 'closed') return;
    if (this.sink.opts.keepReads) this.sink.reads.push(chunk);
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const before = this.sink.commands.length;
    this.process();
    if (this.sink.commands.length > before) this.sink.batches.push(this.sink.commands.slice(before));
  };

  /** Queues a reply (and an action run right after it is written), honouring delayMs. */
  private reply(line: string | undefined, after?: () => void): void {
    const delay = this.sink.opts.delayMs ?? 0;
    const write = () => {
      if (line !== undefined && !this.sock.destroyed) this.sock.write(`${line}\r\n`);
      after?.();
    };
    if (delay > 0) this.out = this.out.then(() => new Promise<void>((r) => setTimeout(r, delay))).then(write);
    else this.out = this.out.then(write);
  }

  private process(): void {
    while (this.buf.length > 0 && this.mode !== 'closed') {
      if (this.mode === 'bdat') {
        if (this.sink.opts.disconnectDuringData) {
          this.drop();
          return;
        }
        const take = Math.min(this.bdatLeft, this.buf.length);
        this.dataParts.push(this.buf.subarray(0, take));
        this.buf = this.buf.subarray(take);
        this.bdatLeft -= take;
        if (this.bdatLeft > 0) return;
        this.mode = 'command';
        this.endBdat();
        continue;
      }
      const lf = this.buf.indexOf(10);
      if (this.mode === 'data' && this.sink.opts.disconnectDuringData) {
        this.drop();
        return;
      }
      if (lf < 0) {
        if (this.mode !== 'data' && this.buf.length > 4096) {
          this.reply('500 5.5.2 line too long', () => this.sock.end());
          this.mode = 'closed';
        }
        return;
      }
      const line = this.buf.subarray(0, lf + 1);
      this.buf = this.buf.subarray(lf + 1);
      if (this.mode === 'data') this.dataLine(line);
      else this.commandLine(line.toString('utf8').replace(/\r?\n$/, ''));
    }
  }

  private drop(): void {
    this.mode = 'closed';
    this.sock.destroy();
  }

  private dataLine(line: Buffer): void {
    if (line.length === 3 && line[0] === 46 && line[1] === 13 && line[2] === 10) {
      this.mode = 'command';
      this.finish(false);
      return;
    }
    this.dataParts.push(line[0] === 46 ? line.subarray(1) : line);
  }

  private endBdat(): void {
    if (this.tx === undefined || this.tx.recipients.length === 0) {
      this.dataParts.reset();
      this.reply('503 5.5.1 no valid recipients');
      return;
    }
    if (this.bdatLast) this.finish(true);
    else this.reply(`250 2.0.0 ${this.dataParts.bytes} octets received`);
  }

  private finish(chunked: boolean): void {
    const tx = this.tx;
    this.tx = undefined;
    const got = this.dataParts.take();
    if (tx === undefined) {
      this.reply('503 5.5.1 no transaction');
      return;
    }
    tx.data = got.data;
    tx.size = got.size;
    if (got.tag !== undefined) tx.tag = got.tag;
    if (got.digest !== undefined) tx.digest = got.digest;
    tx.chunked = chunked;
    const drop = this.sink.opts.dropAfterData;
    if (drop === true || (typeof drop === 'function' && drop(tx))) {
      this.sink.record(tx);
      this.drop();
      return;
    }
    if (this.sink.opts.lmtp) {
      // LMTP: one reply per accepted recipient, in RCPT order; the message is delivered to those
      // that got a 2xx.
      const replies = tx.recipients.map((a) => this.sink.opts.lmtpReply?.(a) ?? '250 2.0.0 delivered');
      const ok = (_: unknown, i: number) => replies[i]!.startsWith('2');
      const taken = tx.recipients.filter(ok);
      if (taken.length > 0)
        this.sink.record({ ...tx, recipients: taken, rcptParams: tx.rcptParams.filter(ok) });
      for (const line of replies) this.reply(line);
      return;
    }
    const r = this.sink.opts.dataReply?.(tx);
    if (r === undefined || r.startsWith('2')) this.sink.record(tx);
    const hold = this.sink.opts.holdDataReply;
    if (hold) this.out = this.out.then(hold);
    this.reply(r ?? `250 2.0.0 Ok: queued as ${this.sink.transactions.length}`);
  }

  private commandLine(line: string): void {
    this.sink.commands.push(line);
    if (this.mode === 'auth') {
      this.authStep?.(line);
      return;
    }
    const sp = line.indexOf(' ');
    const verb = (sp < 0 ? line : line.slice(0, sp)).toUpperCase();
    const arg = sp < 0 ? '' : line.slice(sp + 1);
    const o = this.sink.opts;
    switch (verb) {
      case 'LHLO':
      case 'EHLO':
        if ((verb === 'LHLO') !== (o.lmtp === true)) {
          this.reply('502 5.5.1 command not recognized');
          return;
        }
        if (o.ehlo === false) {
          this.reply('502 5.5.1 EHLO not implemented');
          return;
        }
        this.helo = arg;
        this.tx = undefined;
        {
          this.reply(this.ehloReply());
          return;
        }
      case 'HELO':
        this.helo = arg;
        this.tx = undefined;
        {
          this.reply(`250 ${o.hostname ?? 'sink.test'}`);
          return;
        }
      case 'STARTTLS':
        if (!o.starttls || this.tls) {
          this.reply('502 5.5.1 not available');
          return;
        }
        this.mode = 'closed'; // nothing more is read from the plain-text stream
        this.buf = Buffer.alloc(0);
        {
          this.reply('220 2.0.0 Ready to start TLS', () => this.upgrade());
          return;
        }
      case 'AUTH': {
        this.auth(arg);
        return;
      }
      case 'MAIL': {
        this.mail(arg);
        return;
      }
      case 'RCPT': {
        this.rcpt(arg);
        return;
      }
      case 'DATA':
        if (this.tx === undefined) {
          this.reply('503 5.5.1 need MAIL');
          return;
        }
        if (this.tx.recipients.length === 0) {
          this.reply('554 5.5.1 no valid recipients');
          return;
        }
        this.mode = 'data';
        this.dataParts.reset();
        {
          this.reply('354 End data with <CR><LF>.<CR><LF>');
          return;
        }
      case 'BDAT': {
        this.bdat(arg);
        return;
      }
      case 'RSET':
        this.tx = undefined;
        {
          this.reply('250 2.0.0 Ok');
          return;
        }
      case 'NOOP': {
        this.reply('250 2.0.0 Ok');
        return;
      }
      case 'QUIT':
        this.mode = 'closed';
        {
          this.reply('221 2.0.0 Bye', () => this.sock.end());
          return;
        }
      default: {
        this.reply('502 5.5.2 command not recognized');
        return;
      }
    }
  }

  private ehloReply(): string {
    const o = this.sink.opts;
    const ext: string[] = [o.hostname ?? 'sink.test'];
    if (o.pipelining !== false) ext.push('PIPELINING');
    if (o.size !== undefined) ext.push(o.size > 0 ? `SIZE ${o.size}` : 'SIZE');
    if (o.eightBitMime !== false) ext.push('8BITMIME');
    if (o.smtputf8) ext.push('SMTPUTF8');
    if (o.dsn) ext.push('DSN');
    if (o.chunking) ext.push('CHUNKING');
    if (o.binaryMime) ext.push('BINARYMIME');
    if (o.starttls && !this.tls) ext.push('STARTTLS');
    if (o.auth) ext.push('AUTH PLAIN LOGIN CRAM-MD5');
    ext.push('ENHANCEDSTATUSCODES');
    return ext.map((e, i) => `250${i === ext.length - 1 ? ' ' : '-'}${e}`).join('\r\n');
  }

  private upgrade(): void {
    const raw = this.sock;
    raw.off('data', this.onData);
    const ctx = this.sink.secureContext;
    const secure = new tls.TLSSocket(raw, { isServer: true, ...(ctx && { secureContext: ctx }) });
    secure.on('error', () => raw.destroy());
    secure.on('data', this.onData);
    this.sock = secure;
    this.tls = true;
    this.helo = '';
    this.tx = undefined;
    this.mode = 'command';
  }

  private auth(arg: string): void {
    const o = this.sink.opts;
    const [mech = '', initial] = arg.split(' ');
    if (!o.auth) {
      this.reply('502 5.5.1 AUTH not available');
      return;
    }
    if (this.authUser !== undefined) {
      this.reply('503 5.5.1 already authenticated');
      return;
    }
    const creds = o.auth;
    const done = (user: string, ok: boolean) => {
      this.mode = 'command';
      this.authStep = undefined;
      if (ok) this.authUser = user;
      this.reply(ok ? '235 2.7.0 Authentication successful' : '535 5.7.8 Authentication credentials invalid');
    };
    const b64 = (s: string) => Buffer.from(s, 'base64').toString('utf8');
    const cancelled = (line: string) => {
      if (line !== '*') return false;
      this.mode = 'command';
      this.authStep = undefined;
      this.reply('501 5.7.0 Authentication cancelled');
      return true;
    };
    switch (mech.toUpperCase()) {
      case 'PLAIN': {
        const check = (resp: string) => {
          const [, user = '', pass = ''] = b64(resp).split('\0');
          done(user, user === creds.user && pass === creds.pass);
        };
        if (initial !== undefined) {
          check(initial);
          return;
        }
        this.mode = 'auth';
        this.authStep = (l) => cancelled(l) || check(l);
        this.reply('334 ');
        return;
      }
      case 'LOGIN': {
        let user = '';
        this.mode = 'auth';
        this.authStep = (l) => {
          if (cancelled(l)) return;
          user = b64(l);
          this.authStep = (p) => cancelled(p) || done(user, user === creds.user && b64(p) === creds.pass);
          this.reply('334 UGFzc3dvcmQ6');
        };
        this.reply('334 VXNlcm5hbWU6');
        return;
      }
      case 'CRAM-MD5': {
        const challenge = `<${randomBytes(8).toString('hex')}@${o.hostname ?? 'sink.test'}>`;
        this.mode = 'auth';
        this.authStep = (l) => {
          if (cancelled(l)) return;
          const [user = '', digest = ''] = b64(l).split(' ');
          const want = createHmac('md5', creds.pass).update(challenge).digest('hex');
          done(user, user === creds.user && digest === want);
        };
        this.reply(`334 ${Buffer.from(challenge).toString('base64')}`);
        return;
      }
      default: {
        this.reply('504 5.5.4 unrecognized authentication type');
        return;
      }
    }
  }

  private mail(arg: string): void {
    const o = this.sink.opts;
    if (this.helo === '') {
      this.reply('503 5.5.1 send EHLO/HELO first');
      return;
    }
    if (o.requireAuth && this.authUser === undefined) {
      this.reply('530 5.7.0 Authentication required');
      return;
    }
    if (this.tx !== undefined) {
      this.reply('503 5.5.1 nested MAIL command');
      return;
    }
    const m = /^FROM:\s*<([^>]*)>\s*(.*)$/i.exec(arg);
    if (m === null) {
      this.reply('501 5.5.4 syntax: MAIL FROM:<address>');
      return;
    }
    const sender = m[1] ?? '';
    const params = (m[2] ?? '').split(' ').filter((p) => p.length > 0);
    const size = params.find((p) => p.toUpperCase().startsWith('SIZE='));
    if (o.size && size && Number(size.slice(5)) > o.size) {
      this.reply('552 5.3.4 message size exceeds fixed limit');
      return;
    }
    const custom = o.mailReply?.(sender);
    if (custom !== undefined && !custom.startsWith('2')) {
      this.reply(custom);
      return;
    }
    this.tx = {
      helo: this.helo,
      sender,
      mailParams: params,
      recipients: [],
      rcptParams: [],
      data: Buffer.alloc(0),
      tls: this.tls,
      authUser: this.authUser,
      chunked: false,
      size: 0,
    };
    this.reply(custom ?? '250 2.1.0 Ok');
  }

  private rcpt(arg: string): void {
    const o = this.sink.opts;
    if (this.tx === undefined) {
      this.reply('503 5.5.1 need MAIL command');
      return;
    }
    const m = /^TO:\s*<([^>]+)>\s*(.*)$/i.exec(arg);
    if (m === null) {
      this.reply('501 5.5.4 syntax: RCPT TO:<address>');
      return;
    }
    const addr = m[1] ?? '';
    if (o.maxRecipients !== undefined && this.tx.recipients.length >= o.maxRecipients) {
      this.reply('452 4.5.3 Too many recipients');
      return;
    }
    const custom = o.rcptReply?.(addr, this.tx.recipients.length);
    if (custom !== undefined && !custom.startsWith('2')) {
      this.reply(custom);
      return;
    }
    this.tx.recipients.push(addr);
    this.tx.rcptParams.push((m[2] ?? '').split(' ').filter((p) => p.length > 0));
    this.reply(custom ?? '250 2.1.5 Ok');
  }

  private bdat(arg: string): void {
    const m = /^(\d+)(?:\s+(LAST))?\s*$/i.exec(arg);
    if (!this.sink.opts.chunking) {
      this.reply('502 5.5.1 CHUNKING not offered');
      return;
    }
    if (m === null) {
      // Without a valid size we cannot find the end of the chunk: close (RFC 3030 §2).
      this.mode = 'closed';
      this.reply('501 5.5.4 syntax: BDAT size [LAST]', () => this.sock.end());
      return;
    }
    this.bdatLeft = Number(m[1]);
    this.bdatLast = m[2] !== undefined;
    this.mode = 'bdat';
    if (this.bdatLeft === 0) {
      this.mode = 'command';
      this.endBdat();
    }
  }
}
