// The ODMR provider (RFC 2645): its own SMTP listener whose sessions allow only EHLO, AUTH, QUIT
// (and STARTTLS) until AUTH, then ATRN; on an accepted ATRN the listener hands the socket over
// and we deliver the account's held lanes back over it (atrn-delivery.ts).
// Invariants: ATRN only after a successful AUTH against [[odmr.account]]; an account only ever
// collects its own domains; the requested lanes stay locked (HeldLocks) from the 250 until every
// claimed piece has been finished; AUTH is throttled per client address (failure back-off of the
// listener, plus a cap on attempts per minute).
// Fails: listen() rejects like SmtpListener.listen; a turnaround never rejects (see atrn-delivery).

import type net from 'node:net';
import type { OdmrAccount } from '../config/index.js';
import type { Reply, SmtpClient, SmtpTimeouts } from '../smtp/client/index.js';
import type { ServerHooks } from '../smtp/server/hooks.js';
import { type AnySocket, type ServerTlsOptions, SmtpListener } from '../smtp/server/index.js';
import type { Connection } from '../smtp/server/connection.js';
import type { SmtpSession } from '../smtp/server/session.js';
import { type Clock, systemClock } from '../util/clock.js';
import { secretEquals } from '../util/secret-equal.js';
import { type AtrnResult, type ClaimableLanes, deliverHeld } from './atrn-delivery.js';
import type { OdmrLogger } from './etrn.js';
import { HeldLocks } from './locks.js';
import { Turnaround } from './turnaround.js';
import { type AtrnElsewhere, type AtrnRequest, odmrCommands } from './provider-commands.js';
import { type RateGate, RateLimiter } from './rate.js';
import type { AuthThrottleLike } from '../smtp/server/options.js';
import type { ListenSockets } from '../util/listen-sockets.js';

/** How long a new ATRN waits for the account's earlier session to let go of its lanes. */
const TAKEOVER_WAIT_MS = 10_000;

export interface OdmrProviderOptions {
  hostname: string;
  accounts: readonly Pick<OdmrAccount, 'user' | 'password' | 'domains'>[];
  lanes: ClaimableLanes;
  locks?: HeldLocks;
  /** STARTTLS material and policy; absent: no STARTTLS, and only CRAM-MD5 is offered. */
  tls?: ServerTlsOptions;
  clock?: Clock;
  logger?: OdmrLogger;
  idleTimeoutMs?: number;
  /** Deadline of one command line (slow clients); default 5 minutes. */
  commandTimeoutMs?: number;
  maxConnections?: number;
  maxPerIp?: number;
  /** AUTH commands per client address per minute (default 30). */
  authPerMinute?: number;
  /** Counts AUTH commands per client address instead (a cluster counts them over every node). */
  authRate?: RateGate;
  /** AUTH failure throttle instead of the listener's own (a cluster shares it). */
  authThrottle?: AuthThrottleLike;
  /** AUTH failure back-off of the listener (tests shorten it). */
  authFailureDelayMs?: number;
  /** Client-role timeouts after the turnaround (default: RFC 5321 minimums). */
  timeouts?: Partial<SmtpTimeouts>;
  /**
   * ATRN at any node (a cluster): other nodes authenticate as peers (their ATRN may name any
   * ODMR domain of this node and is served here only); requests naming domains homed elsewhere
   * are collected there (`elsewhere`), and `serve` runs the customer's session over those legs,
   * then `local` (the usual turnaround of the lanes served here).
   */
  cluster?: {
    peerSecret(user: string): string | null;
    elsewhere: AtrnElsewhere;
    serve(
      socket: AnySocket,
      pending: Buffer,
      legs: unknown[],
      local: ((greeting: Reply, rest: Buffer) => Promise<AtrnResult>) | undefined,
    ): Promise<AtrnResult>;
  };
  /** Told of every ATRN reply (phase 'request') and of every turnaround's end (phase 'end'). */
  onAtrn?(ev: {
    phase: 'request' | 'end';
    ip: string;
    user?: string;
    domains: string[];
    code: number;
    delivered?: number;
  }): void;
}

