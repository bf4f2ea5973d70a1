// Outbound connections: reuse per destination, a concurrency limit per destination and a
// global one, and a dead-host cache so that an unreachable host costs one connection attempt
// per interval rather than one per queued message. Knows nothing of the queue.
// Flushes a customer asked for (ETRN, a successful probe) acquire with `priority`: a freed slot
// of their destination goes to them first, handed over directly so that no other acquirer slips
// in; and with `reachableSince`: the host proved reachable then, so dead-host marks older than
// that are ignored (a failure during the flush is marked again and stops the rest of it).
// Against tarpits (a host that accepts and never greets): connections to one host:port are
// limited across all destinations (`perHost`, counting connecting, leased and idle ones); attempts
// for destinations not known to work may take at most 3/4 of the global slots, so destinations
// that are making progress keep the rest; and an acquirer waiting for either gives its global
// slot back while it waits. The greeting has its own timeout (client options). An MX
// destination tries at most `addressLimit` addresses per attempt (mx.ts capAddresses).
// Size (over 400 lines): the limits, the dead-host cache and the priority hand-over share one slot
// accounting; split, they would need each other's internals.
import { MtaError } from '../errors.js';
import { SmtpClient } from '../smtp/client/index.js';
import type { SmtpClientOptions } from '../smtp/client/options.js';
import type { Clock } from '../util/clock.js';
import { capAddresses, type DaneState, type MxCandidate } from './mx.js';
import { configuredLoop, greetsAs, type IsSelf, loopsBack, type SelfCheck } from './self.js';

export interface PoolOptions {
  clientOptions: SmtpClientOptions;
  perDestination: number;
  global: number;
  /** Open connections (connecting, leased or idle) to one host:port, over all destinations;
   *  default no limit of its own. */
  perHost?: number;
  /** How long a host that refused or timed out a connection is skipped. */
  deadHostMs: number;
  /** Idle connections are closed after this long. */
  idleMs: number;
  /**
   * A connection older than this is closed when its message is done instead of being kept, so
   * that mail that fell back to a backup MX goes back to the best one once it is up again (and a
   * moved MX is noticed) even while traffic never lets the connection idle out. Default no limit.
   */
  reuseMs?: number;
  clock: Clock;
  /**
   * A limit on new connections per destination beyond this node (a cluster's shared limit):
   * a release function for the slot, or undefined when none is free right now.
   */
  gate?: { acquire(key: string): Promise<(() => void) | undefined> };
  /** How long a new connection waits for the gate before its messages are deferred (default 10 s). */
  gateWaitMs?: number;
  /** Whether host:port is one of this MTA's listeners (self.ts), asked at connect time. */
  isSelf?: IsSelf;
}

interface Idle {
  client: SmtpClient;
  host: string;
  name: string | undefined;
  cancel: () => void;
}

interface Dest {
  active: number;
  idle: Idle[];
  /** Acquirers waiting for a slot; called with true when a slot was handed over to them. */
  waiters: Array<(owned: boolean) => void>;
  /** Priority acquirers (flushes) waiting: served before `waiters`, slot handed over. */
  priority: Array<(owned: boolean) => void>;
  /** Connection attempts in progress. */
  connecting: number;
  /** The last connection attempt succeeded: others may connect in parallel. */
  healthy: boolean;
  /** Acquirers waiting for the outcome of a first connection attempt. */
  probeWaiters: Array<() => void>;
}

export interface AcquireOptions {
  /** Served before ordinary acquirers of the same destination (a flush a customer asked for). */
  priority?: boolean;
  /** The destination proved reachable at this time: dead-host marks older than it are ignored. */
  reachableSince?: number;
  /** A new connection, not an idle one (the idle one just failed: the peer had closed it). */
  fresh?: boolean;
  /**
   * How a candidate that is this MTA is told and skipped (self.ts SelfCheck): by its greeting
   * naming our EHLO name (MX hosts: it and the candidates after it are no next hop, RFC 5321
   * §5.1), and for configured hosts also by an address of our own listeners. Default none.
   */
  selfCheck?: SelfCheck;
  /**
   * MX candidates: at most this many addresses are tried (delivery.mx_address_limit), so a
   * domain of many tarpits costs one attempt a bounded wait; when the cut leaves addresses out
   * and none of the tried ones takes the mail, the deferral says so.
   */
  addressLimit?: number;
}

