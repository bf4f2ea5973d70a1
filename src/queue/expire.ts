// Giving up on held mail (DESIGN.md §8: max_age), and warning its senders on the way: every piece
// of a held or operator-held lane is noted in an expiry heap (lanes/expiry.ts) when it becomes
// current there, and a timer — set for the earliest deadline, at most EXPIRY_TICK_MAX ahead, so a
// clock step is noticed — bounces the pieces whose arrival plus their lane's max_age has passed,
// whether or not a flush ever touched them. A piece of an ETRN/ODMR domain's lane with a delay
// warning pending (F_WARN_PENDING: its envelope's flag, which recovery reads, or for an older
// version's flag-less envelope recovery's byte test, which the sweep checks) is keyed at its
// warning deadline instead (arrival + delay_warning, if sooner): the sweep then sends the warning
// (outcomes.ts finish, which writes the piece again without the flag), and the piece's one entry
// comes back keyed at its expiry. Timed
// lanes need none of this: their runner ends expired mail, and warns, when it attempts it.
// Invariants: one live entry per held piece; a piece being bounced or warned is marked in flight
// (no flush or claim delivers it meanwhile); a piece in flight is looked at again a little later;
// one sweep at a time.
// Fails: a sweep that fails is reported as an admin event and the timer is armed again.
import type { QueueContext } from './context.js';
import { ExpiryHeap } from './lanes/expiry.js';
import type { LaneState } from './lanes/lane.js';
import type { Outcomes } from './outcomes.js';
import type { Reader } from './read.js';
import { F_INFLIGHT, F_WARN_PENDING } from './state/tables.js';

/** Longest sleep of the expiry timer: a clock step is noticed within this. */
const EXPIRY_TICK_MAX = 60_000;
/** Held pieces expiring at once (their bounces share fdatasyncs). */
const EXPIRY_BATCH = 64;

export class Expiry {
  /** When every held piece gives up (arrival + its lane's max_age) or is warned; see lanes/expiry.ts. */
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

  /**
   * A piece became current in a held or hold lane: note when it gives up, or, for an ETRN/ODMR
   * domain's piece with a delay warning pending, when it is warned if that comes first.
   */
  entry(pslot: number, gen: number, lane: LaneState, arrival: number): void {
    let at = arrival + this.cx.maxAgeOf(lane);
    if (lane.kind === 'held' && (this.cx.core.pieces.flags[pslot]! & F_WARN_PENDING) !== 0)
      at = Math.min(at, arrival + this.cx.delayWarning);
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
   * lane's max_age has passed, whether or not a flush ever touched it, and sends the delay
   * warnings of held pieces past delay_warning. Only entries whose deadline passed are visited
   * (lanes/expiry.ts); a piece in flight is looked at again a little later, when its attempt has
   * ended (an attempt that ends after the deadline bounces, or warns, by itself). Returns how
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
    // Visited and left as they were (no warning wanted, not yet due): keyed again (entry()).
    const again: Array<{ slot: number; gen: number; arrival: number }> = [];
    let n = 0;
    let batch: Promise<void>[] = [];
    const expire = async (slot: number, gen: number): Promise<void> => {
      // Taken for the sweep: no flush or claim may deliver it while it is bounced or warned.
      const release = this.take(slot);
      let arrival: number | undefined;
      try {
        const env = await this.read.readEnvelope(slot);
        if (P.gen[slot] !== gen || !core.isLive(slot)) return;
        const expiring = this.cx.clock.now() - env.arrival >= this.cx.maxAgeOf(core.laneOf(slot));
        await this.outcomes.finish(slot, gen, env, this.read.pendingOf(slot, env), []);
        if (expiring && (P.gen[slot] !== gen || !core.isLive(slot))) n++;
        arrival = env.arrival;
      } finally {
        release();
        if (P.gen[slot] === gen && core.isLive(slot)) {
          if (arrival === undefined)
            later.push({ slot, gen }); // a read or write failed: due again soon
          else {
            // Nothing written: past delay_warning, no warning was due after all (the policy
            // changed); before it, the clock stepped back. Keyed again either way.
            if (this.cx.clock.now() - arrival >= this.cx.delayWarning) P.flags[slot]! &= ~F_WARN_PENDING;
            again.push({ slot, gen, arrival });
          }
        }
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
    for (const e of again)
      if (P.gen[e.slot] === e.gen && core.isLive(e.slot))
        this.entry(e.slot, e.gen, core.laneOf(e.slot), e.arrival);
    return n;
  }
}
