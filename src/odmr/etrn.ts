// The ETRN service (RFC 1985): answers an ETRN at once from the held lanes' live counts, then
// empties the named lanes in the background through the normal delivery engine (new outbound
// connections to the configured host or MX, never the ETRN connection). Also the runner the
// probes use.
// Throttles: one runner per lane (an ETRN while it runs asks for exactly one more pass), a global
// cap on lanes being flushed at once (458 beyond it), and a per-client-address rate limit (458).
// Invariant: only configured ETRN domains are flushed (etrn-node.ts); a lane locked by another
// runner (HeldLocks) is not flushed twice at the same time.
// Fails: a flush that throws is logged and ends that runner; the reply was already sent.

import type { SmtpReply } from '../smtp/protocol/reply.js';
import type { SessionContext } from '../smtp/server/hooks.js';
import { type Clock, systemClock } from '../util/clock.js';
import { type EtrnDomainLike, type EtrnRequest, etrnReplies, lanesFor, parseEtrnArg } from './etrn-node.js';
import { HeldLocks } from './locks.js';
import { type RateGate, RateLimiter } from './rate.js';

/** What the service needs from the queue (Queues implements it). */
export interface HeldLanes {
  heldCount(domain: string): number;
  /**
   * Delivers the lane; resolves when every piece that was in it has been attempted.
   * `reachableSince`: the lane's host proved reachable then (dead-host marks older than it do not apply).
   */
  flushHeld(domain: string, opts?: { reachableSince?: number }): Promise<number>;
}

export interface OdmrLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export interface EtrnServiceOptions {
  domains: readonly EtrnDomainLike[];
  lanes: HeldLanes;
  clock?: Clock;
  logger?: OdmrLogger;
  locks?: HeldLocks;
  /** Lanes flushed at the same time, over all requests and probes (default 4). */
  maxConcurrent?: number;
  /** ETRN commands per client address per window (default 10 per minute). */
  perClientLimit?: number;
  perClientWindowMs?: number;
  /** Counts ETRN commands per client address instead (a cluster counts them over every node). */
  rate?: RateGate;
  /** Told of every reply (events, metrics); count = pieces the request made free. */
  onReply?(ev: { ip: string; node: string; code: number; count?: number }): void;
}

export type RunRequest = 'started' | 'again' | 'refused';

interface Runner {
  again: boolean;
  /** The latest proof that the host is up: the ETRN or successful probe that asked for a pass. */
  since: number;
}

const OWNER = 'etrn';

export class EtrnService {
  readonly locks: HeldLocks;
  private readonly domains: readonly EtrnDomainLike[];
  private readonly lanes: HeldLanes;
  private readonly logger: OdmrLogger | undefined;
  private readonly onReply: EtrnServiceOptions['onReply'];
  private readonly maxConcurrent: number;
  private readonly rate: RateGate;
  private readonly clock: Clock;
  private readonly runners = new Map<string, Runner>();
  private idleWaiters: (() => void)[] = [];
  private stopped = false;
  /** Passes completed (for tests and metrics). */
  passes = 0;

  constructor(o: EtrnServiceOptions) {
    this.domains = o.domains;
    this.lanes = o.lanes;
    this.logger = o.logger;
    this.onReply = o.onReply;
    this.locks = o.locks ?? new HeldLocks();
    this.maxConcurrent = o.maxConcurrent ?? 4;
    this.clock = o.clock ?? systemClock;
    this.rate = o.rate ?? new RateLimiter(o.perClientLimit ?? 10, o.perClientWindowMs ?? 60_000, this.clock);
  }

  /** The SMTP server hook: the reply to `ETRN <node>`, decided at once. */
  readonly hook = (node: string, ctx: Pick<SessionContext, 'client'>): SmtpReply | Promise<SmtpReply> => {
    const ip = ctx.client.ip;
    const req = parseEtrnArg(node);
    if (req === null) return this.told(ip, node, { reply: etrnReplies.syntax() });
    const lanes = this.lanesOf(req, ip);
    if (!Array.isArray(lanes)) return this.told(ip, node, lanes);
    const allowed = this.stopped ? false : this.rate.take(ip);
    const go = (ok: boolean): SmtpReply => {
      if (!ok) {
        this.logger?.warn({ ip, node }, 'etrn refused: rate limit');
        return this.told(ip, node, { reply: etrnReplies.unable(req.raw) });
      }
      return this.told(ip, node, this.startLanes(lanes, req.raw, ip));
    };
    return typeof allowed === 'boolean' ? go(allowed) : allowed.then(go);
  };

