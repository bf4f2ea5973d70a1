// Held mail handed to a caller-run delivery (ATRN, RFC 2645): the held lanes of the requested
// domains as a cursor that claims the pieces of one message at a time, oldest arrival first, so
// the first message goes out at once whatever the lanes hold and memory stays flat.
// Invariants: a claimed piece stays in its lane's FIFO and is marked in flight until its job is
// finished, so no flush, claim or operator action takes it meanwhile; a job finished with nothing
// delivered leaves its piece held and writes nothing; a message split across requested domains
// is handed out once, with all those pieces. Fails: a piece whose envelope cannot be read is
// skipped (it stays held).
import type { QueueContext } from './context.js';
import type { LaneState } from './lanes/lane.js';
import type { LaneRunner } from './lanes/runner.js';
import type { Reader } from './read.js';
import type { EnvelopeRecord } from './record/records.js';
import { F_INFLIGHT, NO_SLOT } from './state/tables.js';
import type { DeliveryJob } from './types.js';

export class Claims {
  constructor(
    private readonly cx: QueueContext,
    private readonly read: Reader,
    private readonly runner: Pick<LaneRunner, 'makeJob' | 'claims'>,
  ) {}

  /**
   * Hands the live pieces of held lanes to a caller-run delivery (ATRN), oldest arrival first:
   * every piece the cursor of openHeld would give, claimed at once. Each job must be finished.
   */
  async claimHeld(domains: readonly string[]): Promise<DeliveryJob[]> {
    const cursor = this.openHeld(domains);
    const jobs: DeliveryJob[] = [];
    for (let g = await cursor.next(); g !== undefined; g = await cursor.next()) jobs.push(...g);
    return jobs;
  }

  /**
   * The held lanes of `domains` as a cursor for a caller-run delivery (ATRN): next() claims and
   * returns the pieces of one message — its live pieces in any of those lanes, so a message split
   * across requested domains is sent once — lane by lane, oldest arrival first, or undefined at
   * the end. The order is fixed when the cursor opens (typed arrays: a few bytes per piece);
   * envelopes are read a window at a time just before they are needed, and a piece is claimed
   * only when it is handed out, so the first message goes out at once whatever the lane's size,
   * and memory stays flat. Each job handed out must be finished; a job finished with nothing
   * delivered leaves its piece held, writing nothing. A claimed piece stays in its lane's FIFO
   * and is marked in flight, so no flush, claim or operator action takes it until then. Pieces
   * that change before the cursor reaches them (expired, released, claimed elsewhere) are
   * skipped; pieces that arrive after it opened wait for the next session.
   */
  openHeld(domains: readonly string[]): HeldCursor {
    const core = this.cx.core;
    const P = core.pieces;
    const inflight = (p: number) => (P.flags[p]! & F_INFLIGHT) !== 0;
    const lanes: LaneState[] = [];
    for (const d of domains) {
      const lane = core.findHeldLane(d);
      if (lane && !lanes.includes(lane)) lanes.push(lane);
    }
    const orders = lanes.map((lane) => ({ lane, ...core.heldOrder(lane, inflight), i: 0 }));
    const wanted = new Set(lanes.map((l) => l.idx));
    /** Envelopes read ahead, by slot, with the generation they were read at. */
    const ahead = new Map<number, { gen: number; env: EnvelopeRecord }>();
    let o = 0;
    const WINDOW = 64;
    const readAhead = async (): Promise<void> => {
      const cur = orders[o]!;
      const slots: number[] = [];
      for (let k = cur.i; k < cur.slots.length && slots.length < WINDOW; k++) {
        const p = cur.slots[k]!;
        if (core.isCurrentIn(cur.lane, p, cur.gens[k]!) && !inflight(p)) slots.push(p);
      }
      // The message's pieces in the other requested lanes go out with it: read them too.
      for (const p of slots.slice()) {
        for (let q = core.msgs.head[P.msg[p]!]!; q !== NO_SLOT; q = P.next[q]!) {
          if (q !== p && core.isLive(q) && wanted.has(P.lane[q]!) && !inflight(q)) slots.push(q);
        }
      }
      const gens = slots.map((p) => P.gen[p]!);
      const envs = await this.read.readEnvelopes(slots);
      slots.forEach((p, k) => {
        const env = envs.get(p);
        if (env) ahead.set(p, { gen: gens[k]!, env });
      });
    };
    const take = async (slot: number, lane: LaneState): Promise<DeliveryJob | undefined> => {
      const gen = P.gen[slot]!;
      let env = ahead.get(slot);
      ahead.delete(slot);
      if (env?.gen !== gen) {
        const e = await this.read.readEnvelope(slot).catch(() => undefined);
        if (!e || P.gen[slot] !== gen) return undefined;
        env = { gen, env: e };
      }
      if (!core.isCurrentIn(lane, slot, gen) || inflight(slot)) return undefined;
      return this.claimPiece(slot, gen, env.env, lane);
    };
    return {
      next: async () => {
        for (; o < orders.length; o++, ahead.clear()) {
          const cur = orders[o]!;
          while (cur.i < cur.slots.length) {
            const k = cur.i++;
            const slot = cur.slots[k]!;
            if (!core.isCurrentIn(cur.lane, slot, cur.gens[k]!) || inflight(slot)) continue;
            if (!ahead.has(slot)) {
              ahead.clear();
              cur.i = k;
              await readAhead();
              cur.i = k + 1;
            }
            const first = await take(slot, cur.lane);
            if (!first) continue;
            const group = [first];
            const m = P.msg[slot]!;
            for (let q = core.msgs.head[m]!; q !== NO_SLOT; q = P.next[q]!) {
              if (q === slot || !core.isLive(q) || !wanted.has(P.lane[q]!) || inflight(q)) continue;
              const j = await take(q, core.laneOf(q));
              if (j) group.push(j);
            }
            return group;
          }
        }
        return undefined;
      },
    };
  }

  /** Marks a held piece in flight for a caller-run delivery and wraps its job to release it. */
  private claimPiece(slot: number, gen: number, env: EnvelopeRecord, lane: LaneState): DeliveryJob {
    const P = this.cx.core.pieces;
    P.flags[slot]! |= F_INFLIGHT;
    let released!: () => void;
    const claim = new Promise<void>((r) => {
      released = r;
    });
    this.runner.claims.set(slot, claim);
    const release = () => {
      if (this.runner.claims.get(slot) === claim) this.runner.claims.delete(slot);
      if (P.gen[slot] === gen) P.flags[slot]! &= ~F_INFLIGHT;
      released();
    };
    const job = this.runner.makeJob(slot, gen, env, lane);
    return {
      ...job,
      record: (o) => job.record(o),
      finish: async (o) => {
        try {
          await job.finish(o);
        } finally {
          release();
        }
      },
    };
  }
}

/** Pieces of held lanes, one message at a time (Queue.openHeld). */
export interface HeldCursor {
  /** The next message's claimed pieces, or undefined when the lanes are done. */
  next(): Promise<DeliveryJob[] | undefined>;
}
