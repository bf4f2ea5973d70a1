// The scenario suite's stage: a real `logmta serve` child process (restartable on the same data,
// stopped with SIGTERM or SIGKILL), the customer's mail host as a sink on a fixed loopback port
// that the test brings down and up (refused connections while down, as a switched-off office
// server gives), an ETRN client, an ODMR customer that collects over the reversed socket, and
// queries over the daemon's control socket. Assertions are about what the customer ends up with.
// Invariant: everything a scenario starts is stopped by `Stage.close()` (children SIGKILLed,
// sinks closed, the temp dir removed).
// Fails: rejects with the daemon's stderr when it does not start; waits reject after a timeout
// naming what they waited for.

import { rmSync } from 'node:fs';
import net from 'node:net';
import { afterEach } from 'node:test';
import { join } from 'node:path';
import { AdminClient } from '../../src/cli/client.js';
import { cramMd5Response } from '../../src/smtp/client/auth.js';
import { makeTempDir, SmtpChat, type SpawnedDaemon, spawnDaemon, waitFor } from '../support/daemon.js';
import { type SinkOptions, type SinkTransaction, SmtpSink } from '../support/sink.js';
import { sendMail } from '../support/inject.js';
import { stablePort } from '../support/ports.js';

/** A loopback port nothing listens on now (the customer's host, down) that no client can take. */
export const reservePort = (): Promise<number> => stablePort();

/** The customer's mail host: down (connection refused) until up(), on the same port each time. */
export class CustomerHost {
  private sink: SmtpSink | undefined;
  private earlier: SinkTransaction[] = [];
  private earlierCommands: string[] = [];
  /** Options of the next up() (and of the running sink: changes apply at once). */
  opts: SinkOptions = {};

  private constructor(readonly port: number) {}

  static async create(): Promise<CustomerHost> {
    return new CustomerHost(await reservePort());
  }

  get isUp(): boolean {
    return this.sink !== undefined;
  }

  /** Starts answering; the sink reads `opts` live, so changing them later applies at once. */
  async up(opts: SinkOptions = this.opts): Promise<void> {
    if (this.sink) return;
    this.opts = opts;
    opts.port = this.port;
    this.sink = await SmtpSink.start(opts);
  }

  async down(): Promise<void> {
    const s = this.sink;
    if (!s) return;
    this.sink = undefined;
    this.earlier = this.earlier.concat(s.transactions);
    this.earlierCommands = this.earlierCommands.concat(s.commands);
    await s.close();
  }

  /** Every transaction the host accepted, over all the times it was up. */
  get received(): SinkTransaction[] {
    return this.earlier.concat(this.sink?.transactions ?? []);
  }

  /** Every command line the host was sent, over all the times it was up (also refused ones). */
  commands(): string[] {
    return this.earlierCommands.concat(this.sink?.commands ?? []);
  }

  /** Recipients received, one entry per delivery (duplicates show twice). */
  recipients(): string[] {
    return this.received.flatMap((t) => t.recipients);
  }

  async waitFor(n: number, what = `${n} deliveries`, timeoutMs = 15_000): Promise<void> {
    await waitFor(() => this.recipients().length >= n, what, timeoutMs);
  }
}

/**
 * The stages and customer hosts of one test file, torn down after each test (call once at the
 * top of the file).
 */
export function scenes(): { stage(opts: StageOptions): Promise<Stage>; customer(): Promise<CustomerHost> } {
  const stages: Stage[] = [];
  const hosts: CustomerHost[] = [];
  afterEach(async () => {
    for (const s of stages.splice(0)) await s.close();
    for (const h of hosts.splice(0)) await h.down();
  });
  return {
    async stage(opts) {
      const s = await Stage.start(opts);
      stages.push(s);
      return s;
    },
    async customer() {
      const h = await CustomerHost.create();
      hosts.push(h);
      return h;
    },
  };
}

export interface StageOptions {
  /** TOML for the daemon (test defaults fill the rest: loopback ports, data in the stage dir). */
  toml: string;
  files?: Record<string, string>;
}

/** A `logmta serve` child on a data dir that outlives it: restart, SIGTERM, SIGKILL. */
export class Stage {
  daemon!: SpawnedDaemon;
  readonly dir = makeTempDir('logmta-scenario-');
  private readonly all: SpawnedDaemon[] = [];
  private readonly hosts: CustomerHost[] = [];

  private constructor(private opts: StageOptions) {}

  static async start(opts: StageOptions): Promise<Stage> {
    const s = new Stage(opts);
    await s.boot();
    return s;
  }

