// The lane runner (DESIGN.md §5, "the runner is the cleaner"): dispatches what is due in the
// `new` lane and the retry ladder, in log order — due times are monotonic in a lane, so a lane
// never searches, it sleeps until its oldest live piece is due — and runs the flushes of held
// lanes (ETRN, probes, operator), each piece once, oldest arrival first. A dispatched piece is
// marked in flight (F_INFLIGHT) until its job ends; its outcomes go to outcomes.ts.
// Invariants: nothing is dispatched before its envelope is durable (a lane waits for the batch,
// `blocked`); at most maxInflight jobs run, and a flushed held lane takes at most
// flushConcurrency of them; a piece of a timed lane whose attempt ended without any record (a
// read or write failed) is put back after limboRetryMs rather than waiting for a restart.
// Pieces a queue being replaced still delivers (a full-disk reopen) are adopted (adoption.ts):
// treated as dispatched until that job ends, their outcomes recorded here.
// Fails: a deliverer that throws defers every pending recipient with "local error".
import type { QueueContext, QueueOptions } from '../context.js';
import { Adoptions } from './adoption.js';
import type { Handover } from './handover.js';
import type { HeldFlush, LaneState } from './lane.js';
import type { Reader } from '../read.js';
import { type EnvelopeRecord, formatId } from '../record/records.js';
import { F_INFLIGHT, NO_SLOT } from '../state/tables.js';
import type { Deliverer, DeliveryJob, RcptOutcome } from '../types.js';

/** Where a job's outcomes go (outcomes.ts). */
export interface JobOutcomes {
  record(pslot: number, gen: number, env: EnvelopeRecord, outcomes: RcptOutcome[]): Promise<void>;
  finish(
    pslot: number,
    gen: number,
    env: EnvelopeRecord,
    pending: number[],
    outcomes: RcptOutcome[],
  ): Promise<void>;
}

export class LaneRunner {
  deliverer: Deliverer | undefined;
  private inflight = 0;
  private readonly maxInflight: number;
  /** Jobs the runner dispatched, by piece slot: resolved when the job has ended. */
  readonly inflightJobs = new Map<number, Promise<void>>();
  /** Held pieces handed to an ATRN session (claim.ts), by slot: resolved when their job is finished. */
  readonly claims = new Map<number, Promise<void>>();
  private readonly flushConcurrency: number;
  private readonly limboRetryMs: number;
  /**
   * Pieces of timed lanes whose attempt ended without a record (the envelope or data could not
   * be read, the outcome could not be written): they left their lane's FIFO when dispatched, so
   * they are put back after limboRetryMs rather than waiting for a restart.
   */
  private limbo: Array<{ slot: number; gen: number; lane: LaneState }> = [];
  private limboTimer: (() => void) | undefined;
  /** Lanes whose next piece waits for its batch to be durable. */
  private readonly blocked = new Set<LaneState>();
  /** `new` and retry lanes, in creation order (see pumpAll). */
  private readonly timed: LaneState[] = [];
  private timedSeen = 0;
  /** Held lanes with a flush under way. */
  private readonly flushingLanes = new Set<LaneState>();
  /** Pieces a replaced queue's jobs still deliver (adoption.ts). */
  readonly adoptions: Adoptions;
  /** Set once this queue is being replaced (handOff): outcomes go to the successor. */
  handover: Handover | undefined;

  constructor(
    private readonly cx: QueueContext,
    private readonly read: Reader,
    private readonly outcomes: JobOutcomes,
    opts: Pick<QueueOptions, 'maxInflight' | 'flushConcurrency' | 'limboRetryMs'>,
  ) {
    this.maxInflight = opts.maxInflight ?? 2000;
    this.flushConcurrency = opts.flushConcurrency ?? 64;
    this.limboRetryMs = opts.limboRetryMs ?? 30_000;
    this.adoptions = new Adoptions(cx.core, this);
  }

  /** Starts dispatching: recovered `new` pieces are attempted, retry lanes wait for their due times. */
  start(): void {
    this.cx.running = true;
    for (const lane of this.cx.core.lanes) this.pump(lane);
  }

