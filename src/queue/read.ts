// Reading a queue's messages back from the log: envelopes (one, or many with few reads), message
// data (whole, as the buffers it is held in, or as a stream of pieces of any size), what a report
// may quote, and the facts the index keeps per piece (pending recipients, attempts, facets).
// Invariant: reads never change the queue; a piece that changes while it is read (a new version,
// delivered, compacted data) is detected by its generation or re-located, never mixed up with
// another. An envelope is read only once the batch that placed it is durable: positions are
// assigned when a batch is sealed, before its I/O, so reading sooner found a short file (or no
// file: a segment being created) — `queue list/show/bounce` right after a deferral failed so.
// Data moved to a new copy (a move out of `new`, compaction) is read from it only once the batch
// that placed the copy is durable (core.dataUnwritten). Fails: MESSAGE_GONE when the message ended; a read error of the file system otherwise.
import { MtaError } from '../errors.js';
import type { QueueContext } from './context.js';
import { readRanges, type WantedRange } from './log/batch-read.js';
import { segmentName } from './log/segment.js';
import { FRAME_HEADER } from './record/frame.js';
import { decodeEnvelope, type EnvelopeRecord, formatId } from './record/records.js';
import { NO_SLOT, UNPLACED } from './state/tables.js';

/** Pieces in which data is read back from the log for delivery (a stream never holds more). */
export const READ_PIECE = 256 * 1024;
/** Reports include at most this much of the original message (headers only when it is larger). */
export const REPORT_DATA_MAX = 1024 * 1024;

export class Reader {
  private facetsIndexing: Promise<void> | undefined;

  constructor(private readonly cx: QueueContext) {}

  /** Attempts so far: the envelope's count plus the held deferrals since it was written (in memory). */
  attemptsOf(pslot: number, env: EnvelopeRecord): number {
    return env.info.attempts + (this.cx.core.unwritten.get(pslot)?.attempts ?? 0);
  }

  /**
   * Whether the piece's current envelope may not be in its file yet: not placed, or placed by a
   * batch that is sealed but not durable (its position is assigned at the seal, before any I/O,
   * so a read there would find a short file, or no file at all for a segment being created).
   * A poisoned writer makes nothing durable any more: its placed records are read as they are.
   */
  private unwrittenAt(pslot: number): boolean {
    const P = this.cx.core.pieces;
    if (P.seq[pslot] === UNPLACED) return true;
    return P.batch[pslot]! > this.cx.writer.durableBatch && this.cx.writer.poisoned === undefined;
  }

  async readEnvelope(pslot: number): Promise<EnvelopeRecord> {
    const P = this.cx.core.pieces;
    if (this.unwrittenAt(pslot)) await this.cx.writer.commit();
    // The lane is looked up after the wait: the piece may have moved meanwhile.
    const lane = this.cx.core.laneOf(pslot);
    const buf = await this.cx.fs.read(
      `${this.cx.dir}/lanes/${lane.name}/${segmentName(P.seq[pslot]!)}`,
      P.off[pslot]! + FRAME_HEADER,
      P.len[pslot]! - FRAME_HEADER,
    );
    return decodeEnvelope(buf);
  }

  /**
   * The current envelopes of many pieces, read with few reads (log/batch-read.ts). A piece that
   * changes while it is read (a new version, delivered) is left out: its generation is checked.
   */
  async readEnvelopes(slots: readonly number[]): Promise<Map<number, EnvelopeRecord>> {
    const P = this.cx.core.pieces;
    const out = new Map<number, EnvelopeRecord>();
    if (slots.some((p) => this.unwrittenAt(p))) await this.cx.writer.commit();
    const gens = new Map<number, number>();
    const wanted: WantedRange[] = [];
    for (const p of slots) {
      if (!this.cx.core.isLive(p) || P.seq[p] === UNPLACED) continue;
      gens.set(p, P.gen[p]!);
      wanted.push({
        key: p,
        path: `${this.cx.dir}/lanes/${this.cx.core.laneOf(p).name}/${segmentName(P.seq[p]!)}`,
        off: P.off[p]! + FRAME_HEADER,
        len: P.len[p]! - FRAME_HEADER,
      });
    }
    await readRanges(this.cx.fs, wanted, (p, bytes) => {
      if (P.gen[p] === gens.get(p)) out.set(p, decodeEnvelope(bytes));
    });
    return out;
  }

  /**
   * Learns the facets (recipient domains, sender: state/facets.ts) of every live piece whose
   * envelope came from recovery and was not read since, so inspection can answer from the index.
   * One pass over their envelopes, in log order; later calls find nothing left to read.
   */
  indexFacets(): Promise<void> {
    this.facetsIndexing ??= (async () => {
      try {
        const P = this.cx.core.pieces;
        // A read can miss a piece that moved meanwhile (its new version's facets are known then);
        // a few passes pick up what a failed read left.
        for (let pass = 0; pass < 3; pass++) {
          const todo: number[] = [];
          for (const m of this.cx.core.msgs.byId.values())
            for (let p = this.cx.core.msgs.head[m]!; p !== NO_SLOT; p = P.next[p]!)
              if (this.cx.core.isLive(p) && !this.cx.core.facets.known(p)) todo.push(p);
          if (todo.length === 0) break;
          for (let i = 0; i < todo.length; i += 4096) {
            const part = todo.slice(i, i + 4096);
            const gens = part.map((p) => P.gen[p]!);
            const envs = await this.readEnvelopes(part);
            part.forEach((p, k) => {
              const e = envs.get(p);
              if (e && P.gen[p] === gens[k] && !this.cx.core.facets.known(p)) this.cx.core.facets.set(p, e);
            });
          }
        }
      } finally {
        this.facetsIndexing = undefined;
      }
    })();
    return this.facetsIndexing;
  }

