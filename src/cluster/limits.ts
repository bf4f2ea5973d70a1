// Limits shared by every node, counted in Redis by small Lua scripts (each one round trip,
// atomic on the server, using the server's clock so node clocks never matter):
// - SharedRate: a fixed window per key (ETRN requests per client, ODMR AUTH per client);
//   takeWindow, its one take, also counts [smtp]'s per-client rates (connections, MAIL, RCPT)
//   for ClientRates, which keeps its own windows as the fallback;
// - SharedAuthThrottle: AUTH failures per client address and the block that follows, so a
//   brute force spread over the nodes is blocked after the cluster-wide count;
// - SharedGcra: a generic cell rate (messages per destination): a message books the next cell
//   and waits for it, or is refused when that is further off than the caller will wait;
// - SharedConnections: leases of outbound connections per destination (a sorted set of lease
//   ids scored by expiry; leases are refreshed while the connection lives, so a node that dies
//   frees its leases within the lease time).
// Invariant: when Redis does not answer (RedisLink.run → undefined) each limit decides locally
// with the same limit (rates and connections: this node's share of them), counts the fallback,
// and uses Redis again as soon as it answers. A limit never waits for Redis longer than the
// Redis timeout.
// Fails: never throws.

import type { Redis } from 'ioredis';
import { type RateGate, RateLimiter } from '../odmr/rate.js';
import { AuthThrottle, type AuthThrottleOptions } from '../smtp/server/auth-throttle.js';
import type { AuthThrottleLike } from '../smtp/server/options.js';
import type { Clock } from '../util/clock.js';
import type { Keys } from './keys.js';
import type { RedisLink } from './redis.js';

const SCRIPTS = {
  // KEYS[1] window counter; ARGV limit, window ms. Returns the count including this take: up to
  // limit allowed; limit + 1 the window's first refusal (counted, so that exactly one node sees
  // it and logs it); limit + 2 any later refusal (not counted).
  logmtaWindow: `
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > tonumber(ARGV[1]) then return n + 1 end
n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return n`,
  // KEYS[1] failures, KEYS[2] block; ARGV max failures, forget ms, block ms.
  // Returns {failures, blocked (0/1)}.
  logmtaAuthFail: `
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if n >= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  return {n, 1}
end
return {n, 0}`,
  // KEYS[1] theoretical arrival time (ms, server clock); ARGV emission interval ms, burst
  // tolerance ms, longest wait ms. Returns the wait before the booked cell (>= 0), or -1 when
  // the next cell is further off than the longest wait (nothing booked).
  logmtaGcra: `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local T = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - now - tau
if wait < 0 then wait = 0 end
if wait > tonumber(ARGV[3]) then return -1 end
local nt = tat + T
redis.call('SET', KEYS[1], tostring(nt), 'PX', math.ceil(nt - now + tau) + 1000)
return math.ceil(wait)`,
  // KEYS[1] leases; ARGV limit, lease ms, lease id. Returns 1 when leased.
  logmtaLease: `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`,
  // KEYS[1] leases; ARGV lease ms, lease id...: pushes the expiry of live leases on.
  logmtaRenew: `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1`,
} as const;

type ScriptName = keyof typeof SCRIPTS;
type Scripted = Redis & Record<ScriptName, (...args: (string | number)[]) => Promise<unknown>>;

/** Defines the scripts on the link's connection (EVALSHA, loaded on first use). */
export function defineScripts(r: Redis): void {
  for (const [name, lua] of Object.entries(SCRIPTS))
    r.defineCommand(name, { numberOfKeys: name === 'logmtaAuthFail' ? 2 : 1, lua });
}

function call(link: RedisLink, name: ScriptName, ...args: (string | number)[]): Promise<unknown> {
  return link.run((r) => (r as Scripted)[name](...args));
}

/**
 * One take of the fixed window `kind`/`key` in Redis (opened by its first take, `windowMs` long
 * on Redis's clock): the count including this take — up to `limit` allowed, `limit + 1` the
 * window's first refusal, `limit + 2` a later one — or undefined when Redis did not answer (the
 * fallback is counted; the caller decides locally).
 */
export async function takeWindow(
  link: RedisLink,
  keys: Keys,
  kind: string,
  key: string,
  limit: number,
  windowMs: number,
): Promise<number | undefined> {
  const n = await call(link, 'logmtaWindow', keys.limit(kind, key), limit, windowMs);
  if (typeof n === 'number') return n;
  link.fellBack();
  return undefined;
}

/** ETRN requests, ODMR AUTH commands: at most `limit` per window per key, over the cluster. */
export class SharedRate implements RateGate {
  private readonly local: RateLimiter;

  constructor(
    private readonly link: RedisLink,
    private readonly keys: Keys,
    private readonly kind: string,
    private readonly limit: number,
    private readonly windowMs: number,
    clock: Clock,
  ) {
    this.local = new RateLimiter(limit, windowMs, clock);
  }

  async take(key: string): Promise<boolean> {
    const n = await takeWindow(this.link, this.keys, this.kind, key, this.limit, this.windowMs);
    return n === undefined ? this.local.take(key) : n <= this.limit;
  }
}

/** AUTH failures per client address over the cluster; the local throttle keeps the delays. */
export class SharedAuthThrottle implements AuthThrottleLike {
  private readonly local: AuthThrottle;
  private readonly maxFailures: number;
  private readonly forgetMs: number;
  private readonly blockMs: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;