export interface Lease {
  client: SmtpClient;
  host: string;
  /** The MX (or route) host name the address was looked up from, when there was one. */
  name: string | undefined;
  /** An idle connection kept from an earlier message (the peer may have closed it meanwhile). */
  reused: boolean;
  /** What DANE found for the host (MX delivery with delivery.dane on). */
  dane: DaneState | undefined;
  /** Give the connection back: reusable ones are kept for the next message. */
  release(reusable: boolean): void;
}

export class ConnectionPool {
  private readonly dests = new Map<string, Dest>();
  private readonly dead = new Map<string, { until: number; why: string; at: number }>();
  private active = 0;
  private readonly globalWaiters: Array<() => void> = [];
  /** Open connections per host:port, and acquirers waiting for one of them to close. */
  private readonly hosts = new Map<string, { open: number; waiters: Array<() => void> }>();
  private readonly hostOf = new WeakMap<SmtpClient, string>();
  /** When each connection was opened (clock time), for reuseMs. */
  private readonly openedAt = new WeakMap<SmtpClient, number>();
  /** What DANE found for each connection's host. */
  private readonly daneOf = new WeakMap<SmtpClient, DaneState>();
  /** The gate's slot of each connection, given back when the connection is gone. */
  private readonly gateOf = new WeakMap<SmtpClient, () => void>();
  /** Connection attempts in progress for destinations not known to work, and their waiters. */
  private unproven = 0;
  private readonly unprovenWaiters: Array<() => void> = [];
  /** attempts: connections tried; connections: handshakes that succeeded; reused: leases of an
   *  idle connection; deadSkips: hosts skipped because the dead-host cache had them. */
  readonly stats = { attempts: 0, connections: 0, reused: 0, deadSkips: 0 };

  /** stopAcquiring() was called: no connection is handed out any more. */
  private stopping = false;

  constructor(private readonly opts: PoolOptions) {}

  /**
   * The daemon stops: from now on no connection is handed out. Every acquirer waiting now, and
   * every later one, gets POOL_STOPPING (a message waiting for a connection has sent nothing: it
   * is left as it is, for the next start); leases already held go on to their end.
   */
  stopAcquiring(): void {
    this.stopping = true;
    for (const d of this.dests.values()) {
      for (const w of d.waiters.splice(0)) w(false);
      for (const w of d.priority.splice(0)) w(false);
      for (const w of d.probeWaiters.splice(0)) w();
    }
    for (const w of this.globalWaiters.splice(0)) w();
  }

  private refuseIfStopping(): void {
    if (this.stopping)
      throw new MtaError('POOL_STOPPING', 'transient', 'the daemon is stopping: no new connection is used', {
        smtp: { code: 451, enhanced: '4.3.2' },
      });
  }

  private dest(key: string): Dest {
    let d = this.dests.get(key);
    if (!d)
      this.dests.set(
        key,
        (d = {
          active: 0,
          idle: [],
          waiters: [],
          priority: [],
          connecting: 0,
          healthy: false,
          probeWaiters: [],
        }),
      );
    return d;
  }

  /** Per-destination counts, for metrics and the dashboard. */
  snapshot(): Array<{ key: string; active: number; idle: number; waiting: number }> {
    return [...this.dests].map(([key, d]) => ({
      key,
      active: d.active,
      idle: d.idle.length,
      waiting: d.waiters.length + d.priority.length,
    }));
  }

  /** Why the host is taken for dead, if it is (and was marked at or after `since`, when given). */
  isDead(host: string, port: number, since?: number): string | undefined {
    const k = `${host}:${port}`;
    const d = this.dead.get(k);
    if (!d) return undefined;
    if (d.until <= this.opts.clock.now()) {
      this.dead.delete(k);
      return undefined;
    }
    if (since !== undefined && d.at < since) return undefined;
    return d.why;
  }

