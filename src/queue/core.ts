// The queue's index mutations, kept in one place so every change to a piece or a message
// appends its record and updates the counts that decide when a segment is garbage.
//
// Invariants (docs/queue-states.md):
// - The index reflects every appended record; a segment may be unlinked only when the batch
//   that made it garbage is durable (`emptiedAt <= writer.durableBatch`).
// - A record that ends an envelope (Done, Delta) is appended to the lane of that envelope,
//   later in the log, so lane-ordered (oldest-first) unlinking never keeps a kill without its
//   victim... and never drops a kill while its victim survives.
// - Envelopes outside the `new` lane reference data in the `data` lane (or in `new`, only while
//   a piece still lives in `new`): data relocation happens before such a move.
// - Every data record a live message (or a spool still receiving) relies on counts in its
//   segment's `liveData`, chunk records of streamed data included (an empty last chunk too: it
//   is what makes the data complete for recovery), so no such segment is ever unlinked.
// Size (over 400 lines): every index mutation is kept with its record on purpose, so no change to
// the index can forget the garbage counts.
import {
  CHUNK_PREFIX,
  DATA_PREFIX,
  encodeChunkPrefix,
  encodeDataPrefix,
  encodeDelta,
  encodeDone,
  ENV_WARN_PENDING,
  encodeEnvelope,
  type EnvelopeRecord,
  RT_CHUNK,
  RT_DATA,
  RT_DELTA,
  RT_DONE,
  RT_ENVELOPE,
  type DeltaRecord,
} from './record/records.js';
import { FRAME_HEADER } from './record/frame.js';
import { heldLaneName, heldLaneNameOf, parseLaneName, retryLaneName } from './log/segment.js';
import type { GroupWriter, Phase } from './log/writer.js';
import { LaneState } from './lanes/lane.js';
import { chunkStep, keepsCopy } from './log/lane-scan.js';
import { Facets } from './state/facets.js';
import { F_WARN_PENDING, F_LIVE, MessageTable, NO_SLOT, PieceTable, UNPLACED } from './state/tables.js';

/** One data record of a message written in chunks: where its bytes are in a segment file. */
export interface Extent {
  seq: number;
  /** Offset of the chunk's bytes (after frame header and chunk prefix) in the segment file. */
  off: number;
  len: number;
}

/** The data of a message stored as chunk records (in message order), all in one lane. */
export interface ChunkedData {
  lane: LaneState;
  extents: Extent[];
}

/** Recovery: chunk records of one copy of a message's data seen so far, not yet ended by its last. */
interface ChunkCandidate {
  lane: LaneState;
  extents: Extent[];
  next: number;
}

export class QueueCore {
  readonly msgs = new MessageTable();
  readonly pieces = new PieceTable();
  /** Recipient domains and senders of the pieces, for inspection (state/facets.ts). */
  readonly facets = new Facets(this.pieces);
  readonly lanes: LaneState[] = [];
  private readonly laneByName = new Map<string, LaneState>();
  /**
   * Recipients with a final outcome in the current version of a piece, with that outcome
   * (OUTCOME_DELIVERED / OUTCOME_FAILED); only pieces that have deltas are present.
   */
  readonly deltas = new Map<number, Map<number, number>>();
  /**
   * Attempts of a held piece that wrote nothing (a deferral back into its own held lane), since
   * its current envelope was written: the true attempt count is the envelope's plus this. Kept
   * in memory only (docs/queue-states.md, "Held lanes"); a new version folds it in.
   */
  readonly unwritten = new Map<number, { attempts: number; last: string; at: number }>();
  /** Told when a piece becomes current in a held or hold lane (the expiry index). */
  onHeldEntry: ((pslot: number, gen: number, lane: LaneState, arrival: number) => void) | undefined;
  /**
   * Whether an envelope about to be written has a delay warning pending (wanted by a recipient,
   * not sent): the report policy's answer, set by outcomes.ts. Written as the envelope's flag, so
   * recovery knows it without reading the JSON.
   */
  warnPending: (rec: EnvelopeRecord) => boolean = () => false;
  /**
   * For an envelope body an older logmta wrote (no flag byte, records.ts ENV_UNFLAGGED), found by
   * recovery in a held lane: whether a delay warning may be pending, judged from its bytes without
   * parsing them. Set by outcomes.ts; a yes is decided at the warning deadline (expire.ts).
   */
  unflaggedWarnPending: (body: Buffer) => boolean = () => false;
  /**
   * Messages whose data is stored as chunk records, by message slot; for them the message row's
   * data columns hold the lane, the first extent and the total length.
   */
  readonly chunked = new Map<number, ChunkedData>();
  /**
   * Messages whose data was just moved to a new copy by a batch not yet durable (message slot →
   * that batch): positions are assigned when a batch is sealed, before its I/O, so a read of the
   * copy must wait for the batch (read.ts). First placements need no entry: until the accept is
   * durable nothing reads them from the log. Entries of durable batches go (forgetDurable).
   */
  readonly dataMoving = new Map<number, number>();
  /** Recovery only: incomplete copies of chunked data, by message slot. */
  private readonly candidates = new Map<number, ChunkCandidate>();
  private readonly dirty = new Set<LaneState>();
  /** During recovery, dead pieces keep their rows (their version still matters) and nothing is appended. */
  recovering = false;

