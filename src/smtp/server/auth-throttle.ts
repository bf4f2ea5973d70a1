// Per-client-IP AUTH failure throttle, shared by all sessions of one listener.
// Each failure doubles the delay before the 535 (baseDelayMs, 2x, ... up to maxDelayMs); after
// maxFailures failures within forgetMs the IP is blocked for blockMs (AUTH gets 421 4.7.0 and the
// connection is closed). A success clears the record. Memory: one small entry per IP with recent
// failures, removed by sweep() once forgotten.
// Fails: never throws.

import type { Clock } from '../../util/clock.js';
import type { AuthThrottleLike } from './options.js';

export interface AuthThrottleOptions {
  maxFailures?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  blockMs?: number;
  /** Failures older than this are forgotten. */
  forgetMs?: number;
}

interface Entry {
  failures: number;
  last: number;
  blockedUntil: number;
}

export class AuthThrottle implements AuthThrottleLike {
  private readonly entries = new Map<string, Entry>();
  private readonly maxFailures: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly blockMs: number;
  private readonly forgetMs: number;

  constructor(
    private readonly clock: Clock,
    o: AuthThrottleOptions = {},
  ) {
    this.maxFailures = o.maxFailures ?? 5;
    this.baseDelayMs = o.baseDelayMs ?? 1000;
    this.maxDelayMs = o.maxDelayMs ?? 16_000;
    this.blockMs = o.blockMs ?? 10 * 60_000;
    this.forgetMs = o.forgetMs ?? 30 * 60_000;
  }

  isBlocked(ip: string): boolean {
    const e = this.entries.get(ip);
    return e !== undefined && e.blockedUntil > this.clock.now();
  }

  failure(ip: string): { delayMs: number; blocked: boolean } {
    const now = this.clock.now();
    let e = this.entries.get(ip);
    if (e === undefined || now - e.last > this.forgetMs) {
      e = { failures: 0, last: now, blockedUntil: 0 };
      this.entries.set(ip, e);
    }
    e.failures++;
    e.last = now;
    const delayMs = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (e.failures - 1));
    const blocked = e.failures >= this.maxFailures;
    if (blocked) e.blockedUntil = now + this.blockMs;
    return { delayMs, blocked };
  }

  success(ip: string): void {
    this.entries.delete(ip);
  }

  /** Drop entries that are neither blocked nor recent. */
  sweep(): void {
    const now = this.clock.now();
    for (const [ip, e] of this.entries) {
      if (e.blockedUntil <= now && now - e.last > this.forgetMs) this.entries.delete(ip);
    }
  }

  get size(): number {
    return this.entries.size;
  }
}