  /** Stops dispatching and the runner's timers; a flush that cannot finish now ends (its pieces stay held). */
  halt(): void {
    this.cx.running = false;
    this.cx.stopped = true;
    this.limboTimer?.();
    this.limboTimer = undefined;
    for (const lane of this.cx.core.lanes) {
      lane.cancelTimer?.();
      // A flush that cannot finish now ends here; its pieces stay held for the next start.
      if (lane.flush) this.endFlush(lane);
    }
  }

  /** A batch became durable: the lanes that waited for it run again. */
  unblock(): void {
    if (this.blocked.size > 0) {
      const lanes = [...this.blocked];
      this.blocked.clear();
      for (const l of lanes) this.pump(l);
    }
  }

  /** Dispatches what is due in a lane (or, for a held lane, what its flush has left), up to the in-flight limit. */
  pump(lane: LaneState): void {
    if (lane.held) {
      this.pumpFlush(lane);
      return;
    }
    if (!this.cx.running || !this.deliverer || this.cx.writer.poisoned) return;
    const P = this.cx.core.pieces;
    const now = this.cx.clock.now();
    while (this.inflight < this.maxInflight && lane.fifo.length > 0) {
      const slot = lane.fifo.slotAt(0);
      const gen = lane.fifo.genAt(0);
      if (!this.cx.core.isCurrentIn(lane, slot, gen)) {
        lane.fifo.shift();
        if (lane.flushLeft > 0) lane.flushLeft--;
        continue;
      }
      if (P.batch[slot]! > this.cx.writer.durableBatch) {
        this.blocked.add(lane); // not durable yet: never deliver what could still be lost
        break;
      }
      if (lane.kind === 'retry' && lane.flushLeft <= 0 && P.due[slot]! > now) {
        // A due time further ahead than any retry delay was written under a clock that was
        // ahead and has since stepped back: it is due now (docs/queue-states.md, clock steps).
        if (P.due[slot]! > now + Math.max(lane.delay, this.cx.longestDelay)) P.due[slot] = now;
        else {
          this.schedule(lane, P.due[slot]!);
          break;
        }
      }
      if (this.adoptions.passOver(slot, gen)) {
        // A replaced queue's job delivers it: passed over as if dispatched (adoption.ts).
        lane.fifo.shift();
        if (lane.flushLeft > 0) lane.flushLeft--;
        continue;
      }
      if ((P.flags[slot]! & F_INFLIGHT) !== 0) break;
      lane.fifo.shift();
      if (lane.flushLeft > 0) lane.flushLeft--;
      this.dispatch(slot, lane);
    }
  }

  /**
   * Runs a held lane's flush: dispatches the entries of its arrival-ordered list, skipping what
   * moved on, ended or is in flight. Pieces stay in the lane's FIFO while attempted (a deferral
   * back into the lane writes nothing and leaves them where they were). The flush ends when its
   * list is done and none of the lane's deliveries is in flight.
   */
  private pumpFlush(lane: LaneState): void {
    const f = lane.flush;
    if (!f) return;
    if (this.cx.writer.poisoned || !this.deliverer) {
      // Nothing can be delivered or recorded: the flush is over (its pieces stay held).
      this.endFlush(lane);
      return;
    }
    if (!this.cx.running) return;
    const P = this.cx.core.pieces;
    while (f.pos < f.slots.length) {
      if (this.inflight >= this.maxInflight || lane.flushInflight >= this.flushConcurrency) return;
      const slot = f.slots[f.pos]!;
      if (!this.cx.core.isCurrentIn(lane, slot, f.gens[f.pos]!) || (P.flags[slot]! & F_INFLIGHT) !== 0) {
        f.pos++;
        continue;
      }
      if (P.batch[slot]! > this.cx.writer.durableBatch) {
        this.blocked.add(lane);
        return;
      }
      f.pos++;
      this.dispatch(slot, lane);
    }
    if (lane.flushInflight === 0) this.endFlush(lane);
  }

  private endFlush(lane: LaneState): void {
    const f = lane.flush;
    if (!f) return;
    lane.flush = undefined;
    this.flushingLanes.delete(lane);
    for (const w of f.waiters) w();
  }