  markDead(host: string, port: number, why: string): void {
    const now = this.opts.clock.now();
    this.dead.set(`${host}:${port}`, { until: now + this.opts.deadHostMs, why, at: now });
  }

  /** The host answered (a successful probe, a connection): it is no longer taken for dead. */
  markAlive(host: string, port: number): void {
    this.dead.delete(`${host}:${port}`);
  }

  /**
   * Forgets every dead-host mark (an operator's flush, as Postfix's `postqueue -f` flushes its
   * dead destinations): each host gets one new try, and one that is still down is marked again
   * by it. Returns how many marks there were.
   */
  markAllAlive(): number {
    const n = this.dead.size;
    this.dead.clear();
    return n;
  }

  /** Waits for a slot at `key`, then hands out an idle connection or opens a new one. */
  async acquire(
    key: string,
    candidates: () => Promise<MxCandidate[]>,
    extra: Partial<SmtpClientOptions> = {},
    how: AcquireOptions = {},
  ): Promise<Lease> {
    const d = this.dest(key);
    const priority = how.priority === true;
    // Ordinary acquirers also wait while a flush waits for this destination.
    const mustWait = () => d.active >= this.opts.perDestination || (!priority && d.priority.length > 0);
    this.refuseIfStopping();
    let owned = false;
    while (!owned && (mustWait() || this.active >= this.opts.global)) {
      owned = await new Promise<boolean>((r) => {
        if (mustWait()) (priority ? d.priority : d.waiters).push(r);
        else this.globalWaiters.push(() => r(false));
      });
      if (this.stopping) {
        if (owned) this.done(d); // a slot handed over: pass it on
        this.refuseIfStopping();
      }
    }
    if (!owned) {
      d.active++;
      this.active++;
    }
    try {
      for (;;) {
        const idle = how.fresh ? undefined : d.idle.pop();
        if (!idle) break;
        idle.cancel();
        if (idle.client.usable && !this.tooOld(idle.client)) {
          this.stats.reused++;
          return this.lease(key, d, idle.client, idle.host, idle.name, true);
        }
        this.discard(idle.client);
      }
      // A destination not known to work gets one connection attempt at a time: if it is down,
      // the others then find its hosts in the dead-host cache instead of each trying.
      while (d.connecting > 0 && !d.healthy) {
        await new Promise<void>((r) => d.probeWaiters.push(r));
        this.refuseIfStopping();
      }
      const idle = how.fresh ? undefined : d.idle.pop();
      if (idle) {
        idle.cancel();
        if (idle.client.usable && !this.tooOld(idle.client)) {
          this.stats.reused++;
          return this.lease(key, d, idle.client, idle.host, idle.name, true);
        }
        this.discard(idle.client);
      }
      d.connecting++;
      try {
        const { client, host, name } = await this.connect(
          key,
          await candidates(),
          extra,
          how.reachableSince,
          !d.healthy,
          how.selfCheck,
          how.addressLimit,
        );
        d.healthy = true;
        if (this.stopping) {
          this.discard(client);
          this.refuseIfStopping();
        }
        return this.lease(key, d, client, host, name, false);
      } catch (e) {
        d.healthy = false;
        throw e;
      } finally {
        d.connecting--;
        for (const w of d.probeWaiters.splice(0)) w();
      }
    } catch (e) {
      this.done(d);
      throw e;
    }
  }

  private lease(
    key: string,
    d: Dest,
    client: SmtpClient,
    host: string,
    name: string | undefined,
    reused: boolean,
  ): Lease {
    let released = false;
    return {
      client,
      host,
      name,
      reused,
      dane: this.daneOf.get(client),
      release: (reusable) => {
        if (released) return;
        released = true;
        if (reusable && client.usable && !this.tooOld(client)) {
          const cancel = this.opts.clock.setTimer(this.opts.idleMs, () => {
            const i = d.idle.findIndex((x) => x.client === client);
            if (i >= 0) d.idle.splice(i, 1);
            this.dispose(client);
          });
          d.idle.push({ client, host, name, cancel });
        } else {
          this.dispose(client);
        }
        this.done(d);
        void key;
      },
    };
  }

