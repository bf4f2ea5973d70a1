// The global budget for message bytes held in memory: data received but not yet written to the
// log (spools), and just-accepted data kept for its first delivery attempt (the fresh cache).
// One budget is shared by every queue of a process. It refuses nothing by itself: the SMTP layer
// asks `over` before a new transaction (452 4.3.1 while it is), spools flush smaller chunks, and
// the fresh cache only takes what leaves half the budget for mail still arriving.
// Invariant: `used` is the sum of what was added and not yet subtracted; it never goes negative.
// Reading data back for delivery is not counted: it streams in bounded pieces (docs/reliability.md).

export class MemoryBudget {
  used = 0;
  /** Highest `used` seen, for metrics and tests. */
  peak = 0;
  private readonly overListeners = new Set<() => void>();
  private wasOver = false;

  constructor(readonly limit: number) {}

  get over(): boolean {
    return this.used > this.limit;
  }

  add(n: number): void {
    this.used += n;
    if (this.used > this.peak) this.peak = this.used;
    if (!this.wasOver && this.used > this.limit) {
      this.wasOver = true;
      // Spools holding buffered bytes write them out now, so memory drains without waiting for
      // their clients to send more.
      for (const f of this.overListeners) f();
    }
  }

  sub(n: number): void {
    this.used = Math.max(0, this.used - n);
    if (this.used <= this.limit) this.wasOver = false;
  }

  /** Room for `n` cached bytes that still leaves half the budget to mail being received. */
  roomForCache(n: number): boolean {
    return this.used + n <= this.limit / 2;
  }

  /** Called (synchronously) each time `used` goes over the limit; returns a function that unsubscribes. */
  onOver(f: () => void): () => void {
    this.overListeners.add(f);
    return () => this.overListeners.delete(f);
  }
}

/** The default: 256 MiB (config key queue.memory_budget). */
export const DEFAULT_MEMORY_BUDGET = 256 * 1024 * 1024;
