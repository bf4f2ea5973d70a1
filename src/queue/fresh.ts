// Just-accepted envelopes and data kept in memory for their first attempt, so that attempt needs
// no read back from the log. Envelopes by piece slot with the generation they were made current
// at (a slot can be reused); data by message id. Bounded: past FRESH_MAX messages, or when it
// would take more than half the memory budget, the attempt reads from disk. Chunked (large)
// data is never kept. The bytes kept count in the memory budget until dropped.
// Invariant: an entry is only a copy of what the log holds; dropping one never loses anything.
import type { MemoryBudget } from './data/budget.js';
import type { EnvelopeRecord } from './record/records.js';

/** Messages whose accepted bytes are kept in memory for their first attempt. */
export const FRESH_MAX = 4096;

export class FreshCache {
  readonly env = new Map<number, { gen: number; rec: EnvelopeRecord }>();
  readonly data = new Map<number, { chunks: readonly Buffer[]; size: number }>();

  constructor(private readonly budget: MemoryBudget) {}

  /** Forgets a message's data (after its first attempt, or when it ends) and frees its budget. */
  drop(msgId: number): void {
    const f = this.data.get(msgId);
    if (f === undefined) return;
    this.data.delete(msgId);
    this.budget.sub(f.size);
  }
}