  /**
   * Pumps the lanes that can make progress: held lanes being flushed first (a customer asked
   * for them; each takes at most flushConcurrency of the in-flight slots), then `new` and the
   * retry ladder. Held lanes (one per ETRN/ODMR domain, possibly many thousands) are never
   * walked otherwise, so the cost of a finished job does not grow with the number of domains.
   */
  private pumpAll(): void {
    for (const lane of this.flushingLanes) {
      if (this.inflight >= this.maxInflight) return;
      this.pump(lane);
    }
    const lanes = this.cx.core.lanes;
    for (; this.timedSeen < lanes.length; this.timedSeen++) {
      const l = lanes[this.timedSeen]!;
      if (l.kind === 'new' || l.kind === 'retry') this.timed.push(l);
    }
    for (const lane of this.timed) {
      if (this.inflight >= this.maxInflight) return;
      this.pump(lane);
    }
  }

  private schedule(lane: LaneState, at: number): void {
    if (lane.cancelTimer && lane.timerAt <= at) return;
    lane.cancelTimer?.();
    lane.timerAt = at;
    lane.cancelTimer = this.cx.clock.setTimer(at - this.cx.clock.now(), () => {
      lane.cancelTimer = undefined;
      this.pump(lane);
    });
  }

  private dispatch(pslot: number, lane: LaneState): void {
    const P = this.cx.core.pieces;
    P.flags[pslot]! |= F_INFLIGHT;
    this.inflight++;
    if (lane.held) lane.flushInflight++;
    const gen = P.gen[pslot]!;
    const m = P.msg[pslot]!;
    const msgId = this.cx.core.msgs.head[m] === NO_SLOT ? undefined : this.cx.core.msgs.id[m];
    const run = (async () => {
      const fresh = this.cx.fresh.env.get(pslot);
      this.cx.fresh.env.delete(pslot);
      const env = fresh && fresh.gen === gen ? fresh.rec : await this.read.readEnvelope(pslot);
      if (P.gen[pslot] !== gen) return;
      const job = this.makeJob(pslot, gen, env, lane);
      try {
        await this.deliverer!(job);
      } catch (e) {
        // A deliverer that throws has not told us anything: everything pending is deferred.
        const text = e instanceof Error ? e.message : String(e);
        await job
          .finish(
            job.pending.map((r) => ({ rcpt: r, status: 'deferred' as const, text: `local error: ${text}` })),
          )
          .catch(() => {});
      }
    })();
    this.inflightJobs.set(pslot, run);
    run
      .catch(() => {})
      .finally(() => {
        this.inflight--;
        if (lane.held) lane.flushInflight--;
        if (this.inflightJobs.get(pslot) === run) this.inflightJobs.delete(pslot);
        if (P.gen[pslot] === gen) {
          P.flags[pslot]! &= ~F_INFLIGHT;
          // Still the same version in a timed lane: the attempt ended without any record (a read
          // or write failed), and the piece left its FIFO when dispatched. Put it back later.
          if (!lane.held && this.cx.core.isLive(pslot)) this.toLimbo(pslot, gen, lane);
        }
        // After the first attempt the data is read from disk: memory holds only mail in flight.
        if (msgId !== undefined) this.cx.fresh.drop(msgId);
        this.pumpAll();
      });
  }

  /** Puts a timed lane's piece back into its FIFO after limboRetryMs (see the class comment). */
  toLimbo(slot: number, gen: number, lane: LaneState): void {
    this.limbo.push({ slot, gen, lane });
    if (this.limboTimer || !this.cx.running) return;
    this.limboTimer = this.cx.clock.setTimer(this.limboRetryMs, () => {
      this.limboTimer = undefined;
      const list = this.limbo;
      this.limbo = [];
      const lanes = new Set<LaneState>();
      for (const { slot, gen, lane } of list) {
        if (!this.cx.core.isCurrentIn(lane, slot, gen)) continue;
        if ((this.cx.core.pieces.flags[slot]! & F_INFLIGHT) !== 0) continue;
        lane.fifo.push(slot, gen);
        lanes.add(lane);
      }
      for (const l of lanes) this.pump(l);
    });
  }

