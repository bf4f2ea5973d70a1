// The global budget for message bytes held in memory: data received but not yet written to the
// log (spools), and just-accepted data kept for its first delivery attempt (the fresh cache).
// One budget is shared by every queue of a process. It refuses nothing by itself: the SMTP layer
// asks `over` before a new transaction (452 4.3.1 while it is), spools flush smaller chunks, and
// the fresh cache only takes what leaves half the budget for mail still arriving.
// Shared across threads: built over a SharedArrayBuffer (`shared()`, then `attach(buffer)` in the
// other thread), both instances count into one figure, so the SMTP session thread's buffered
// messages and the main thread's spools and cache are one budget. Over-listeners are per thread.
// Invariant: `used` is the sum of what was added and not yet subtracted; it never goes negative.
// Reading data back for delivery is not counted: it streams in bounded pieces (docs/reliability.md).

export class MemoryBudget {
  private local = 0;
  /** The shared figure (one BigInt64 cell), when the budget spans threads. */
  private readonly cell: BigInt64Array | undefined;
  /** Highest `used` seen, for metrics and tests. */
  peak = 0;
  private readonly overListeners = new Set<() => void>();
  private wasOver = false;

  constructor(
    readonly limit: number,
    shared?: SharedArrayBuffer,
  ) {
    this.cell = shared ? new BigInt64Array(shared, 0, 1) : undefined;
  }

  /** A budget whose figure another thread can share (`buffer`, then MemoryBudget over it). */
  static shared(limit: number): MemoryBudget {
    return new MemoryBudget(limit, new SharedArrayBuffer(8));
  }

  /** The shared figure's memory (undefined for a budget of one thread). */
  get buffer(): SharedArrayBuffer | undefined {
    return this.cell?.buffer as SharedArrayBuffer | undefined;
  }

  get used(): number {
    return this.cell ? Number(Atomics.load(this.cell, 0)) : this.local;
  }

  get over(): boolean {
    return this.used > this.limit;
  }

  add(n: number): void {
    let used: number;
    if (this.cell) used = Number(Atomics.add(this.cell, 0, BigInt(n))) + n;
    else used = this.local += n;
    if (used > this.peak) this.peak = used;
    if (!this.wasOver && used > this.limit) {
      this.wasOver = true;
      // Spools holding buffered bytes write them out now, so memory drains without waiting for
      // their clients to send more.
      for (const f of this.overListeners) f();
    }
  }

  sub(n: number): void {
    let used: number;
    if (this.cell) {
      used = Number(Atomics.sub(this.cell, 0, BigInt(n))) - n;
      // Never negative: a figure driven below zero by a double release is put back at zero.
      if (used < 0) Atomics.add(this.cell, 0, BigInt(-used));
    } else used = this.local = Math.max(0, this.local - n);
    if (used <= this.limit) this.wasOver = false;
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
