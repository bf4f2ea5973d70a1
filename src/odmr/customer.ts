// logmta as an ODMR customer (RFC 2645 §4): connect to the provider, EHLO, AUTH CRAM-MD5, ATRN,
// and on 250 become the SMTP server on the same socket — greet with 220 and run an ordinary
// server session (the daemon's hooks), so collected mail enters our queue with the usual rule:
// 250 after the final dot only once it is durable. The session ends when the provider QUITs.
// Invariants: the CRAM-MD5 secret never crosses the wire; no mail is accepted before the
// provider's 250 to ATRN; a provider that speaks before our 220 is a protocol error.
// Fails: collect() rejects with an MtaError for connection, authentication and ATRN refusals
// (code ODMR_*, with the provider's reply); 453 (no mail) is a normal result, not an error.

import net from 'node:net';
import { MtaError } from '../errors.js';
import { cramMd5Response } from '../smtp/client/auth.js';
import { parseEhlo } from '../smtp/client/extensions.js';
import { type Reply, ReplyParser } from '../smtp/client/reply.js';
import { describeReply } from '../smtp/protocol/reply.js';
import type { ServerHooks, ServerLogger } from '../smtp/server/hooks.js';
import { type AnySocket, Connection } from '../smtp/server/connection.js';
import type { ConnectionOwner } from '../smtp/server/connection.js';
import { type CommandTable, defaultCommands } from '../smtp/server/commands/table.js';
import type { SessionOptions } from '../smtp/server/options.js';
import { type Clock, systemClock } from '../util/clock.js';

export interface CustomerOptions {
  host: string;
  port: number;
  user: string;
  password: string;
  /** Domains to ask for; undefined or empty = a bare ATRN (every domain of the account). */
  domains?: readonly string[];
  /** Server-role session options (hostname, limits); hostname is also our EHLO name. */
  session: SessionOptions;
  /** The hooks that take the mail (the daemon's: policy and queue). */
  hooks: ServerHooks;
  clock?: Clock;
  logger?: ServerLogger;
  /** Bound on each step before the turnaround (default 60 s). */
  timeoutMs?: number;
}

export interface CollectResult {
  /** 'received': the turnaround happened; 'no-mail': the provider answered 453. */
  status: 'received' | 'no-mail';
  /** Messages accepted (durable) from the provider. */
  messages: number;
  /**
   * 'received' only: whether the provider ended the session with QUIT. False when the
   * connection was lost before (a line that dropped, a provider that died): what was not
   * accepted stays held at the provider for the next poll.
   */
  complete?: boolean;
}

/** One ODMR poll: resolves when the provider has ended the reversed session. */
export async function collect(o: CustomerOptions): Promise<CollectResult> {
  const clock = o.clock ?? systemClock;
  const ms = o.timeoutMs ?? 60_000;
  const socket = await open(o.host, o.port, ms, clock);
  const io = new LineIo(socket, clock, ms);
  try {
    const greet = await io.read('greeting');
    if (greet.code !== 220) throw refusal('ODMR_GREETING', 'greeting', greet);
    const ehlo = await io.command(`EHLO ${o.session.hostname}`, 'EHLO');
    if (ehlo.code !== 250) throw refusal('ODMR_EHLO', 'EHLO', ehlo);
    const ext = parseEhlo(ehlo);
    if (!ext.auth.includes('CRAM-MD5')) {
      throw new MtaError('ODMR_AUTH', 'transient', `${o.host} does not offer AUTH CRAM-MD5`, {
        smtp: { code: 454, enhanced: '4.7.0' },
      });
    }
    let r = await io.command('AUTH CRAM-MD5', 'AUTH');
    if (r.code === 334) r = await io.command(cramMd5Response(o.user, o.password, r.lines[0] ?? ''), 'AUTH');
    if (r.code !== 235) throw refusal('ODMR_AUTH', 'AUTH', r);
    const list = o.domains && o.domains.length > 0 ? ` ${o.domains.join(',')}` : '';
    r = await io.command(`ATRN${list}`, 'ATRN');
    if (r.code === 453) {
      await io.command('QUIT', 'QUIT').catch(() => undefined);
      socket.end();
      return { status: 'no-mail', messages: 0 };
    }
    if (r.code !== 250) throw refusal('ODMR_ATRN', 'ATRN', r);
  } catch (e) {
    io.stop();
    socket.destroy();
    throw e;
  }
  // The turnaround: from here on this socket is an SMTP server connection of ours.
  if (!io.stop()) {
    socket.destroy();
    throw new MtaError('ODMR_PROTOCOL', 'transient', `${o.host} sent data before our greeting`);
  }
  const { messages, quit } = await serve(socket, o, clock);
  return { status: 'received', messages, complete: quit };
}

function refusal(code: string, what: string, r: Reply): MtaError {
  const permanent = r.code >= 500;
  return new MtaError(code, permanent ? 'permanent' : 'transient', `${what} refused: ${describeReply(r)}`, {
    smtp: { code: r.code, enhanced: r.enhanced ?? (permanent ? '5.0.0' : '4.0.0') },
  });
}

