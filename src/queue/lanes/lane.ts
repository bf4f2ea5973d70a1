// The state of one lane: its segments with their live counts, and the FIFO of pieces in log
// order. A lane knows nothing of delivery; the queue's runner walks it.
// Timed lanes (`new`, retry) hand a piece out of the FIFO when it is dispatched. Held lanes (ETRN
// and ODMR domains, the operator's hold) never do: a piece stays in its held lane's FIFO until a
// record moves or ends it, so a flush, an ATRN claim or the expiry sweep always finds it.
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

/** A flush of a held lane (ETRN, probe, operator): the pieces it attempts, in arrival order. */
export interface HeldFlush {
  slots: Int32Array;
  gens: Uint32Array;
  /** Next entry to dispatch. */
  pos: number;
  /** The destination proved reachable at this time (ETRN or probe), if it did. */
  reachableSince: number | undefined;
  /** Resolved when every entry was attempted and none of the lane's deliveries is in flight. */
  waiters: Array<() => void>;
}

export class LaneState {
  readonly segs = new Map<number, SegState>();
  readonly fifo = new SlotFifo();
  /** Live pieces in the lane. */
  live = 0;
  /** Runner timer cancel function. */
  cancelTimer: (() => void) | undefined;
  timerAt = 0;
  /** Entries of the FIFO a `flushRetries` still has to visit regardless of due time (retry lanes). */
  flushLeft = 0;
  /** The flush under way (held lanes): what it still has to attempt, in arrival order. */
  flush: HeldFlush | undefined;
  /** Deliveries of this held lane's pieces in flight (a flush is over when it reaches 0). */
  flushInflight = 0;
  /** Give-up age of the lane's mail (held and hold lanes; cached by the queue). */
  maxAge: number | undefined;

  constructor(
    readonly idx: number,
    readonly name: string,
    readonly kind: LaneKind,
    readonly delay: number,
    readonly domain: string | undefined,
  ) {}

  /** A lane no timer walks (an ETRN/ODMR domain's, or the operator's hold): its pieces never leave the FIFO in flight. */
  get held(): boolean {
    return this.kind === 'held' || this.kind === 'hold';
  }

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
}