  /**
   * The data as the buffers it is held in: the accepted chunks themselves while they are still in
   * memory (no copy of the message for its first delivery), else one buffer read from the log.
   */
  async readDataParts(mslot: number, msgId: number): Promise<readonly Buffer[]> {
    const fresh = this.cx.fresh.data.get(msgId);
    if (fresh && this.cx.core.msgs.id[mslot] === msgId) return fresh.chunks as readonly Buffer[];
    return [await this.readData(mslot, msgId)];
  }

  /** The whole data of a message in one buffer (small messages; see dataStream for any size). */
  async readData(mslot: number, msgId: number): Promise<Buffer> {
    const M = this.cx.core.msgs;
    if (M.id[mslot] !== msgId)
      throw new MtaError('MESSAGE_GONE', 'permanent', `message ${formatId(msgId)} is no longer queued`);
    const fresh = this.cx.fresh.data.get(msgId);
    if (fresh) return fresh.chunks.length === 1 ? fresh.chunks[0]! : Buffer.concat(fresh.chunks as Buffer[]);
    if (M.dataSeq[mslot] === UNPLACED || this.cx.core.dataUnwritten(mslot)) await this.cx.writer.commit();
    if (this.cx.core.chunked.has(mslot)) {
      const parts: Buffer[] = [];
      for await (const b of this.dataStream(mslot, msgId)) parts.push(b);
      return Buffer.concat(parts);
    }
    const lane = this.cx.core.lanes[M.dataLane[mslot]!]!;
    return this.cx.fs.read(
      `${this.cx.dir}/lanes/${lane.name}/${segmentName(M.dataSeq[mslot]!)}`,
      M.dataOff[mslot]!,
      M.dataLen[mslot]!,
    );
  }

  /**
   * The data of a message as a stream of pieces of at most `piece` bytes, read from the log as
   * it is consumed (or the accepted bytes, while they are still in memory). The location is
   * looked up again for every piece, so a copy made meanwhile (compaction) is followed.
   */
  async *dataStream(
    mslot: number,
    msgId: number,
    piece = READ_PIECE,
    limit = Number.POSITIVE_INFINITY,
  ): AsyncGenerator<Buffer> {
    const M = this.cx.core.msgs;
    const gone = () =>
      new MtaError('MESSAGE_GONE', 'permanent', `message ${formatId(msgId)} is no longer queued`);
    if (M.id[mslot] !== msgId) throw gone();
    const fresh = this.cx.fresh.data.get(msgId);
    if (fresh) {
      let left = limit;
      for (const c of fresh.chunks) {
        if (left <= 0) return;
        yield c.length <= left ? c : c.subarray(0, left);
        left -= c.length;
      }
      return;
    }
    let pos = 0;
    for (let retried = false; ; ) {
      if (M.id[mslot] !== msgId) throw gone();
      if (M.dataSeq[mslot] === UNPLACED || this.cx.core.dataUnwritten(mslot)) await this.cx.writer.commit();
      const end = Math.min(M.dataLen[mslot]!, limit);
      if (pos >= end) return;
      const at = this.cx.core.dataAt(mslot, pos, Math.min(piece, end - pos));
      let buf: Buffer;
      try {
        buf = await this.cx.fs.read(`${this.cx.dir}/lanes/${at.lane}/${segmentName(at.seq)}`, at.off, at.len);
      } catch (e) {
        // The copy just read may have been replaced and unlinked (compaction): look again, once.
        const moved = M.id[mslot] === msgId && this.cx.core.dataAt(mslot, pos, at.len).seq !== at.seq;
        if (!moved || retried) throw e;
        retried = true;
        continue;
      }
      retried = false;
      pos += buf.length;
      yield buf;
    }
  }

  async reportData(mslot: number, msgId: number): Promise<Buffer> {
    if (this.cx.core.msgs.dataLen[mslot]! <= REPORT_DATA_MAX || this.cx.fresh.data.has(msgId))
      return this.readData(mslot, msgId).then((b) =>
        b.length > REPORT_DATA_MAX ? b.subarray(0, REPORT_DATA_MAX) : b,
      );
    const parts: Buffer[] = [];
    for await (const b of this.dataStream(mslot, msgId, READ_PIECE, REPORT_DATA_MAX)) parts.push(b);
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  /** Recipients of the piece's current version still without a final outcome. */
  pendingOf(pslot: number, env: EnvelopeRecord): number[] {
    const done = this.cx.core.deltas.get(pslot);
    const out: number[] = [];
    for (let i = 0; i < env.info.recipients.length; i++) if (!done?.has(i)) out.push(i);
    return out;
  }

  /** Live pieces in a domain's held lane: what an ETRN would make free. */
  heldCount(domain: string): number {
    return this.cx.core.findHeldLane(domain)?.live ?? 0;
  }

  heldDomains(): string[] {
    return this.cx.core.lanes.filter((l) => l.kind === 'held' && l.live > 0).map((l) => l.domain!);
  }
}