  /** Open longer than reuseMs: the next message gets a new connection (to the best host). */
  private tooOld(client: SmtpClient): boolean {
    const at = this.openedAt.get(client);
    return at !== undefined && this.opts.clock.now() - at >= (this.opts.reuseMs ?? Number.POSITIVE_INFINITY);
  }

  private done(d: Dest): void {
    // A waiting flush takes the slot over as it is (the counts stay): nobody slips in between.
    const p = d.priority.shift();
    if (p) {
      p(true);
      return;
    }
    d.active--;
    this.active--;
    d.waiters.shift()?.(false);
    this.globalWaiters.shift()?.();
  }

  /** QUIT and close; the host slot is free once the socket is. */
  private dispose(client: SmtpClient): void {
    void client
      .quit()
      .catch(() => client.close())
      .finally(() => this.releaseHost(client));
  }

  private discard(client: SmtpClient): void {
    client.close();
    this.releaseHost(client);
  }

  private releaseHost(client: SmtpClient): void {
    this.gateOf.get(client)?.();
    this.gateOf.delete(client);
    const k = this.hostOf.get(client);
    if (k === undefined) return;
    this.hostOf.delete(client);
    this.hostSlotFreed(k);
  }

  private hostSlotFreed(k: string): void {
    const h = this.hosts.get(k);
    if (!h) return;
    h.open--;
    const w = h.waiters.shift();
    if (w) w();
    else if (h.open <= 0) this.hosts.delete(k);
  }

  private host(k: string): { open: number; waiters: Array<() => void> } {
    let h = this.hosts.get(k);
    if (!h) this.hosts.set(k, (h = { open: 0, waiters: [] }));
    return h;
  }

  /** Closes one idle connection to host `k` (of any destination): its slot is free at once. */
  private closeIdleTo(k: string): void {
    for (const d of this.dests.values()) {
      const i = d.idle.findIndex((x) => this.hostOf.get(x.client) === k);
      if (i < 0) continue;
      const [x] = d.idle.splice(i, 1);
      x!.cancel();
      this.releaseHost(x!.client);
      void x!.client.quit().catch(() => x!.client.close());
      return;
    }
  }

  /**
   * Waits until `ready()`, then `take()`s what it waited for (at once, so nobody slips in
   * between), without holding a global slot meanwhile: the caller's slot goes back (to whoever
   * waits for one) for as long as it waits, and is taken again before this returns.
   */
  private async waitWithoutGlobal(
    ready: () => boolean,
    queue: Array<() => void>,
    take: () => void,
  ): Promise<void> {
    if (ready()) {
      take();
      return;
    }
    this.active--;
    this.globalWaiters.shift()?.();
    try {
      while (!ready()) await new Promise<void>((r) => queue.push(r));
      take();
    } finally {
      while (this.active >= this.opts.global) await new Promise<void>((r) => this.globalWaiters.push(r));
      this.active++;
    }
  }

  private get perHost(): number {
    return this.opts.perHost ?? Number.POSITIVE_INFINITY;
  }

  private get unprovenCap(): number {
    return Math.max(1, this.opts.global - Math.ceil(this.opts.global / 4));
  }

  /** A slot of the gate for a new connection to `key` (waits for one up to gateWaitMs). */
  private async gateSlot(key: string): Promise<(() => void) | undefined> {
    const gate = this.opts.gate;
    if (!gate) return undefined;
    const until = this.opts.clock.now() + (this.opts.gateWaitMs ?? 10_000);
    for (let wait = 50; ; wait = Math.min(wait * 2, 1_000)) {
      const release = await gate.acquire(key);
      if (release) return release;
      if (this.opts.clock.now() + wait > until)
        throw new MtaError(
          'CLUSTER_CONNECTION_LIMIT',
          'transient',
          `connection limit of ${key} reached in the cluster`,
          {
            smtp: { code: 451, enhanced: '4.4.5' },
          },
        );
      await new Promise<void>((r) => this.opts.clock.setTimer(wait, r));
    }
  }