  constructor(readonly writer: GroupWriter) {}

  lane(name: string): LaneState {
    let l = this.laneByName.get(name);
    if (!l) {
      const p = parseLaneName(name);
      if (!p) throw new RangeError(`not a lane name: ${name}`);
      l = new LaneState(this.lanes.length, name, p.kind, p.delay ?? 0, p.domain);
      this.lanes.push(l);
      this.laneByName.set(name, l);
    }
    return l;
  }

  findLane(name: string): LaneState | undefined {
    return this.laneByName.get(name);
  }

  /** A domain's held lane if it exists (undefined also for what is not a domain: never throws). */
  findHeldLane(domain: string): LaneState | undefined {
    const name = heldLaneNameOf(domain);
    return name === undefined ? undefined : this.laneByName.get(name);
  }

  newLane(): LaneState {
    return this.lane('new');
  }

  dataLane(): LaneState {
    return this.lane('data');
  }

  retryLane(delayMs: number): LaneState {
    return this.lane(retryLaneName(delayMs));
  }

  heldLane(domain: string): LaneState {
    return this.lane(heldLaneName(domain));
  }

  // --- messages and pieces

  newMessage(id: number, arrival: number): number {
    return this.msgs.alloc(id, arrival);
  }

  pieceOf(mslot: number, pieceNo: number): number {
    for (let p = this.msgs.head[mslot]!; p !== NO_SLOT; p = this.pieces.next[p]!) {
      if (this.pieces.piece[p] === pieceNo) return p;
    }
    return NO_SLOT;
  }

  addPiece(mslot: number, pieceNo: number): number {
    const p = this.pieces.alloc();
    this.pieces.msg[p] = mslot;
    this.pieces.piece[p] = pieceNo;
    this.pieces.version[p] = 0;
    this.pieces.next[p] = this.msgs.head[mslot]!;
    this.msgs.head[mslot] = p;
    if (pieceNo >= this.msgs.nextPieceNo[mslot]!) this.msgs.nextPieceNo[mslot] = pieceNo + 1;
    return p;
  }

  piecesOf(mslot: number): number[] {
    const out: number[] = [];
    for (let p = this.msgs.head[mslot]!; p !== NO_SLOT; p = this.pieces.next[p]!) out.push(p);
    return out;
  }

  /** Whether the FIFO entry (slot, gen) is the current envelope of a live piece in `lane`. */
  isCurrentIn(lane: LaneState, pslot: number, gen: number): boolean {
    const P = this.pieces;
    return P.gen[pslot] === gen && (P.flags[pslot]! & F_LIVE) !== 0 && P.lane[pslot] === lane.idx;
  }