  /** Starts the daemon (again) on the stage's data, after kill(). */
  async boot(): Promise<void> {
    this.daemon = await spawnDaemon({
      toml: this.opts.toml,
      dir: this.dir,
      ...(this.opts.files ? { files: this.opts.files } : {}),
    });
    this.all.push(this.daemon);
  }

  /** The TOML the next boot() (or restart) starts the daemon with: an upgrade's new settings. */
  reconfigure(toml: string): void {
    this.opts = { ...this.opts, toml };
  }

  /** Makes a daemon the test started itself on the stage's data the stage's own (stopped by close()). */
  adopt(d: SpawnedDaemon): void {
    this.daemon = d;
    this.all.push(d);
  }

  get port(): number {
    return this.daemon.port;
  }

  get dataDir(): string {
    return join(this.dir, 'data');
  }

  /** The ODMR listener's port, from the daemon's start line. */
  get odmrPort(): number {
    const m = /ODMR \(ATRN\) on \S+?:(\d+)/.exec(this.daemon.stderr());
    if (!m) throw new Error(`no ODMR listener in:\n${this.daemon.stderr()}`);
    return Number(m[1]);
  }

  async host(): Promise<CustomerHost> {
    const h = await CustomerHost.create();
    this.hosts.push(h);
    return h;
  }

  /** Stops the daemon (SIGTERM, or SIGKILL: no chance to do anything) and starts it again on the same data. */
  async restart(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    await this.kill(signal);
    await this.boot();
  }

  async kill(signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    this.daemon.kill(signal);
    const t = setTimeout(() => this.daemon.kill('SIGKILL'), 15_000);
    await this.daemon.exited;
    clearTimeout(t);
  }

