// Garbage and compaction: segments whose every record is garbage once a durable batch made them
// so are unlinked without being read (the runner is the cleaner, DESIGN.md §5); data segments
// that are mostly garbage have their live data copied to the tail of the data lane so they can go
// too (a message's data is copied a small, bounded number of times). The periodic maintenance
// tick runs compaction, the held-mail expiry sweep and reclamation.
// Invariants: a segment is unlinked only when the batch that emptied it is durable and (except in
// `data`) it is the oldest of its lane; a copy is switched to only once it is complete.
// Fails: an unlink that fails (other than ENOENT) stops this pass; the next one retries.
import type { Extent } from './core.js';
import type { QueueContext } from './context.js';
import type { Reader } from './read.js';
import { UNPLACED } from './state/tables.js';

export class Maintenance {
  reclaiming = false;
  private compacting = false;

  constructor(
    private readonly cx: QueueContext,
    private readonly read: Reader,
    /** The held-mail expiry sweep (expire.ts). */
    private readonly expireHeld: () => Promise<number>,
  ) {}

  /** Unlinks the segments that became garbage in durable batches (core.reclaimable). */
  async reclaim(): Promise<void> {
    if (this.reclaiming) return;
    this.reclaiming = true;
    try {
      // A failed unlink ends the whole pass, not only this list: going round again at once
      // would retry the same segment for ever without yielding to the event loop (a stopped
      // writer or an EIO made the daemon spin). What was listed and not unlinked is kept for
      // the next pass (after the next durable batch, or the maintenance tick).
      pass: for (;;) {
        const list = this.cx.core.reclaimable();
        if (list.length === 0) break;
        for (let i = 0; i < list.length; i++) {
          const { lane, seq } = list[i]!;
          try {
            const spare = await this.cx.writer.unlinkSegment(lane.name, seq);
            this.cx.core.forgetSegment(lane, seq);
            this.cx.emit({ type: 'segment-unlinked', lane: lane.name, seq, spare });
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
              this.cx.core.forgetSegment(lane, seq);
              continue;
            }
            for (const r of list.slice(i)) this.cx.core.keepSegment(r.lane, r.seq);
            break pass;
          }
        }
      }
    } finally {
      this.reclaiming = false;
    }
  }

  /** Periodic work: compact sparse data segments, expire old held mail. */
  async maintain(): Promise<void> {
    await this.compactData();
    await this.expireHeld();
    await this.reclaim();
  }

  /**
   * Copies the live data out of mostly-empty data segments so they can be unlinked. Chunked data
   * is copied as a stream of chunks (copyChunked); whole records are copied whole (they are
   * small), with a commit after every chunk's worth so that pending copies stay bounded.
   */
  async compactData(minBytes = 1024 * 1024): Promise<number> {
    if (this.compacting) return 0;
    const core = this.cx.core;
    const seqs = new Set(core.sparseDataSegments(minBytes));
    if (seqs.size === 0) return 0;
    this.compacting = true;
    try {
      const dataLane = core.dataLane();
      const M = core.msgs;
      let moved = 0;
      let pending = 0;
      for (const [id, mslot] of [...M.byId]) {
        if (M.id[mslot] !== id || M.dataLane[mslot] !== dataLane.idx || M.dataSeq[mslot] === UNPLACED)
          continue;
        const c = core.chunked.get(mslot);
        if (c) {
          if (!c.extents.some((e) => seqs.has(e.seq))) continue;
          if (await this.copyChunked(mslot, id).catch(() => false)) moved++;
          continue;
        }
        const seq = M.dataSeq[mslot]!;
        if (!seqs.has(seq)) continue;
        const buf = await this.read.readData(mslot, id).catch(() => undefined);
        if (!buf || M.id[mslot] !== id || M.dataSeq[mslot] !== seq || core.chunked.has(mslot)) continue;
        core.putData(mslot, dataLane, [buf], buf.length);
        moved++;
        pending += buf.length;
        if (pending >= this.cx.chunkSize) {
          pending = 0;
          await this.cx.writer.commit();
        }
      }
      await this.cx.writer.commit();
      return moved;
    } finally {
      this.compacting = false;
    }
  }

  /**
   * Copies a message's chunked data to the tail of the data lane, a chunk at a time (each chunk
   * committed before the next is read), and switches to the copy when its last chunk is placed;
   * the old chunks stop counting then. Memory: one chunk. If the message ends meanwhile, the
   * copy is released. Returns whether the copy was made.
   */
  private async copyChunked(mslot: number, msgId: number): Promise<boolean> {
    const core = this.cx.core;
    const M = core.msgs;
    const lane = core.dataLane();
    const extents: Extent[] = [];
    const total = M.dataLen[mslot]!;
    let offset = 0;
    let views: Buffer[] = [];
    let buffered = 0;
    try {
      for await (const b of this.read.dataStream(mslot, msgId)) {
        views.push(b);
        buffered += b.length;
        if (buffered >= this.cx.chunkSize && offset + buffered < total) {
          core.appendChunk(lane, msgId, offset, false, views, buffered, (e) => extents.push(e));
          offset += buffered;
          views = [];
          buffered = 0;
          await this.cx.writer.commit();
        }
      }
    } catch (e) {
      // Every chunk appended so far is placed (placement precedes a commit's I/O): release them.
      for (const x of extents.splice(0)) core.unpinExtent(lane, x.seq, x.len);
      throw e;
    }
    if (M.id[mslot] !== msgId) {
      for (const x of extents.splice(0)) core.unpinExtent(lane, x.seq, x.len);
      return false;
    }
    core.appendChunk(lane, msgId, offset, true, views, buffered, (e) => {
      extents.push(e);
      core.setChunked(mslot, msgId, lane, extents);
    });
    await this.cx.writer.commit();
    return true;
  }
}