  /** Drops the stale entries of a lane's FIFO. */
  compactFifo(lane: LaneState): void {
    lane.fifo.compact((slot, gen) => this.isCurrentIn(lane, slot, gen));
  }

  /**
   * The live pieces of a held lane, oldest arrival first (log order among equals): the order in
   * which flushes and ATRN sessions offer them. `skip` leaves pieces out (those in flight).
   */
  heldOrder(lane: LaneState, skip: (pslot: number) => boolean): { slots: Int32Array; gens: Uint32Array } {
    const f = lane.fifo;
    const idx: number[] = [];
    for (let i = 0; i < f.length; i++) {
      const slot = f.slotAt(i);
      if (this.isCurrentIn(lane, slot, f.genAt(i)) && !skip(slot)) idx.push(i);
    }
    const arrival = this.msgs.arrival;
    const msg = this.pieces.msg;
    const at = (i: number) => arrival[msg[f.slotAt(i)]!]!;
    idx.sort((a, b) => at(a) - at(b) || a - b);
    const slots = new Int32Array(idx.length);
    const gens = new Uint32Array(idx.length);
    for (let k = 0; k < idx.length; k++) {
      slots[k] = f.slotAt(idx[k]!);
      gens[k] = f.genAt(idx[k]!);
    }
    return { slots, gens };
  }

  isLive(pslot: number): boolean {
    return (this.pieces.flags[pslot]! & F_LIVE) !== 0;
  }

  laneOf(pslot: number): LaneState {
    return this.lanes[this.pieces.lane[pslot]!]!;
  }

  // --- appends

  /**
   * Makes `rec` the current envelope of piece `pslot`, in `lane`. A previous version stops
   * counting in its segment now; its kill record is the caller's to append (phase 3 for a move).
   */
  putEnvelope(pslot: number, lane: LaneState, rec: EnvelopeRecord, phase: Phase = 1): void {
    const P = this.pieces;
    const pending = this.warnPending(rec);
    const gen = this.makeCurrent(pslot, lane, rec, UNPLACED, this.writer.nextBatch, pending);
    this.facets.set(pslot, rec);
    const body = encodeEnvelope(rec, pending ? ENV_WARN_PENDING : 0);
    this.writer.append(lane.name, RT_ENVELOPE, [body], phase, (seq, off) => {
      if (P.gen[pslot] !== gen) return; // superseded before it was even placed
      P.seq[pslot] = seq;
      P.off[pslot] = off;
      P.len[pslot] = FRAME_HEADER + body.length;
      lane.seg(seq).liveEnv++;
    });
  }

  /** Registers an envelope found by recovery (no append); `flags` are its ENV_ flags (records.ts). */
  adoptEnvelope(
    pslot: number,
    lane: LaneState,
    rec: { version: number; due: number; arrival: number; rcptCount: number },
    seq: number,
    off: number,
    len: number,
    flags = 0,
  ): void {
    this.makeCurrent(pslot, lane, rec, seq, 0, (flags & ENV_WARN_PENDING) !== 0);
    this.facets.forget(pslot);
    this.pieces.off[pslot] = off;
    this.pieces.len[pslot] = len;
    lane.seg(seq).liveEnv++;
  }

  /**
   * The part of putEnvelope and adoptEnvelope that makes a version current: the previous
   * version stops counting, the row takes the new values and a new generation, and the piece
   * joins the lane's FIFO. Returns the new generation.
   */
  private makeCurrent(
    pslot: number,
    lane: LaneState,
    rec: { version: number; due: number; arrival: number; rcptCount: number },
    seq: number,
    batch: number,
    warnPending: boolean,
  ): number {
    const P = this.pieces;
    if (this.isLive(pslot)) this.unaccountEnvelope(pslot);
    else this.msgs.refs[P.msg[pslot]!]!++;
    P.version[pslot] = rec.version;
    P.lane[pslot] = lane.idx;
    P.due[pslot] = rec.due;
    P.flags[pslot] = warnPending ? F_LIVE | F_WARN_PENDING : F_LIVE;
    P.seq[pslot] = seq;
    P.batch[pslot] = batch;
    const gen = (P.gen[pslot] = (P.gen[pslot]! + 1) >>> 0);
    this.deltas.delete(pslot);
    this.unwritten.delete(pslot);
    lane.fifo.push(pslot, gen);
    lane.live++;
    if (lane.held) {
      // Held FIFOs keep their pieces while they are attempted, so stale entries (pieces that
      // moved on or ended) are dropped here once they outnumber the live ones.
      if (lane.fifo.length > 2 * lane.live + 64) this.compactFifo(lane);
      this.onHeldEntry?.(pslot, gen, lane, rec.arrival);
    }
    return gen;
  }