  /** Tells onReply of a reply (also used for replies a cluster composes). */
  told(ip: string, node: string, r: { reply: SmtpReply; count?: number }): SmtpReply {
    this.onReply?.({
      ip,
      node,
      code: r.reply.code,
      ...(r.count !== undefined ? { count: r.count } : {}),
    });
    return r.reply;
  }

  /** The lanes a parsed request names, or the 459 refusal when it names none. */
  lanesOf(req: EtrnRequest, ip: string): string[] | { reply: SmtpReply } {
    const lanes = lanesFor(req, this.domains);
    if (lanes.length > 0) return lanes;
    this.logger?.info({ ip, node: req.raw }, 'etrn refused: not an ETRN domain');
    return {
      reply: etrnReplies.notAllowed(
        req.raw,
        req.kind === 'queue' ? 'no such queue' : 'not an ETRN domain here',
      ),
    };
  }

  /**
   * Starts (or asks for another pass of) the runners of these lanes and answers with their exact
   * count: 251 when all are empty, 458 when the global cap or another runner is in the way.
   * No rate limit here (the hook counts the request first; a cluster peer's forwarded request
   * was counted where the customer sent it).
   */
  startLanes(lanes: readonly string[], raw: string, ip: string): { reply: SmtpReply; count?: number } {
    if (this.stopped) return { reply: etrnReplies.unable(raw) };
    const counts = lanes.map((d) => this.lanes.heldCount(d));
    const total = counts.reduce((a, b) => a + b, 0);
    if (total === 0) return { reply: etrnReplies.empty(raw), count: 0 };
    const todo = lanes.filter((_, i) => counts[i]! > 0);
    const fresh = todo.filter((d) => !this.runners.has(d));
    if (this.runners.size + fresh.length > this.maxConcurrent || fresh.some((d) => this.locks.isLocked(d))) {
      this.logger?.warn({ ip, node: raw, running: this.runners.size }, 'etrn refused: too many flushes');
      return { reply: etrnReplies.unable(raw) };
    }
    for (const d of todo) this.run(d);
    this.logger?.info({ ip, node: raw, lanes: todo, pending: total }, 'etrn accepted');
    return { reply: etrnReplies.started(raw, total), count: total };
  }

  isRunning(domain: string): boolean {
    return this.runners.has(domain.toLowerCase());
  }

  get running(): number {
    return this.runners.size;
  }

  /**
   * Flushes a lane in the background: starts a runner, or asks the running one for one more
   * pass. 'refused' when the global cap is reached or another runner (ATRN) holds the lane.
   * Every caller (an ETRN, a successful probe) has just seen the customer's host up, so the
   * pass ignores dead-host marks from before now.
   */
  run(domain: string): RunRequest {
    const d = domain.toLowerCase();
    const now = this.clock.now();
    const r = this.runners.get(d);
    if (r) {
      r.again = true;
      r.since = now;
      return 'again';
    }
    if (this.stopped || this.runners.size >= this.maxConcurrent) return 'refused';
    if (!this.locks.tryLock([d], OWNER)) return 'refused';
    const runner: Runner = { again: false, since: now };
    this.runners.set(d, runner);
    void this.loop(d, runner);
    return 'started';
  }

  /** Resolves when no runner is active (tests; a stopped queue never lets a runner finish). */
  idle(): Promise<void> {
    if (this.runners.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** No new runs; running ones end with their current pass. */
  stop(): void {
    this.stopped = true;
    for (const r of this.runners.values()) r.again = false;
  }

  private async loop(domain: string, runner: Runner): Promise<void> {
    try {
      do {
        runner.again = false;
        const n = await this.lanes.flushHeld(domain, { reachableSince: runner.since });
        this.passes++;
        this.logger?.info(
          { domain, attempted: n, left: this.lanes.heldCount(domain) },
          'etrn flush pass done',
        );
      } while (runner.again && !this.stopped);
    } catch (e) {
      this.logger?.warn({ domain, err: e instanceof Error ? e.message : String(e) }, 'etrn flush failed');
    } finally {
      this.runners.delete(domain);
      this.locks.release([domain], OWNER);
      if (this.runners.size === 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }
}