  constructor(
    private readonly link: RedisLink,
    private readonly keys: Keys,
    private readonly kind: string,
    clock: Clock,
    o: AuthThrottleOptions = {},
  ) {
    this.local = new AuthThrottle(clock, o);
    this.maxFailures = o.maxFailures ?? 5;
    this.forgetMs = o.forgetMs ?? 30 * 60_000;
    this.blockMs = o.blockMs ?? 10 * 60_000;
    this.baseDelayMs = o.baseDelayMs ?? 1000;
    this.maxDelayMs = o.maxDelayMs ?? 16_000;
  }

  async isBlocked(ip: string): Promise<boolean> {
    if (this.local.isBlocked(ip)) return true;
    const n = await this.link.run((r) => r.exists(this.keys.limit(`${this.kind}-block`, ip)));
    if (n === undefined) {
      this.link.fellBack();
      return false;
    }
    return n > 0;
  }

  async failure(ip: string): Promise<{ delayMs: number; blocked: boolean }> {
    const mine = this.local.failure(ip);
    const r = await call(
      this.link,
      'logmtaAuthFail',
      this.keys.limit(`${this.kind}-fail`, ip),
      this.keys.limit(`${this.kind}-block`, ip),
      this.maxFailures,
      this.forgetMs,
      this.blockMs,
    );
    if (!Array.isArray(r)) {
      this.link.fellBack();
      return mine;
    }
    const n = Number(r[0]);
    return {
      delayMs: Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (n - 1)),
      blocked: Number(r[1]) === 1 || mine.blocked,
    };
  }

  success(ip: string): void {
    this.local.success(ip);
    void this.link.run((r) => r.del(this.keys.limit(`${this.kind}-fail`, ip)));
  }

  sweep(): void {
    this.local.sweep();
  }
}

/** A node's share of a cluster-wide figure while it counts alone (at least 1). */
export function shareOf(total: number, nodes: number): number {
  return Math.max(1, Math.ceil(total / Math.max(1, nodes)));
}

/** Local GCRA (fallback): the same cell rate, for this node's share. */
class LocalGcra {
  private readonly tat = new Map<string, number>();
  constructor(private readonly clock: Clock) {}

  book(key: string, intervalMs: number, tauMs: number, maxWaitMs: number): number {
    const now = this.clock.now();
    const tat = Math.max(this.tat.get(key) ?? now, now);
    const wait = Math.max(0, tat - now - tauMs);
    if (wait > maxWaitMs) return -1;
    if (this.tat.size > 10_000) for (const [k, t] of this.tat) if (t < now) this.tat.delete(k);
    this.tat.set(key, tat + intervalMs);
    return Math.ceil(wait);
  }
}

/** Messages per destination over the cluster (GCRA): how long to wait before sending one. */
export class SharedGcra {
  private readonly local: LocalGcra;

  constructor(
    private readonly link: RedisLink,
    private readonly keys: Keys,
    private readonly rate: { count: number; periodMs: number; burst: number },
    clock: Clock,
    /** Live nodes now (for this node's share when Redis is out). */
    private readonly nodes: () => number,
  ) {
    this.local = new LocalGcra(clock);
  }

  /** Milliseconds to wait before sending one message to `key`; -1 when over `maxWaitMs`. */
  async book(key: string, maxWaitMs: number): Promise<number> {
    const { count, periodMs, burst } = this.rate;
    const interval = periodMs / count;
    const r = await call(
      this.link,
      'logmtaGcra',
      this.keys.limit('rate', key),
      interval,
      interval * (burst - 1),
      maxWaitMs,
    );
    if (typeof r === 'number') return r;
    this.link.fellBack();
    const share = shareOf(count, this.nodes());
    const localInterval = periodMs / share;
    return this.local.book(key, localInterval, localInterval * (shareOf(burst, this.nodes()) - 1), maxWaitMs);
  }
}

/** Outbound connections per destination over the cluster (leases in Redis). */
export class SharedConnections {
  private readonly leases = new Map<string, Set<string>>();
  private readonly local = new Map<string, number>();
  private serial = 0;
  private renewTimer: (() => void) | undefined;

  constructor(
    private readonly link: RedisLink,
    private readonly keys: Keys,
    private readonly limit: number,
    private readonly self: string,
    private readonly clock: Clock,
    private readonly nodes: () => number,
    private readonly leaseMs = 60_000,
  ) {}

  /** Takes a connection slot for `key`; a release function, or undefined when the cluster is full. */
  async acquire(key: string): Promise<(() => void) | undefined> {
    const id = `${this.self}:${process.pid}:${++this.serial}`;
    const r = await call(
      this.link,
      'logmtaLease',
      this.keys.limit('conn', key),
      this.limit,
      this.leaseMs,
      id,
    );
    if (typeof r === 'number') {
      if (r !== 1) return undefined;
      let set = this.leases.get(key);
      if (!set) this.leases.set(key, (set = new Set()));
      set.add(id);
      this.armRenew();
      let done = false;
      return () => {
        if (done) return;
        done = true;
        set.delete(id);
        if (set.size === 0) this.leases.delete(key);
        void this.link.run((x) => x.zrem(this.keys.limit('conn', key), id));
      };
    }
    this.link.fellBack();
    const n = this.local.get(key) ?? 0;
    if (n >= shareOf(this.limit, this.nodes())) return undefined;
    this.local.set(key, n + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const m = (this.local.get(key) ?? 1) - 1;
      if (m <= 0) this.local.delete(key);
      else this.local.set(key, m);
    };
  }

  private armRenew(): void {
    if (this.renewTimer) return;
    this.renewTimer = this.clock.setTimer(this.leaseMs / 3, () => {
      this.renewTimer = undefined;
      for (const [key, ids] of this.leases)
        void call(this.link, 'logmtaRenew', this.keys.limit('conn', key), this.leaseMs, ...ids);
      if (this.leases.size > 0) this.armRenew();
    });
  }

  stop(): void {
    this.renewTimer?.();
  }
}