export class OdmrProvider {
  readonly listener: SmtpListener;
  readonly locks: HeldLocks;
  /** Finished turnarounds (for tests and logs). */
  readonly results: AtrnResult[] = [];
  private readonly active = new Map<Promise<AtrnResult>, { client?: SmtpClient; socket: AnySocket }>();
  private readonly requests = new WeakMap<SmtpSession, AtrnRequest>();
  private readonly waiters: (() => void)[] = [];
  /** stop() was called: turnarounds send no further message. */
  private stopping = false;

  constructor(private readonly o: OdmrProviderOptions) {
    this.locks = o.locks ?? new HeldLocks();
    const clock = o.clock ?? systemClock;
    const accounts = new Map(o.accounts.map((a) => [a.user, a]));
    const hooks: ServerHooks = {
      newMessageId: () => '0',
      cramSecret: (user) => accounts.get(user)?.password ?? o.cluster?.peerSecret(user) ?? null,
      verifyPassword: (user, password, ctx) => {
        const secret = accounts.get(user)?.password ?? o.cluster?.peerSecret(user) ?? undefined;
        return ctx.client.tls !== undefined && secret !== undefined && secretEquals(secret, password);
      },
      accept: () => Promise.reject(new Error('the ODMR listener takes no mail')),
    };
    const commands = odmrCommands({
      // A peer collects any ODMR domain of this node on behalf of a customer it authenticated.
      domainsOf: (user) =>
        accounts.get(user)?.domains ??
        (o.cluster?.peerSecret(user) != null ? o.accounts.flatMap((a) => a.domains) : undefined),
      heldCount: (d) => o.lanes.heldCount(d),
      locks: this.locks,
      authRate: o.authRate ?? new RateLimiter(o.authPerMinute ?? 30, 60_000, clock),
      requests: this.requests,
      onRequest: (ev) => o.onAtrn?.({ phase: 'request', ...ev }),
      takeOver: (user, domains) => this.takeOver(user, domains),
      ...(o.cluster
        ? { elsewhere: o.cluster.elsewhere, isPeer: (user: string) => o.cluster?.peerSecret(user) != null }
        : {}),
    });
    this.listener = new SmtpListener(
      {
        hostname: o.hostname,
        banner: 'ESMTP logmta ODMR',
        clock,
        commands,
        idleTimeoutMs: o.idleTimeoutMs ?? 300_000,
        ...(o.commandTimeoutMs !== undefined ? { commandTimeoutMs: o.commandTimeoutMs } : {}),
        maxConnections: o.maxConnections ?? 100,
        maxPerIp: o.maxPerIp ?? 10,
        ...(o.logger ? { logger: o.logger } : {}),
        ...(o.authThrottle ? { authThrottle: o.authThrottle } : {}),
        ...(o.tls ? { tls: o.tls } : {}),
        ...(o.authFailureDelayMs !== undefined
          ? {
              authThrottleOptions: {
                baseDelayMs: o.authFailureDelayMs,
                maxDelayMs: o.authFailureDelayMs * 16,
              },
            }
          : {}),
        onHandOver: (socket, pending, conn) => this.turnaround(socket, pending, conn),
      },
      hooks,
    );
  }

  /** With `sockets`, on a socket kept across reloads (as SmtpListener.listen). */
  listen(port: number, host: string, sockets?: ListenSockets): Promise<net.AddressInfo> {
    return this.listener.listen(port, host, sockets);
  }

  /** Turnarounds in progress. */
  get busy(): number {
    return this.active.size;
  }

  /** Resolves when no turnaround is in progress. */
  idle(): Promise<void> {
    if (this.active.size === 0) return Promise.resolve();
    return new Promise((r) => this.waiters.push(r));
  }