  private unaccountEnvelope(pslot: number): void {
    const P = this.pieces;
    const lane = this.laneOf(pslot);
    lane.live--;
    const seq = P.seq[pslot]!;
    if (seq !== UNPLACED) {
      const s = lane.seg(seq);
      s.liveEnv--;
      this.checkEmpty(lane, s.seq);
    }
  }

  /** Appends a Done for the piece's current version and drops it; frees data with the last piece. */
  killPiece(pslot: number, reason: number, phase: Phase, append = true): void {
    const P = this.pieces;
    if (!this.isLive(pslot)) return;
    const mslot = P.msg[pslot]!;
    const lane = this.laneOf(pslot);
    if (append) {
      this.writer.append(
        lane.name,
        RT_DONE,
        [
          encodeDone({
            msgId: this.msgs.id[mslot]!,
            piece: P.piece[pslot]!,
            version: P.version[pslot]!,
            reason,
          }),
        ],
        phase,
      );
    }
    this.unaccountEnvelope(pslot);
    this.deltas.delete(pslot);
    this.unwritten.delete(pslot);
    if (this.recovering) {
      P.flags[pslot] = 0;
      P.gen[pslot] = (P.gen[pslot]! + 1) >>> 0;
      this.msgs.refs[mslot]!--;
      return;
    }
    this.releaseDeadPiece(pslot);
    const refs = --this.msgs.refs[mslot]!;
    if (refs === 0 && this.msgs.head[mslot] === NO_SLOT) this.dropMessage(mslot);
  }

  /** Unlinks a dead piece row from its message's list and frees it (also used after recovery). */
  releaseDeadPiece(pslot: number): void {
    const P = this.pieces;
    const mslot = P.msg[pslot]!;
    let prev = NO_SLOT;
    for (let p = this.msgs.head[mslot]!; p !== NO_SLOT; p = P.next[p]!) {
      if (p === pslot) {
        if (prev === NO_SLOT) this.msgs.head[mslot] = P.next[p]!;
        else P.next[prev] = P.next[p]!;
        break;
      }
      prev = p;
    }
    this.facets.multi.delete(pslot);
    P.release(pslot);
  }

  /** Frees a message row and stops counting its data. */
  dropMessage(mslot: number): void {
    this.dataMoving.delete(mslot);
    this.unaccountData(mslot);
    this.msgs.release(mslot);
  }

  private unaccountData(mslot: number): void {
    const M = this.msgs;
    const seq = M.dataSeq[mslot]!;
    if (seq === UNPLACED) return;
    const c = this.chunked.get(mslot);
    if (c) {
      this.chunked.delete(mslot);
      M.dataSeq[mslot] = UNPLACED;
      for (const e of c.extents) this.unpinExtent(c.lane, e.seq, e.len);
      return;
    }
    const lane = this.lanes[M.dataLane[mslot]!]!;
    const s = lane.seg(seq);
    s.liveData--;
    s.liveDataBytes -= M.dataLen[mslot]!;
    M.dataSeq[mslot] = UNPLACED;
    this.checkEmpty(lane, seq);
  }

