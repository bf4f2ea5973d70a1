// A per-key fixed-window rate limit (ETRN requests per client address, ODMR AUTH attempts).
// Invariant: at most `limit` takes per key in any window of `windowMs` that starts at the key's
// first take; memory is one small entry per key seen in the last window (swept as it grows).
// Fails: never throws.

import type { Clock } from '../util/clock.js';

/** A per-key rate limit as its users see it: RateLimiter here, a shared counter in a cluster. */
export interface RateGate {
  /** Counts one request for `key`; false when it is over the limit. */
  take(key: string): boolean | Promise<boolean>;
}

interface Window {
  start: number;
  count: number;
}

export class RateLimiter implements RateGate {
  private readonly windows = new Map<string, Window>();

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
    private readonly clock: Clock,
  ) {
    if (!(limit > 0) || !(windowMs > 0)) throw new TypeError('rate limit and window must be positive');
  }

  /** Counts one request for `key`; false when it is over the limit (and is then not counted). */
  take(key: string): boolean {
    const now = this.clock.now();
    let w = this.windows.get(key);
    if (w === undefined || now - w.start >= this.windowMs) {
      if (this.windows.size >= 10_000) this.sweep(now);
      w = { start: now, count: 0 };
      this.windows.set(key, w);
    }
    if (w.count >= this.limit) return false;
    w.count++;
    return true;
  }

  private sweep(now: number): void {
    for (const [k, w] of this.windows) if (now - w.start >= this.windowMs) this.windows.delete(k);
  }
}