  /**
   * Stops listening and winds the reversed sessions down: each finishes the message under way
   * and QUITs (the customer dials in again and gets the rest from the next daemon). A session
   * still on the wire after `graceMs` is cut: what it had not delivered stays held.
   */
  async stop(graceMs = 5_000): Promise<void> {
    this.stopping = true;
    const stopping = this.listener.stop(graceMs);
    const runs = [...this.active.keys()];
    if (runs.length > 0 && graceMs > 0) {
      let cancel: (() => void) | undefined;
      await Promise.race([
        Promise.all(runs),
        new Promise<void>((r) => {
          cancel = (this.o.clock ?? systemClock).setTimer(graceMs, r);
        }),
      ]);
      cancel?.();
    }
    for (const a of this.active.values()) {
      if (a.client) a.client.close();
      else a.socket.destroy();
    }
    await Promise.all([stopping, ...this.active.keys()]);
  }

  /**
   * A new ATRN of `user` finds its lanes locked: when the holders are that same account's
   * earlier sessions (its line dropped and we have not noticed yet: a silent drop is only seen
   * at a reply timeout, minutes later), cut them — what they had not delivered stays held — and
   * wait (at most TAKEOVER_WAIT_MS) until they have let go. Other holders are left alone.
   */
  private async takeOver(user: string, domains: readonly string[]): Promise<void> {
    const owners = new Set<string>();
    for (const d of domains) {
      const o = this.locks.ownerOf(d);
      if (o !== undefined) owners.add(o);
    }
    const sessions = [...owners].map((o) => this.locks.session(o));
    if (sessions.length === 0 || sessions.some((x) => x === undefined || x.user !== user)) return;
    this.o.logger?.info(
      { user, domains },
      'atrn: a new session of the account takes over from an earlier one',
    );
    for (const x of sessions) x!.cut();
    let cancel: (() => void) | undefined;
    await Promise.race([
      Promise.all(sessions.map((x) => x!.done)),
      new Promise<void>((r) => {
        cancel = (this.o.clock ?? systemClock).setTimer(TAKEOVER_WAIT_MS, r);
      }),
    ]);
    cancel?.();
  }

  private turnaround(socket: AnySocket, pending: Buffer, conn: Connection): void {
    // Keep the customer's first bytes (its 220) in the socket until the client role reads them.
    socket.pause();
    const req = this.requests.get(conn.session);
    if (req === undefined) {
      socket.destroy();
      return;
    }
    const entry: { client?: SmtpClient; socket: AnySocket } = { socket };
    const local = (bytes: Buffer, greeting?: Reply): Promise<AtrnResult> =>
      deliverHeld(Turnaround.fromServer(socket, bytes), req.domains, {
        lanes: this.o.lanes,
        name: this.o.hostname,
        ...(this.o.clock ? { clock: this.o.clock } : {}),
        ...(this.o.timeouts ? { timeouts: this.o.timeouts } : {}),
        ...(this.o.logger ? { logger: this.o.logger } : {}),
        ...(greeting ? { greeting } : {}),
        stopping: () => this.stopping,
        onClient: (c) => {
          entry.client = c;
        },
      });
    const cluster = this.o.cluster;
    const served =
      req.legs && cluster
        ? cluster.serve(
            socket,
            pending,
            req.legs,
            req.domains.length > 0 ? (greeting, rest) => local(rest, greeting) : undefined,
          )
        : local(pending);
    const run = served.then((r) => {
      this.o.logger?.info({ user: req.user, domains: req.domains, ...r }, 'odmr turnaround finished');
      return r;
    });
    this.active.set(run, entry);
    const ip = conn.remoteAddress;
    const ended = run.then((r) => {
      this.results.push(r);
      this.o.onAtrn?.({
        phase: 'end',
        ip,
        user: req.user,
        domains: req.domains,
        code: r.error ? 451 : 250,
        delivered: r.messages,
      });
      this.locks.release(req.domains, req.lockOwner);
      this.active.delete(run);
      if (this.active.size === 0) for (const w of this.waiters.splice(0)) w();
    });
    // A newer session of the same account may cut this one (takeOver): it is over once `ended`.
    this.locks.describe(req.lockOwner, {
      user: req.user,
      cut: () => {
        if (entry.client) entry.client.close();
        else entry.socket.destroy();
      },
      done: ended,
    });
  }
}
