// The SMTP listener: owns a net.Server and its connections. Enforces per-server and per-IP
// connection limits and the per-client connection rate (421 4.7.0 then close), runs one coarse
// sweep timer for idle timeouts, lingering closes and the AUTH throttle (no per-command timers),
// and stops gracefully: stop accepting, let in-flight transactions finish within a grace period,
// then destroy what is left.
// Invariant: every accepted socket is either a tracked Connection or has been refused with 421;
// connection counts are decremented exactly once (Connection.released). A socket whose
// connection rate is being asked of a cluster's Redis holds its slot (per server and per IP)
// until the answer, and is then admitted or refused like any other.
// Fails: listen() rejects with the server's error (e.g. EADDRINUSE).

import * as net from 'node:net';
import type * as tls from 'node:tls';
import { type Clock, systemClock } from '../../util/clock.js';
import { AuthThrottle, type AuthThrottleOptions } from './auth-throttle.js';
import type { CommandTable } from './commands/table.js';
import { type AnySocket, Connection, type ConnectionOwner } from './connection.js';
import type { ServerHooks, ServerLogger } from './hooks.js';
import type { ListenSocket, ListenSockets } from '../../util/listen-sockets.js';
import type { SessionOptions } from './options.js';
import { shownIp } from './client-rates.js';
import { type ServerTlsOptions, serverSecureContext } from './tls-policy.js';

export interface ListenerOptions extends SessionOptions {
  /** TLS key, certificate (PEM) and policy for STARTTLS (tls-policy.ts); absent: no STARTTLS. */
  tls?: ServerTlsOptions;
  /** TLS from the first byte instead of STARTTLS (RFC 8314 submissions, port 465); needs `tls`. */
  implicitTls?: boolean;
  /** Simultaneous connections on this listener (default 1000). */
  maxConnections?: number;
  /** Simultaneous connections per client IP (default 50). */
  maxPerIp?: number;
  /** Period of the timeout/linger sweep (default 1 s, shorter for limits under 4 s): the precision of every timeout. */
  sweepIntervalMs?: number;
  /** How long a connection we closed may linger before it is destroyed (default 10 s). */
  lingerMs?: number;
  authThrottleOptions?: AuthThrottleOptions;
  /** Custom command table (e.g. an ODMR provider). */
  commands?: CommandTable;
  /** Socket taken over by another role (ATRN turnaround). */
  onHandOver?: (socket: AnySocket, pending: Buffer, conn: Connection) => void;
}

/** After the 421 that ends the grace of a stop, how long a client has to close before we do. */
const CUT_LINGER_MS = 200;

export class SmtpListener implements ConnectionOwner {
  readonly server: net.Server;
  readonly connections = new Set<Connection>();
  readonly hooks: ServerHooks;
  readonly sessionOptions: SessionOptions;
  readonly commands: CommandTable | undefined;
  readonly secureContext: tls.SecureContext | undefined;
  readonly implicitTls: boolean;
  readonly logger: ServerLogger | undefined;
  readonly throttle: AuthThrottle;
  private readonly perIp = new Map<string, number>();
  private readonly clock: Clock;
  private readonly maxConnections: number;
  private readonly maxPerIp: number;
  private readonly sweepIntervalMs: number;
  private readonly lingerMs: number;
  private cancelSweep: (() => void) | null = null;
  /** The socket kept across reloads this listener is attached to (listen with `sockets`). */
  private shared: ListenSocket | null = null;
  private stopping = false;
  /** Sockets waiting for a cluster's answer about their connection rate. */
  private pending = 0;
  private onEmpty: (() => void) | null = null;

  constructor(
    private readonly opts: ListenerOptions,
    hooks: ServerHooks,
  ) {
    this.clock = opts.clock ?? systemClock;
    this.hooks = hooks;
    this.logger = opts.logger;
    this.commands = opts.commands;
    this.secureContext = opts.tls ? serverSecureContext(opts.tls) : undefined;
    this.implicitTls = opts.implicitTls ?? false;
    if (this.implicitTls && !this.secureContext) throw new TypeError('implicitTls needs tls (key and cert)');
    this.throttle = new AuthThrottle(this.clock, opts.authThrottleOptions);
    this.sessionOptions = { ...opts, clock: this.clock, authThrottle: opts.authThrottle ?? this.throttle };
    this.maxConnections = opts.maxConnections ?? 1000;
    this.maxPerIp = opts.maxPerIp ?? 50;
    // Once a second, or 4 times per shortest limit when a limit is under 4 s (tests, tight setups).
    const shortest = Math.min(
      opts.idleTimeoutMs ?? 300_000,
      opts.commandTimeoutMs ?? 300_000,
      opts.dataLineTimeoutMs ?? 300_000,
    );
    this.sweepIntervalMs = opts.sweepIntervalMs ?? Math.min(1000, Math.max(50, Math.floor(shortest / 4)));
    this.lingerMs = opts.lingerMs ?? 10_000;
    // allowHalfOpen: a client that half-closes after its last command still gets every reply
    // (the session closes once it has answered everything; Connection, SmtpSession.onEnd).
    this.server = net.createServer({ noDelay: true, allowHalfOpen: true }, (s) => this.accept(s));
  }

  now(): number {
    return this.clock.now();
  }