  /** Runs one request on the daemon's control socket. */
  async admin<T>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    const c = await AdminClient.connect(join(this.dataDir, 'admin.sock'));
    try {
      return await c.request<T>(op, args);
    } finally {
      c.close();
    }
  }

  /** Live pieces per lane (`status`), e.g. lanes['held-branch.example']. */
  async lanes(): Promise<Record<string, number>> {
    return (await this.admin<{ lanes: Record<string, number> }>('status')).lanes;
  }

  async held(domain: string): Promise<number> {
    return (await this.lanes())[`held-${domain}`] ?? 0;
  }

  /** Waits (polling the control socket) until `cond` holds for the lanes. */
  async waitLanes(
    cond: (lanes: Record<string, number>) => boolean,
    what: string,
    timeoutMs = 15_000,
  ): Promise<void> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const l = await this.lanes();
      if (cond(l)) return;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}; lanes ${JSON.stringify(l)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async waitHeld(domain: string, n: number, timeoutMs = 15_000): Promise<void> {
    await this.waitLanes((l) => (l[`held-${domain}`] ?? 0) === n, `${n} held for ${domain}`, timeoutMs);
  }

  /** Sends one message per recipient (each acknowledged with 250 before the next). */
  async send(recipients: readonly string[], from = 'sender@sender.test'): Promise<void> {
    for (const to of recipients) await sendMail(this.port, { from, to: [to], subject: `to ${to}` });
  }

  /** `EHLO` then `ETRN arg` on a fresh connection; the reply's first line. */
  async etrn(arg: string): Promise<string> {
    const c = await SmtpChat.connect(this.port);
    try {
      await c.read(1);
      const r = await c.ask(`EHLO customer.test\r\nETRN ${arg}\r\n`, 2);
      c.send('QUIT\r\n');
      return r[1] ?? '';
    } finally {
      c.close();
    }
  }

  /** The daemon's JSON log lines so far (this run), parsed. */
  logLines(): Array<Record<string, unknown>> {
    return this.daemon
      .stdout()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  /** Waits until this run of the daemon has logged `msg` at least `n` times. */
  async waitLog(msg: string, n = 1, timeoutMs = 15_000): Promise<void> {
    await waitFor(
      () => this.logLines().filter((l) => l.msg === msg).length >= n,
      `${n} "${msg}" log line(s)`,
      timeoutMs,
    );
  }

  async close(): Promise<void> {
    for (const d of this.all) d.kill('SIGKILL');
    await Promise.all(this.all.map((d) => d.exited));
    for (const h of this.hosts) await h.down();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface AtrnSession {
  /** The ATRN reply's first line (or the 421, or the greeting that was not 220, that ended the session before ATRN). */
  reply: string;
  /** Transactions the customer accepted in this session. */
  received: SinkTransaction[];
  /** Resolves when the session has ended (provider's QUIT or the customer's drop). */
  done: Promise<void>;
  /** Whether the session has ended. */
  readonly ended: boolean;
}

/** Reads one complete SMTP reply (all its lines) from `socket`; `buf` keeps what follows it. */
function readReply(socket: net.Socket, st: { buf: Buffer }): Promise<string> {
  return new Promise((resolve, reject) => {
    const tryParse = (): boolean => {
      let from = 0;
      for (;;) {
        const nl = st.buf.indexOf(10, from);
        if (nl < 0) return false;
        const line = st.buf.subarray(from, nl).toString('latin1');
        from = nl + 1;
        if (/^\d{3} /.test(line) || /^\d{3}\r?$/.test(line)) {
          const text = st.buf.subarray(0, from).toString('latin1');
          st.buf = st.buf.subarray(from);
          resolve(text.trimEnd());
          return true;
        }
      }
    };
    if (tryParse()) return;
    const onData = (d: Buffer) => {
      st.buf = Buffer.concat([st.buf, d]);
      if (tryParse()) cleanup();
    };
    const onClose = () => {
      cleanup();
      reject(new Error('the provider closed the connection'));
    };
    const cleanup = () => {
      socket.off('data', onData);
      socket.off('close', onClose);
    };
    socket.on('data', onData);
    socket.once('close', onClose);
  });
}

/**
 * An ODMR customer: connects to the provider, EHLO, AUTH CRAM-MD5, `ATRN domains` and, on 250,
 * becomes the SMTP server on the same socket (a sink session) until the provider QUITs.
 * `dropAfter`: the customer's line drops (the socket is closed) when the provider starts the
 * message after that many. `stallAfter`: the line goes silent instead (nothing more is read or
 * answered, the socket stays open), as when a customer's link dies without a FIN.
 */
export async function atrn(
  port: number,
  user: string,
  password: string,
  domains: readonly string[],
  opts: SinkOptions & { dropAfter?: number; stallAfter?: number } = {},
): Promise<AtrnSession> {
  const socket = net.connect({ port, host: '127.0.0.1' });
  socket.on('error', () => {});
  await new Promise<void>((r, j) => {
    socket.once('connect', () => r());
    socket.once('error', j);
  });
  const st = { buf: Buffer.alloc(0) };
  const ask = async (line: string | undefined): Promise<string> => {
    if (line !== undefined) socket.write(`${line}\r\n`);
    return readReply(socket, st);
  };
  const over = (reply: string): AtrnSession => {
    socket.destroy();
    return { reply, received: [], done: Promise.resolve(), ended: true };
  };
  // A provider that is stopping (or reloading) ends a session before ATRN with 421, as any
  // SMTP server does; the customer dials in again, as fetchmail does at its next poll.
  const greeting = await ask(undefined);
  if (!greeting.startsWith('220')) return over(greeting);
  const ehlo = await ask('EHLO customer.test');
  if (ehlo.startsWith('421')) return over(ehlo);
  const challenge = await ask('AUTH CRAM-MD5');
  if (challenge.startsWith('421')) return over(challenge);
  const auth = await ask(cramMd5Response(user, password, challenge.slice(4)));
  if (auth.startsWith('421')) return over(auth);
  if (!auth.startsWith('235')) throw new Error(`AUTH failed: ${auth}`);
  const reply = await ask(`ATRN${domains.length > 0 ? ` ${domains.join(',')}` : ''}`);
  if (!reply.startsWith('250')) return over(reply);
  // Roles reversed: we are the SMTP server on this socket now.
  const { dropAfter: drop, stallAfter: stall, ...sinkOpts } = opts;
  let sink: SmtpSink | undefined;
  const o: SinkOptions = { ...sinkOpts };
  if (drop !== undefined || stall !== undefined)
    o.mailReply = (sender) => {
      const n = sink?.transactions.length ?? 0;
      if (drop !== undefined && n >= drop) {
        socket.destroy();
        return '421 4.4.2 line dropped';
      }
      if (stall !== undefined && n >= stall) {
        // Whatever comes after this chunk is never looked at, nor answered.
        socket.removeAllListeners('data');
        socket.on('data', () => {});
      }
      return sinkOpts.mailReply?.(sender);
    };
  sink = await SmtpSink.start(o); // its own listener is not used
  const s = sink;
  let ended = false;
  const done = new Promise<void>((r) => socket.once('close', () => r())).finally(() => {
    ended = true;
    return s.close();
  });
  s.serve(socket, st.buf);
  return {
    reply,
    received: s.transactions,
    done,
    get ended() {
      return ended;
    },
  };
}
