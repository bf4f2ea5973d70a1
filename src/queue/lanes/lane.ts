// The state of one lane: its segments with their live counts, and the FIFO of pieces in log
// order. A lane knows nothing of delivery; the runner (runner.ts) walks it.
import type { LaneKind } from '../log/segment.js';
import { SlotFifo } from '../state/tables.js';

export interface SegState {
  seq: number;
  /** Live envelopes whose current record is in this segment. */
  liveEnv: number;
  /** Messages whose current data copy is in this segment. */
  liveData: number;
  liveDataBytes: number;
  /** Bytes of data records in this segment (live or not), for compaction decisions. */
  dataBytes: number;
  /** The batch whose durability made this segment garbage (0: garbage from the start). */
  emptiedAt: number;
  /** Set while being unlinked or compacted. */
  busy: boolean;
}

export class LaneState {
  readonly segs = new Map<number, SegState>();
  readonly fifo = new SlotFifo();
  /** Live pieces in the lane. */
  live = 0;
  /**
   * No live piece in the lane arrived before this (ms since epoch). Kept low on append, made
   * exact by the expiry sweep, so a held lane whose oldest mail is not yet too old is skipped
   * without a scan.
   */
  oldestArrival = Number.POSITIVE_INFINITY;
  /** Runner timer cancel function. */
  cancelTimer: (() => void) | undefined;
  timerAt = 0;
  /** Entries of the FIFO a running flush still has to visit (held lanes). */
  flushLeft = 0;
  /** Another flush was asked for while one ran. */
  flushAgain = false;
  flushWaiters: Array<() => void> = [];

  constructor(
    readonly idx: number,
    readonly name: string,
    readonly kind: LaneKind,
    readonly delay: number,
    readonly domain: string | undefined,
  ) {}

  get fifoOrdered(): boolean {
    return this.kind !== 'data';
  }

  seg(seq: number): SegState {
    let s = this.segs.get(seq);
    if (!s) {
      s = { seq, liveEnv: 0, liveData: 0, liveDataBytes: 0, dataBytes: 0, emptiedAt: 0, busy: false };
      this.segs.set(seq, s);
    }
    return s;
  }

  oldestSeq(): number | undefined {
    let min: number | undefined;
    for (const s of this.segs.keys()) if (min === undefined || s < min) min = s;
    return min;
  }
}
