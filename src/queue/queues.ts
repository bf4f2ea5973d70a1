// Several queue directories (one per disk) used as one: new messages go to the queue with the
// fewest bytes waiting for a sync, so N disks raise the fsync and bandwidth ceiling N-fold.
// A message lives wholly in one queue; lookups by id ask each queue (there are few).
import { IdSource } from './ids.js';
import { Queue, type QueueOptions } from './queue.js';
import type { RecoveryReport } from './recovery.js';
import type { AcceptInput, AcceptResult, Deliverer, DeliveryJob } from './types.js';

export class Queues {
  private constructor(readonly list: Queue[]) {}

  static async open(paths: readonly string[], opts: Omit<QueueOptions, 'dir'>): Promise<Queues> {
    const ids = opts.ids ?? new IdSource(() => (opts.clock ?? { now: Date.now }).now());
    const list: Queue[] = [];
    for (const dir of paths) list.push(await Queue.open({ ...opts, dir, ids }));
    return new Queues(list);
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

  accept(input: AcceptInput): Promise<AcceptResult> {
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