  makeJob(pslot: number, gen: number, env: EnvelopeRecord, lane: LaneState): DeliveryJob {
    const P = this.cx.core.pieces;
    const done = this.cx.core.deltas.get(pslot);
    const pending: number[] = [];
    for (let i = 0; i < env.info.recipients.length; i++) if (!done?.has(i)) pending.push(i);
    const mslot = P.msg[pslot]!;
    const job: DeliveryJob = {
      id: formatId(env.msgId),
      msgId: env.msgId,
      piece: env.piece,
      version: env.version,
      lane: lane.name,
      laneKind: lane.kind,
      envelope: env,
      attempts: this.read.attemptsOf(pslot, env),
      pending,
      data: () => this.read.readDataParts(mslot, env.msgId),
      stream: () => this.read.dataStream(mslot, env.msgId),
      record: (outcomes) =>
        this.outcome(
          () => this.outcomes.record(pslot, gen, env, outcomes),
          (h) => h.forward(env, outcomes, false),
        ),
      finish: (outcomes) =>
        this.outcome(
          () => this.outcomes.finish(pslot, gen, env, pending, outcomes),
          (h) => h.forward(env, outcomes, true),
        ),
    };
    const f = lane.flush;
    if (f) job.flush = f.reachableSince !== undefined ? { reachableSince: f.reachableSince } : {};
    return job;
  }

  /**
   * Records an outcome here, or, once this queue is being replaced (its writer refuses), in its
   * successor: an outcome whose batch was refused by the fault that replaced the queue is sent
   * on too (the refused batch is cut: nothing of it stays).
   */
  private async outcome(here: () => Promise<void>, there: (h: Handover) => Promise<void>): Promise<void> {
    if (this.handover === undefined) {
      try {
        return await here();
      } catch (e) {
        if (this.handover === undefined) throw e;
      }
    }
    return there(this.handover);
  }

  /**
   * Marks a piece in flight for work that is not a delivery (expiry, an operator action), so no
   * flush, claim or lane runner starts on it meanwhile. The returned function ends that: the
   * mark goes (unless the piece changed version, which clears it anyway) and its lane runs again.
   */
  take(slot: number): () => void {
    const P = this.cx.core.pieces;
    const gen = P.gen[slot]!;
    const lane = this.cx.core.laneOf(slot);
    P.flags[slot]! |= F_INFLIGHT;
    return () => {
      if (P.gen[slot] === gen) P.flags[slot]! &= ~F_INFLIGHT;
      this.pump(lane);
    };
  }

  /** Attempts every piece of the retry ladder now (like `postqueue -f`). Returns how many. */
  flushRetries(): number {
    let n = 0;
    for (const lane of this.cx.core.lanes) {
      if (lane.kind !== 'retry') continue;
      lane.flushLeft = lane.fifo.length;
      n += lane.live;
      this.pump(lane);
    }
    return n;
  }

  /**
   * Delivers a held lane through the normal deliverer (ETRN, probe, operator): every piece in the
   * lane that no delivery holds right now, oldest arrival first. Resolves when each has been
   * attempted and none of the lane's deliveries is in flight; returns how many it set out to
   * attempt. A second call while a flush runs starts over from what is left (what the first has
   * not reached, and what it deferred back). `reachableSince`: the destination proved reachable
   * then (an ETRN or a successful probe), so the deliveries ignore dead-host marks older than it.
   */
  async flushHeld(domain: string, opts: { reachableSince?: number } = {}): Promise<number> {
    const lane = this.cx.core.findHeldLane(domain);
    if (!lane || lane.live === 0 || this.cx.stopped) return 0;
    const P = this.cx.core.pieces;
    const { slots, gens } = this.cx.core.heldOrder(lane, (p) => (P.flags[p]! & F_INFLIGHT) !== 0);
    const prev = lane.flush;
    let since = opts.reachableSince;
    if (prev?.reachableSince !== undefined && (since === undefined || prev.reachableSince > since))
      since = prev.reachableSince;
    const flush: HeldFlush = { slots, gens, pos: 0, reachableSince: since, waiters: prev?.waiters ?? [] };
    lane.flush = flush;
    this.flushingLanes.add(lane);
    const done = new Promise<void>((resolve) => flush.waiters.push(resolve));
    this.pump(lane);
    await done;
    return slots.length;
  }
}
