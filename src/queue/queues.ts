// Several queue directories (one per disk) used as one: new messages go to the queue with the
// fewest bytes waiting for a sync, so N disks raise the fsync and bandwidth ceiling N-fold.
// A message lives wholly in one queue; lookups by id ask each queue (there are few).
import { DEFAULT_MEMORY_BUDGET, MemoryBudget } from './data/budget.js';
import { DataSpool } from './data/spool.js';
import { IdSource } from './ids.js';
import { Queue, type QueueOptions } from './queue.js';
import type { RecoveryReport } from './recovery.js';
import type { AcceptInput, AcceptResult, Deliverer, DeliveryJob } from './types.js';

export class Queues {
  private constructor(
    readonly list: Queue[],
    /** Message bytes in memory, over every queue (see data/budget.ts). */
    readonly budget: MemoryBudget,
  ) {}

  static async open(paths: readonly string[], opts: Omit<QueueOptions, 'dir'>): Promise<Queues> {
    const ids = opts.ids ?? new IdSource(() => (opts.clock ?? { now: Date.now }).now());
    const budget = opts.budget ?? new MemoryBudget(DEFAULT_MEMORY_BUDGET);
    const list: Queue[] = [];
    for (const dir of paths) list.push(await Queue.open({ ...opts, dir, ids, budget }));
    return new Queues(list, budget);
  }

  get recovery(): RecoveryReport[] {
    return this.list.map((q) => q.recovery!);
  }

  setDeliverer(d: Deliverer): void {
    for (const q of this.list) q.setDeliverer(d);
  }

  start(): void {
    for (const q of this.list) q.start();
  }

  async stop(): Promise<void> {
    await Promise.all(this.list.map((q) => q.stop()));
  }

  /** Stops all queue I/O at once (see Queue.close). */
  async close(): Promise<void> {
    await Promise.all(this.list.map((q) => q.close()));
  }

  /** The queue for a new message: least pending bytes, skipping poisoned ones. */
  pick(): Queue {
    let best: Queue | undefined;
    for (const q of this.list) {
      if (q.poisoned) continue;
      if (!best || q.pendingBytes < best.pendingBytes) best = q;
    }
    return best ?? this.list[0]!;
  }

  /** A spool for a message being received, in the queue it will live in (see Queue.spool). */
  spool(msgId: number): DataSpool {
    return this.pick().spool(msgId);
  }

  accept(input: AcceptInput): Promise<AcceptResult> {
    if (input.data instanceof DataSpool) {
      const core = input.data.host.core;
      const q = this.list.find((x) => x.core === core);
      if (q) return q.accept(input);
    }
    return this.pick().accept(input);
  }

  find(msgId: number): Queue | undefined {
    return this.list.find((q) => q.core.msgs.byId.has(msgId));
  }

  heldCount(domain: string): number {
    let n = 0;
    for (const q of this.list) n += q.heldCount(domain);
    return n;
  }

  heldDomains(): string[] {
    return [...new Set(this.list.flatMap((q) => q.heldDomains()))];
  }

  async flushHeld(domain: string, opts: { reachableSince?: number } = {}): Promise<number> {
    const counts = await Promise.all(this.list.map((q) => q.flushHeld(domain, opts)));
    return counts.reduce((a, b) => a + b, 0);
  }

  flushRetries(): number {
    return this.list.reduce((n, q) => n + q.flushRetries(), 0);
  }

  async claimHeld(domains: readonly string[]): Promise<DeliveryJob[]> {
    return (await Promise.all(this.list.map((q) => q.claimHeld(domains)))).flat();
  }
}