  private async connect(
    key: string,
    cands: MxCandidate[],
    extra: Partial<SmtpClientOptions>,
    since: number | undefined,
    unproven: boolean,
    selfCheck: SelfCheck | undefined,
    addressLimit = Number.POSITIVE_INFINITY,
  ): Promise<{ client: SmtpClient; host: string; name: string | undefined }> {
    if (cands.length === 0)
      throw new MtaError('NO_ROUTE', 'transient', 'no hosts to connect to', {
        smtp: { code: 451, enhanced: '4.4.4' },
      });
    const errors: string[] = [];
    let loop: string | undefined;
    let tlsFailed = false;
    /** Configured hosts that are this MTA, each with how it showed. */
    const loops: string[] = [];
    const { tried, cut } = capAddresses(cands, addressLimit);
    for (const c of tried) {
      // A host its own TLS policy rules out (DANE: its TLSA records could not be looked up).
      if (c.unusable !== undefined) {
        errors.push(`${hostLabel(c)} ${c.unusable}: not tried`);
        tlsFailed = true;
        continue;
      }
      // Our own listener as a route's host: connecting would hand the mail to ourselves.
      const byAddress = selfCheck === 'configured' || selfCheck === 'address';
      if (byAddress && c.path === undefined && this.opts.isSelf?.(c.host, c.port)) {
        loops.push(`${hostLabel(c)} (one of our listeners)`);
        continue;
      }
      const why = this.isDead(c.host, c.port, since);
      if (why) {
        this.stats.deadSkips++;
        errors.push(`${c.host}:${c.port} ${why} (cached)`);
        continue;
      }
      const k = `${c.host}:${c.port}`;
      const h = this.host(k);
      // A host at its limit (a tarpit holding every slot it gets, or a big shared MX): wait for
      // one of its connections to close, unless an idle one can go now.
      if (h.open >= this.perHost) this.closeIdleTo(k);
      await this.waitWithoutGlobal(
        () => h.open < this.perHost,
        h.waiters,
        () => {
          h.open++;
          if (!this.hosts.has(k)) this.hosts.set(k, h);
        },
      );
      // While waiting, the host may have been found dead by another attempt.
      const late = this.isDead(c.host, c.port, since);
      if (late) {
        this.hostSlotFreed(k);
        this.stats.deadSkips++;
        errors.push(`${c.host}:${c.port} ${late} (cached)`);
        continue;
      }
      if (unproven) {
        await this.waitWithoutGlobal(
          () => this.unproven < this.unprovenCap,
          this.unprovenWaiters,
          () => this.unproven++,
        );
      }
      let client: SmtpClient | undefined;
      let slot: (() => void) | undefined;
      try {
        // The cluster's limit for the destination: over it, the messages wait (deferred), and
        // the host is not taken for dead.
        slot = await this.gateSlot(key);
      } catch (e) {
        this.hostSlotFreed(k);
        if (unproven) {
          this.unproven--;
          this.unprovenWaiters.shift()?.();
        }
        throw e;
      }
      try {
        const o: SmtpClientOptions = { ...this.opts.clientOptions, ...extra };
        if (c.path !== undefined) o.socketPath = c.path;
        // A host's own TLS policy (DANE) goes before the destination's; looked up from an MX
        // name, SNI and certificate checks use the name, not the address.
        if (c.tls !== undefined) o.tls = c.tls;
        else if (c.name !== undefined)
          o.tls = { ...(o.tls ?? { mode: 'opportunistic' }), servername: c.name };
        this.stats.attempts++;
        client = await SmtpClient.connect(c.host, c.port, o);
        const name = this.opts.clientOptions.name;
        if ((selfCheck === 'mx' || selfCheck === 'configured') && greetsAs(client.greeting?.text, name)) {
          // This MTA, reached at an address not its own (NAT, a load balancer): for MX neither
          // it nor what comes after it; a configured list goes on with its next host.
          void client.quit();
          client = undefined;
          if (selfCheck === 'mx') {
            loop = `${c.name ?? c.host}[${c.host}]:${c.port}`;
            break;
          }
          loops.push(`${hostLabel(c)} (greets as ${name}, our hostname)`);
          continue;
        }
        this.stats.connections++;
        this.hostOf.set(client, k);
        this.openedAt.set(client, this.opts.clock.now());
        if (c.dane !== undefined) this.daneOf.set(client, c.dane);
        if (slot) this.gateOf.set(client, slot);
        this.markAlive(c.host, c.port);
        return {
          client,
          name: c.name,
          host: c.path !== undefined ? c.host : hostLabel(c),
        };
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        const stage = (e as { stage?: string }).stage;
        const hostPolicy = stage === 'starttls' ? c.tls?.requiredBy : undefined;
        errors.push(`${c.host}:${c.port} ${hostPolicy !== undefined ? `${hostPolicy}: ` : ''}${msg}`);
        if (stage === 'starttls' && (hostPolicy !== undefined || extra.tls?.requiredBy !== undefined))
          tlsFailed = true;
        // A 5xx greeting or EHLO is the host speaking (not dead): try the next one, and if none
        // takes the mail, defer it as Postfix does rather than bounce on a host's bad moment.
        const spoke = e instanceof MtaError && e.kind === 'permanent';
        if (!spoke && (stage === 'connect' || stage === 'greeting' || stage === undefined))
          this.markDead(c.host, c.port, msg);
      } finally {
        if (client === undefined) {
          this.hostSlotFreed(k);
          slot?.();
        }
        if (unproven) {
          this.unproven--;
          this.unprovenWaiters.shift()?.();
        }
      }
    }
    // The better hosts before this one failed: the mail waits for them. None: a loop.
    if (loop !== undefined && errors.length === 0) throw loopsBack(key.replace(/^mx:/, ''));
    // Only ourselves on a configured list: deferred with the reason, for the operator to fix.
    if (loops.length > 0 && errors.length === 0) throw configuredLoop(key, loops);
    for (const l of loops) errors.push(`${l} is this MTA (a loop): skipped`);
    if (loop !== undefined) errors.push(`${loop} greets as this host (a loop): not tried further`);
    // Deferred, never bounced: the addresses left out may take the mail (the operator may raise
    // the limit), and equal preferences are shuffled anew at the next attempt.
    else if (cut > 0)
      errors.push(
        `${cut} more MX address${cut === 1 ? '' : 'es'} not tried: the limit is ${addressLimit} per attempt (delivery.mx_address_limit)`,
      );
    // TLS that a policy requires and a host could not give (not offered, a bad certificate):
    // the policy's failure, said as such (RFC 3463 4.7.5: cryptographic failure), still deferred.
    // A host's own policy (DANE) names itself in its error.
    const requiredBy = extra.tls?.requiredBy;
    if (tlsFailed)
      throw new MtaError(
        'TLS_REQUIRED',
        'transient',
        `${requiredBy !== undefined ? `${requiredBy}: ` : ''}${errors.join('; ')}`,
        { smtp: { code: 451, enhanced: '4.7.5' } },
      );
    throw new MtaError('CONNECT_FAILED', 'transient', errors.join('; '), {
      smtp: { code: 451, enhanced: '4.4.1' },
    });
  }

  close(): void {
    for (const d of this.dests.values()) {
      for (const i of d.idle) {
        i.cancel();
        this.discard(i.client);
      }
      d.idle = [];
    }
  }
}

/** A candidate as logs and Remote-MTA name it: `mx1.example[192.0.2.1]:25`, or `host:port`. */
function hostLabel(c: MxCandidate): string {
  return c.name !== undefined ? `${c.name}[${c.host}]:${c.port}` : `${c.host}:${c.port}`;
}