  /** Appends the message's data to `lane`; the location switches when the record is placed. */
  putData(mslot: number, lane: LaneState, chunks: readonly Buffer[], len: number): void {
    const M = this.msgs;
    const id = M.id[mslot]!;
    this.writer.append(lane.name, RT_DATA, [encodeDataPrefix(id), ...chunks], 1, (seq, off) => {
      const s = lane.seg(seq);
      s.dataBytes += len;
      if (M.id[mslot] !== id) return; // message finished before placement
      if (M.dataSeq[mslot] !== UNPLACED) {
        this.unaccountData(mslot);
        this.dataMoving.set(mslot, this.writer.nextBatch); // inside onPlaced: the batch being sealed
      }
      M.dataLane[mslot] = lane.idx;
      M.dataSeq[mslot] = seq;
      M.dataOff[mslot] = off + FRAME_HEADER + DATA_PREFIX;
      M.dataLen[mslot] = len;
      s.liveData++;
      s.liveDataBytes += len;
    });
  }

  /**
   * Appends one chunk record of streamed data to `lane` (always `data`). The chunk counts as live
   * data in its segment from placement on (`onPlaced` gets its extent), so the segment outlives
   * the stream; whoever holds the extent later unpins it (unpinExtent, or via the message).
   */
  appendChunk(
    lane: LaneState,
    msgId: number,
    offset: number,
    last: boolean,
    bytes: readonly Buffer[],
    len: number,
    onPlaced: (e: Extent) => void,
  ): void {
    this.writer.append(
      lane.name,
      RT_CHUNK,
      [encodeChunkPrefix(msgId, offset, last), ...bytes],
      1,
      (seq, off) => {
        const s = lane.seg(seq);
        s.dataBytes += len;
        s.liveData++;
        s.liveDataBytes += len;
        onPlaced({ seq, off: off + FRAME_HEADER + CHUNK_PREFIX, len });
      },
    );
  }

  /** Stops counting one pinned extent; its segment may become garbage. */
  unpinExtent(lane: LaneState, seq: number, len: number): void {
    const s = lane.segs.get(seq);
    if (!s) return;
    s.liveData--;
    s.liveDataBytes -= len;
    this.checkEmpty(lane, seq);
  }

  /**
   * Makes complete chunked data (extents already pinned by appendChunk) the message's data; the
   * copy it replaces stops counting. If the message is gone, the extents are released.
   */
  setChunked(mslot: number, msgId: number, lane: LaneState, extents: Extent[]): void {
    const M = this.msgs;
    if (M.id[mslot] !== msgId) {
      for (const e of extents) this.unpinExtent(lane, e.seq, e.len);
      return;
    }
    if (M.dataSeq[mslot] !== UNPLACED) {
      this.unaccountData(mslot);
      this.dataMoving.set(mslot, this.writer.nextBatch);
    }
    this.placeChunked(mslot, lane, extents);
  }

  /** Whether the message's data copy may not be in its file yet (a move in a batch not durable). */
  dataUnwritten(mslot: number): boolean {
    const b = this.dataMoving.get(mslot);
    return b !== undefined && b > this.writer.durableBatch && this.writer.poisoned === undefined;
  }

  /** Drops the entries of dataMoving that `batch` (now durable) and the batches before it cover. */
  forgetDurable(batch: number): void {
    if (this.dataMoving.size === 0) return;
    for (const [m, b] of this.dataMoving) if (b <= batch) this.dataMoving.delete(m);
  }

  private placeChunked(mslot: number, lane: LaneState, extents: Extent[]): void {
    const M = this.msgs;
    let len = 0;
    for (const e of extents) len += e.len;
    this.chunked.set(mslot, { lane, extents });
    M.dataLane[mslot] = lane.idx;
    M.dataSeq[mslot] = extents[0]!.seq;
    M.dataOff[mslot] = extents[0]!.off;
    M.dataLen[mslot] = len;
  }

