// Giving up on held mail (DESIGN.md §8: max_age): every piece of a held or operator-held lane is
// noted in an expiry heap (lanes/expiry.ts) when it becomes current there, and a timer — set for
// the earliest deadline, at most EXPIRY_TICK_MAX ahead, so a clock step is noticed — bounces the
// pieces whose arrival plus their lane's max_age has passed, whether or not a flush ever touched
// them. Timed lanes need none of this: their runner ends expired mail when it attempts it.
// Invariants: a piece being bounced is marked in flight (no flush or claim delivers it meanwhile);
// a piece in flight is looked at again a little later; one sweep at a time.
// Fails: a sweep that fails is reported as an admin event and the timer is armed again.
import type { QueueContext } from './context.js';
import { ExpiryHeap } from './lanes/expiry.js';
import type { LaneState } from './lanes/lane.js';
import type { Outcomes } from './outcomes.js';
import type { Reader } from './read.js';
import { F_INFLIGHT } from './state/tables.js';

/** Longest sleep of the expiry timer: a clock step is noticed within this. */
const EXPIRY_TICK_MAX = 60_000;
/** Held pieces expiring at once (their bounces share fdatasyncs). */
const EXPIRY_BATCH = 64;

export class Expiry {
  /** When every held piece gives up (arrival + its lane's max_age); see lanes/expiry.ts. */
  readonly expiry = new ExpiryHeap();
  private expiryLimit = 1024;
  private expiryTimer: (() => void) | undefined;
  private expiryAt = Number.POSITIVE_INFINITY;
  private expiring: Promise<number> | undefined;

  constructor(
    private readonly cx: QueueContext,
    private readonly read: Reader,
    private readonly outcomes: Pick<Outcomes, 'finish'>,
    /** Marks a piece in flight while it is bounced (lanes/runner.ts). */
    private readonly take: (slot: number) => () => void,
  ) {
    cx.core.onHeldEntry = (pslot, gen, lane, arrival) => this.entry(pslot, gen, lane, arrival);
  }

  /** Cancels the timer (halt). */
  halt(): void {
    this.expiryTimer?.();
    this.expiryTimer = undefined;
  }

  /** A piece became current in a held or hold lane: note when it gives up. */
  entry(pslot: number, gen: number, lane: LaneState, arrival: number): void {
    const at = arrival + this.cx.maxAgeOf(lane);
    if (this.expiry.size >= this.expiryLimit) {
      // Entries of pieces that moved on or ended outnumber the live ones: drop them (amortised O(1)).
      this.expiry.compact((slot, g) => this.cx.core.pieces.gen[slot] === g && this.cx.core.isLive(slot));
      this.expiryLimit = Math.max(1024, 2 * this.expiry.size);
    }
    this.expiry.push(at, pslot, gen);
    if (at < this.expiryAt) this.arm();
  }

  /** Sets the expiry timer for the earliest deadline (at most EXPIRY_TICK_MAX ahead). */
  arm(): void {
    if (!this.cx.running) return;
    const now = this.cx.clock.now();
    // A queue that refuses writes cannot bounce anything: look again a while later, no sooner.
    const at = this.cx.writer.poisoned
      ? now + EXPIRY_TICK_MAX
      : Math.min(this.expiry.peek(), now + EXPIRY_TICK_MAX);
    if (this.expiryTimer && this.expiryAt <= at) return;
    this.expiryTimer?.();
    this.expiryAt = at;
    this.expiryTimer = this.cx.clock.setTimer(Math.max(0, at - now), () => {
      this.expiryTimer = undefined;
      this.expiryAt = Number.POSITIVE_INFINITY;
      this.expireHeld()
        .catch((e) => this.cx.emit({ type: 'admin', id: '-', action: `expiry failed: ${String(e)}` }))
        .finally(() => this.arm());
    });
  }

  /**
   * Bounces (RFC 3464, via outcomes.ts) every held or operator-held piece whose arrival plus its
   * lane's max_age has passed, whether or not a flush ever touched it. Only expired entries are
   * visited (lanes/expiry.ts); a piece in flight is looked at again a little later, when its
   * attempt has ended (an attempt that ends after the deadline bounces by itself). Returns how
   * many pieces it ended.
   */
  expireHeld(): Promise<number> {
    this.expiring ??= this.sweepExpired().finally(() => {
      this.expiring = undefined;
    });
    return this.expiring;
  }

  private async sweepExpired(): Promise<number> {
    if (this.cx.writer.poisoned) return 0;
    const core = this.cx.core;
    const P = core.pieces;
    const now = this.cx.clock.now();
    const later: Array<{ slot: number; gen: number }> = [];
    let n = 0;
    let batch: Promise<void>[] = [];
    const expire = async (slot: number, gen: number): Promise<void> => {
      // Taken for the sweep: no flush or claim may deliver it while it is being bounced.
      const release = this.take(slot);
      try {
        const env = await this.read.readEnvelope(slot);
        if (P.gen[slot] !== gen || !core.isLive(slot)) return;
        await this.outcomes.finish(slot, gen, env, this.read.pendingOf(slot, env), []);
        if (P.gen[slot] !== gen || !core.isLive(slot)) n++;
      } finally {
        release();
        // Still there (a clock step, a write that failed): it stays due for the next sweep.
        if (P.gen[slot] === gen && core.isLive(slot)) later.push({ slot, gen });
      }
    };
    while (this.expiry.peek() <= now) {
      const e = this.expiry.pop()!;
      if (P.gen[e.slot] !== e.gen || !core.isLive(e.slot)) continue;
      if ((P.flags[e.slot]! & F_INFLIGHT) !== 0) {
        later.push(e);
        continue;
      }
      batch.push(expire(e.slot, e.gen).catch(() => {}));
      if (batch.length >= EXPIRY_BATCH) {
        await Promise.all(batch);
        batch = [];
      }
    }
    await Promise.all(batch);
    const retryAt = now + Math.min(EXPIRY_TICK_MAX, 1_000);
    for (const e of later) this.expiry.push(retryAt, e.slot, e.gen);
    return n;
  }
}