  /**
   * Start listening; resolves with the bound address (use port 0 for an ephemeral port). With
   * `sockets`, on a socket of that set (kept when this listener stops, for its successor).
   */
  async listen(port: number, host: string, sockets?: ListenSockets): Promise<net.AddressInfo> {
    if (sockets) {
      const shared = await sockets.open(host, port);
      this.shared = shared;
      shared.attach((s) => this.accept(s));
      this.scheduleSweep();
      return shared.address;
    }
    return new Promise((resolve, reject) => {
      const onError = (e: Error): void => reject(e);
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.off('error', onError);
        this.scheduleSweep();
        resolve(this.server.address() as net.AddressInfo);
      });
    });
  }

  /**
   * Stop accepting; let sessions finish their transaction for up to graceMs; destroy the rest.
   * A shared socket is left open, its new connections waiting for the next listener.
   */
  stop(graceMs = 10_000): Promise<void> {
    this.stopping = true;
    if (this.shared) this.shared.detach();
    else this.server.close();
    for (const c of this.connections) c.session.shutdown();
    return new Promise((resolve) => {
      let cancel: () => void = () => {};
      const done = (): void => {
        cancel();
        this.cancelSweep?.();
        this.cancelSweep = null;
        this.onEmpty = null;
        resolve();
      };
      if (this.connections.size === 0) return done();
      this.onEmpty = done;
      // The grace is over: a 421 to each session still open, and a moment for it to leave before
      // its socket is destroyed.
      cancel = this.clock.setTimer(graceMs, () => {
        for (const c of this.connections) c.session.cutOff();
        cancel = this.clock.setTimer(CUT_LINGER_MS, () => {
          for (const c of this.connections) c.socket.destroy();
          // The grace is a bound: the stop is over even if a socket's close is still to come.
          done();
        });
      });
    });
  }

  handOver(conn: Connection, socket: AnySocket, pending: Buffer): boolean {
    if (!this.opts.onHandOver) return false;
    this.opts.onHandOver(socket, pending, conn);
    return true;
  }

  released(conn: Connection): void {
    if (!this.connections.delete(conn)) return;
    this.hold(conn.remoteAddress, -1);
    if (this.connections.size === 0) this.onEmpty?.();
  }

  private accept(socket: net.Socket): void {
    const ip = socket.remoteAddress ?? '0.0.0.0';
    const refusal = this.refusal(ip);
    if (refusal !== null) {
      this.refuse(socket, ip, refusal);
      return;
    }
    const rated = this.opts.clientRates?.allow('connection', ip) ?? true;
    if (rated === true) this.admit(socket, ip);
    else if (rated === false) this.refuse(socket, ip, this.rateRefusal(ip));
    else this.admitLater(socket, ip, rated);
  }

  /**
   * A cluster counts the rate in Redis (an answer within redis_timeout): the slot is held
   * meanwhile, so that the limits above cannot be passed by connections arriving in that time.
   */
  private admitLater(socket: net.Socket, ip: string, rated: Promise<boolean>): void {
    this.pending++;
    this.hold(ip, 1);
    socket.on('error', () => {});
    void rated.then((ok) => {
      this.pending--;
      this.hold(ip, -1);
      if (socket.destroyed) return;
      if (this.stopping) this.refuse(socket, ip, this.shutdownRefusal());
      else if (!ok) this.refuse(socket, ip, this.rateRefusal(ip));
      else this.admit(socket, ip);
    });
  }

  /** The 421 for a new connection from `ip` before its rate is counted, or null. */
  private refusal(ip: string): string | null {
    const host = this.sessionOptions.hostname;
    if (this.stopping) return this.shutdownRefusal();
    if (this.connections.size + this.pending >= this.maxConnections)
      return `421 4.7.0 ${host} Too many connections\r\n`;
    if ((this.perIp.get(ip) ?? 0) >= this.maxPerIp)
      return `421 4.7.0 ${host} Too many connections from ${ip}\r\n`;
    return null;
  }

  private shutdownRefusal(): string {
    return `421 4.3.2 ${this.sessionOptions.hostname} Service shutting down\r\n`;
  }

  private rateRefusal(ip: string): string {
    return `421 4.7.0 ${this.sessionOptions.hostname} Error: too many connections from ${shownIp(ip)}\r\n`;
  }

  private refuse(socket: net.Socket, ip: string, refusal: string): void {
    socket.on('error', () => {});
    socket.setTimeout(this.lingerMs, () => socket.destroy());
    socket.end(refusal);
    this.logger?.info({ ip, reply: refusal.trimEnd() }, 'smtp connection refused');
  }

  private admit(socket: net.Socket, ip: string): void {
    this.hold(ip, 1);
    const conn = new Connection(socket, this);
    this.connections.add(conn);
  }

  /** Adds `n` to the connections counted for `ip`. */
  private hold(ip: string, n: number): void {
    const m = (this.perIp.get(ip) ?? 0) + n;
    if (m <= 0) this.perIp.delete(ip);
    else this.perIp.set(ip, m);
  }

  private scheduleSweep(): void {
    this.cancelSweep = this.clock.setTimer(this.sweepIntervalMs, () => {
      this.sweep();
      if (this.cancelSweep !== null) this.scheduleSweep();
    });
  }

  /** One pass over all connections: idle timeouts and lingering closes. */
  sweep(): void {
    const now = this.clock.now();
    for (const c of this.connections) {
      if (c.closingSince !== 0 && now - c.closingSince > this.lingerMs) c.socket.destroy();
      else c.session.checkIdle(now);
    }
    this.throttle.sweep();
  }
}