  /**
   * Where the message data at offset `pos` is: lane, segment, file offset and up to `max` bytes
   * that are contiguous there (within one record). The data must be placed.
   */
  dataAt(mslot: number, pos: number, max: number): { lane: string; seq: number; off: number; len: number } {
    const M = this.msgs;
    const c = this.chunked.get(mslot);
    if (!c) {
      const lane = this.lanes[M.dataLane[mslot]!]!;
      return {
        lane: lane.name,
        seq: M.dataSeq[mslot]!,
        off: M.dataOff[mslot]! + pos,
        len: Math.min(max, M.dataLen[mslot]! - pos),
      };
    }
    let start = 0;
    for (const e of c.extents) {
      if (pos < start + e.len) {
        const within = pos - start;
        return { lane: c.lane.name, seq: e.seq, off: e.off + within, len: Math.min(max, e.len - within) };
      }
      start += e.len;
    }
    throw new RangeError(`offset ${pos} is past the end of the data (${start} bytes)`);
  }

  /** Registers data found by recovery; prefers the data lane, then the later copy. */
  adoptData(mslot: number, lane: LaneState, seq: number, payloadOff: number, len: number): void {
    const M = this.msgs;
    lane.seg(seq).dataBytes += len;
    if (!this.adoptable(mslot, lane)) return;
    this.chunked.delete(mslot);
    M.dataLane[mslot] = lane.idx;
    M.dataSeq[mslot] = seq;
    M.dataOff[mslot] = payloadOff;
    M.dataLen[mslot] = len;
  }

  /** Recovery keeps the data copy in the data lane, else the later copy in the same lane. */
  private adoptable(mslot: number, lane: LaneState): boolean {
    const M = this.msgs;
    // Lanes are scanned one after the other, segments in log order (log/lane-scan.ts keepsCopy).
    const cur = M.dataSeq[mslot] === UNPLACED ? undefined : this.lanes[M.dataLane[mslot]!]!;
    return keepsCopy(cur?.idx, cur?.kind === 'data', lane.idx, lane.kind === 'data');
  }

  /**
   * Registers a chunk record found by recovery. A chunk at offset 0 starts a copy; one that
   * continues the copy in progress (same lane, the next offset) extends it; the last chunk makes
   * the copy complete, and a complete copy is adopted like a data record. Anything else is a
   * remnant of a copy whose other chunks are gone (an abandoned stream, a freed segment): every
   * copy holds the same bytes, so only the offsets matter.
   */
  adoptChunk(
    mslot: number,
    lane: LaneState,
    seq: number,
    payloadOff: number,
    len: number,
    offset: number,
    last: boolean,
  ): void {
    lane.seg(seq).dataBytes += len;
    let c = this.candidates.get(mslot);
    const step = chunkStep(c?.lane.idx, c?.next ?? 0, lane.idx, offset);
    if (step === 'remnant') return;
    if (step === 'start') {
      c = { lane, extents: [], next: 0 };
      this.candidates.set(mslot, c);
    }
    if (!c) return;
    c.extents.push({ seq, off: payloadOff, len });
    c.next += len;
    if (!last) return;
    this.candidates.delete(mslot);
    if (this.adoptable(mslot, lane)) this.placeChunked(mslot, lane, c.extents);
  }

  /** Recovery: whether chunks of an incomplete copy were seen for the message (orphan data). */
  hasPartialChunks(mslot: number): boolean {
    return this.candidates.has(mslot);
  }

  /** Recovery, at the end: forgets incomplete copies and chunked data of dropped messages. */
  forgetRecoveryData(mslot: number): void {
    this.candidates.delete(mslot);
    this.chunked.delete(mslot);
  }

  /** Counts adopted data in its segment(s) once recovery knows the message is live. */
  accountAdoptedData(mslot: number): void {
    const M = this.msgs;
    this.candidates.delete(mslot);
    if (M.dataSeq[mslot] === UNPLACED) return;
    const c = this.chunked.get(mslot);
    if (c) {
      for (const e of c.extents) {
        const s = c.lane.seg(e.seq);
        s.liveData++;
        s.liveDataBytes += e.len;
      }
      return;
    }
    const s = this.lanes[M.dataLane[mslot]!]!.seg(M.dataSeq[mslot]!);
    s.liveData++;
    s.liveDataBytes += M.dataLen[mslot]!;
  }