function open(host: string, port: number, ms: number, clock: Clock): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port });
    const cancel = clock.setTimer(ms, () => {
      s.destroy();
      reject(new MtaError('ODMR_CONNECT', 'transient', `connect to ${host}[${port}]: timed out`));
    });
    s.once('error', (e) => {
      cancel();
      reject(
        new MtaError('ODMR_CONNECT', 'transient', `connect to ${host}[${port}]: ${e.message}`, { cause: e }),
      );
    });
    s.once('connect', () => {
      cancel();
      s.removeAllListeners('error');
      resolve(s);
    });
  });
}

/** Reply reading for the few commands before the turnaround; keeps bytes past the last reply. */
class LineIo {
  private readonly parser = new ReplyParser();
  private readonly replies: Reply[] = [];
  private waiter: { resolve(r: Reply): void; reject(e: Error): void } | undefined;
  private failure: Error | undefined;
  private stopped = false;

  constructor(
    private readonly socket: net.Socket,
    private readonly clock: Clock,
    private readonly ms: number,
  ) {
    socket.on('data', this.onData);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
  }

  async command(line: string, what: string): Promise<Reply> {
    this.socket.write(`${line}\r\n`);
    return this.read(what);
  }

  read(what: string): Promise<Reply> {
    const r = this.replies.shift();
    if (r) return Promise.resolve(r);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const cancel = this.clock.setTimer(this.ms, () => {
        this.waiter = undefined;
        reject(new MtaError('ODMR_TIMEOUT', 'transient', `timeout waiting for the ${what} reply`));
      });
      this.waiter = {
        resolve: (x) => {
          cancel();
          resolve(x);
        },
        reject: (e) => {
          cancel();
          reject(e);
        },
      };
    });
  }

  /**
   * Detach from the socket (paused, so nothing is lost before the server role reads). True when
   * the provider sent nothing beyond the replies we read — it may not speak before our 220.
   */
  stop(): boolean {
    this.stopped = true;
    this.socket.off('data', this.onData);
    this.socket.off('error', this.onError);
    this.socket.off('close', this.onClose);
    this.socket.pause();
    return this.replies.length === 0 && !this.parser.pending;
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.stopped) return;
    // The provider may only send replies before our 220: anything else fails the session.
    let got: Reply[];
    try {
      got = this.parser.feed(chunk);
    } catch (e) {
      this.fail(e instanceof Error ? e : new Error(String(e)));
      return;
    }
    for (const r of got) this.replies.push(r);
    const w = this.waiter;
    if (w && this.replies.length > 0) {
      this.waiter = undefined;
      w.resolve(this.replies.shift()!);
    }
  };

  private readonly onError = (e: Error): void => this.fail(e);
  private readonly onClose = (): void =>
    this.fail(new MtaError('ODMR_CLOSED', 'transient', 'provider closed the connection'));

  private fail(e: Error): void {
    this.failure ??= e;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(e);
  }
}

/** Runs our SMTP server role on the socket until the provider QUITs or the socket closes. */
function serve(
  socket: net.Socket,
  o: CustomerOptions,
  clock: Clock,
): Promise<{ messages: number; quit: boolean }> {
  let messages = 0;
  let quit = false;
  const hooks: ServerHooks = {
    ...o.hooks,
    accept: async (m, ctx) => {
      const r = await o.hooks.accept(m, ctx);
      messages++;
      return r;
    },
  };
  return new Promise((resolve) => {
    let cancelSweep: (() => void) | undefined;
    const owner: ConnectionOwner = {
      sessionOptions: { ...o.session, clock, odmrCustomer: true },
      hooks,
      commands: withQuitSeen(hooks, () => {
        quit = true;
      }),
      secureContext: undefined,
      implicitTls: false,
      logger: o.logger,
      now: () => clock.now(),
      released: () => {
        cancelSweep?.();
        resolve({ messages, quit });
      },
      handOver: (_c: Connection, s: AnySocket) => {
        s.destroy();
        return true;
      },
    };
    const conn = new Connection(socket, owner);
    socket.resume();
    // Idle timeout of the server role (a listener's sweep does this for ordinary connections).
    const sweep = (): void => {
      cancelSweep = clock.setTimer(1_000, () => {
        conn.session.checkIdle(clock.now());
        if (conn.closingSince !== 0 && clock.now() - conn.closingSince > 10_000) conn.socket.destroy();
        sweep();
      });
    };
    sweep();
  });
}

/** The default commands, with QUIT telling `seen` first: the provider ended the session itself. */
function withQuitSeen(hooks: ServerHooks, seen: () => void): CommandTable {
  const table = defaultCommands(hooks);
  const quit = table.verbs.get('QUIT');
  if (!quit) return table;
  const verbs = new Map(table.verbs);
  verbs.set('QUIT', {
    ...quit,
    handler: (s, args) => {
      seen();
      return quit.handler(s, args);
    },
  });
  return { ...table, verbs };
}
