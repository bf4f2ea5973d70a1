// The successor's side of a handover (handover.ts): pieces that a queue being replaced (a
// full-disk reopen) still delivers, adopted by the reopened queue's runner. Each adopted piece
// is marked in flight (F_INFLIGHT) until the old job ends, so no lane runner, flush, ATRN
// session, expiry or operator action takes it meanwhile; the outcomes that job reports are
// recorded here as if a job of this queue had reported them.
// Invariant: a piece is adopted only at the version the old job delivers; an outcome for a
// piece that is not adopted, or has changed since, is stale and dropped (the piece moved on).
// A piece whose old job ended without an outcome is attempted again: a timed lane's piece that
// was passed over goes to limbo (runner.ts), a held one is simply still in its lane.
import type { DeliveryJob, RcptOutcome } from '../types.js';
import type { EnvelopeRecord } from '../record/records.js';
import type { QueueCore } from '../core.js';
import { F_INFLIGHT, NO_SLOT } from '../state/tables.js';
import type { InFlight, Successor } from './handover.js';
import type { LaneState } from './lane.js';

/** What the adoption needs of the lane runner (runner.ts). */
export interface AdoptionHost {
  readonly inflightJobs: Map<number, Promise<void>>;
  readonly claims: Map<number, Promise<void>>;
  toLimbo(slot: number, gen: number, lane: LaneState): void;
  pump(lane: LaneState): void;
  makeJob(pslot: number, gen: number, env: EnvelopeRecord, lane: LaneState): DeliveryJob;
}

export class Adoptions implements Successor {
  /**
   * Adopted pieces by slot, with the generation adopted; `shifted` once a timed lane's runner
   * passed over it (it left the FIFO, as if dispatched).
   */
  private readonly adopted = new Map<number, { gen: number; shifted: boolean }>();

  constructor(
    private readonly core: QueueCore,
    private readonly host: AdoptionHost,
  ) {}

  /** A timed lane's runner met this piece: true if a replaced queue's job delivers it (skip it). */
  passOver(slot: number, gen: number): boolean {
    const a = this.adopted.get(slot);
    if (a === undefined || a.gen !== gen) return false;
    a.shifted = true;
    return true;
  }

  /** What this queue has in flight (its jobs, its ATRN claims), for a successor to adopt. */
  inflightList(): InFlight[] {
    const core = this.core;
    const P = core.pieces;
    const list: InFlight[] = [];
    for (const [map, claim] of [
      [this.host.inflightJobs, false],
      [this.host.claims, true],
    ] as const) {
      for (const [slot, settled] of map) {
        list.push({
          msgId: core.msgs.id[P.msg[slot]!]!,
          piece: P.piece[slot]!,
          version: P.version[slot]!,
          claim,
          settled,
        });
      }
    }
    return list;
  }

  /**
   * Takes over pieces a replaced queue's jobs still deliver (call before start): each piece this
   * queue has at the same version is in flight until that job ends, and its outcomes come
   * through forwarded().
   */
  adopt(list: readonly InFlight[]): void {
    const core = this.core;
    const P = core.pieces;
    for (const f of list) {
      const m = core.msgs.byId.get(f.msgId);
      const slot = m === undefined ? NO_SLOT : core.pieceOf(m, f.piece);
      if (slot === NO_SLOT || !core.isLive(slot) || P.version[slot] !== f.version) continue;
      const gen = P.gen[slot]!;
      const lane = core.laneOf(slot);
      const entry = { gen, shifted: false };
      P.flags[slot]! |= F_INFLIGHT;
      this.adopted.set(slot, entry);
      // Operator actions and stop() wait for these maps' promises, as for the runner's own jobs.
      const map = f.claim || lane.held ? this.host.claims : this.host.inflightJobs;
      const done: Promise<void> = f.settled
        .catch(() => {})
        .then(() => {
          if (this.adopted.get(slot) === entry) this.adopted.delete(slot);
          if (map.get(slot) === done) map.delete(slot);
          if (P.gen[slot] !== gen) return;
          P.flags[slot]! &= ~F_INFLIGHT;
          if (entry.shifted && !lane.held && core.isLive(slot)) this.host.toLimbo(slot, gen, lane);
          else this.host.pump(lane);
        });
      map.set(slot, done);
    }
  }

  /** An outcome a replaced queue's job reported for an adopted piece. */
  async forwarded(env: EnvelopeRecord, outcomes: RcptOutcome[], final: boolean): Promise<void> {
    const core = this.core;
    const m = core.msgs.byId.get(env.msgId);
    const slot = m === undefined ? NO_SLOT : core.pieceOf(m, env.piece);
    const a = slot === NO_SLOT ? undefined : this.adopted.get(slot);
    // Not adopted (the piece had moved on when this queue opened) or changed since: stale.
    if (a === undefined || core.pieces.gen[slot] !== a.gen) return;
    const job = this.host.makeJob(slot, a.gen, env, core.laneOf(slot));
    await (final ? job.finish(outcomes) : job.record(outcomes));
  }
}