  /** Appends a Done for an older version of a piece that lives on (it moved). */
  appendDone(
    laneName: string,
    msgId: number,
    piece: number,
    version: number,
    reason: number,
    phase: Phase,
  ): void {
    this.writer.append(laneName, RT_DONE, [encodeDone({ msgId, piece, version, reason })], phase);
  }

  putDelta(pslot: number, d: Omit<DeltaRecord, 'msgId' | 'piece' | 'version'>, phase: Phase = 1): void {
    const P = this.pieces;
    const lane = this.laneOf(pslot);
    this.writer.append(
      lane.name,
      RT_DELTA,
      [
        encodeDelta({
          msgId: this.msgs.id[P.msg[pslot]!]!,
          piece: P.piece[pslot]!,
          version: P.version[pslot]!,
          ...d,
        }),
      ],
      phase,
    );
    this.applyDelta(pslot, d.rcpt, d.outcome);
  }

  applyDelta(pslot: number, rcpt: number, outcome: number): void {
    let done = this.deltas.get(pslot);
    if (!done) {
      done = new Map();
      this.deltas.set(pslot, done);
    }
    if (!done.has(rcpt)) {
      done.set(rcpt, outcome);
    }
  }

  // --- garbage

  private checkEmpty(lane: LaneState, seq: number): void {
    const s = lane.segs.get(seq);
    if (!s || s.liveEnv > 0 || s.liveData > 0) return;
    s.emptiedAt = this.writer.nextBatch;
    this.dirty.add(lane);
  }

  /** Marks every empty segment found by recovery as garbage now. */
  markRecoveredGarbage(): void {
    for (const lane of this.lanes) {
      for (const s of lane.segs.values()) {
        if (s.liveEnv === 0 && s.liveData === 0) {
          s.emptiedAt = 0;
          this.dirty.add(lane);
        }
      }
    }
  }

  /**
   * Segments that may be unlinked now: empty, made empty by a durable batch, not the lane's
   * current segment, and (for every lane but `data`) the oldest of their lane.
   */
  reclaimable(): Array<{ lane: LaneState; seq: number }> {
    const out: Array<{ lane: LaneState; seq: number }> = [];
    const durable = this.writer.durableBatch;
    for (const lane of this.dirty) {
      const cur = this.writer.currentSeq(lane.name);
      const seqs = [...lane.segs.keys()].sort((a, b) => a - b);
      let stillDirty = false;
      for (const seq of seqs) {
        const s = lane.segs.get(seq)!;
        const empty = s.liveEnv === 0 && s.liveData === 0;
        if (!empty || seq === cur || s.busy) {
          if (empty && seq !== cur) stillDirty = true;
          if (lane.fifoOrdered) break;
          continue;
        }
        if (s.emptiedAt > durable) {
          stillDirty = true;
          if (lane.fifoOrdered) break;
          continue;
        }
        s.busy = true;
        out.push({ lane, seq });
      }
      if (!stillDirty) this.dirty.delete(lane);
    }
    return out;
  }

  forgetSegment(lane: LaneState, seq: number): void {
    lane.segs.delete(seq);
  }

  /** A segment reclaimable() listed that was not unlinked after all: a later pass lists it again. */
  keepSegment(lane: LaneState, seq: number): void {
    const s = lane.segs.get(seq);
    if (s) s.busy = false;
    this.dirty.add(lane);
  }

  /** Data segments that are mostly garbage: worth copying their live data and unlinking them. */
  sparseDataSegments(minBytes: number): number[] {
    const lane = this.findLane('data');
    if (!lane) return [];
    const cur = this.writer.currentSeq('data');
    const out: number[] = [];
    for (const s of lane.segs.values()) {
      if (s.seq === cur || s.busy || s.liveData === 0) continue;
      if (s.dataBytes >= minBytes && s.liveDataBytes * 4 < s.dataBytes) out.push(s.seq);
    }
    return out;
  }
}

export { heldLaneName, retryLaneName };
