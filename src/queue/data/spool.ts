// The data of one message while it is being received: bytes are appended as they arrive and, once
// more than a chunk's worth is buffered, written to the `data` lane as chunk records (format 2),
// so a message of any size costs a bounded amount of memory. A message that ends before its first
// chunk (nearly all mail) is never chunked: Queue.accept writes it as one data record next to its
// envelope, exactly as before streaming existed.
//
// Invariants:
// - Chunks are written in order, one flush at a time; each chunk's offset is the number of bytes
//   written before it, so recovery can tell a complete copy (offsets back to back from 0 up to a
//   chunk flagged last). Nothing here writes an envelope: until Queue.accept commits one, the
//   chunks are orphan data, which recovery reclaims and an abort releases at once.
// - Every chunk written counts as live data in its segment (pinned) until the spool is aborted or
//   the message that adopts it dies, so a data segment is never unlinked under a stream.
// - Bytes held here count in the memory budget until the flush that wrote them is durable.
// - write() never throws: a failed flush (a poisoned queue) is kept in `failed`, later bytes are
//   dropped, and accept() rejects with that error, so the client gets 451/452 at the end of data.
// Back-pressure: write() returns false while a flush is running and another chunk is buffered;
// drained() resolves when writing may go on (it never rejects).
import type { MtaError } from '../../errors.js';
import type { ChunkedData, Extent, QueueCore } from '../core.js';
import type { GroupWriter } from '../log/writer.js';
import type { MemoryBudget } from './budget.js';

/** Bytes buffered before a chunk is written. */
export const CHUNK_SIZE = 1024 * 1024;
/** While the memory budget is exceeded, chunks are written from this size on. */
export const MIN_CHUNK = 64 * 1024;
/** Writes shorter than this are copied together once many of them are buffered. */
const SMALL = 4096;
const MAX_SMALL_VIEWS = 64;

export interface SpoolHost {
  readonly core: QueueCore;
  readonly writer: GroupWriter;
  readonly budget: MemoryBudget;
  /** Reads `len` bytes of a `data` lane segment at `off`. */
  readSegment(lane: string, seq: number, off: number, len: number): Promise<Buffer>;
}

export type SpoolState = 'open' | 'aborted' | 'accepted';

export class DataSpool {
  /** Octets written so far. */
  size = 0;
  /** Set when a flush failed; the message can no longer be accepted. */
  failed: MtaError | undefined;
  state: SpoolState = 'open';
  /** Chunk records placed so far (pinned), in message order. */
  readonly extents: Extent[] = [];
  private views: Buffer[] = [];
  private buffered = 0;
  private smallViews = 0;
  /** Bytes handed to chunk records (placed or about to be). */
  private written = 0;
  private flushing: Promise<void> | undefined;
  private closing = false;
  private waiters: Array<() => void> = [];
  private readonly unsubscribe: () => void;

  constructor(
    private readonly host: SpoolHost,
    readonly msgId: number,
    private readonly chunkSize = CHUNK_SIZE,
  ) {
    // When memory runs short, what a paused client left here goes to disk too.
    this.unsubscribe = host.budget.onOver(() => {
      if (this.buffered >= MIN_CHUNK) this.maybeFlush(true);
    });
  }

  /** Whether this spool writes to the log of `core` (so its message is accepted there). */
  writesTo(core: QueueCore): boolean {
    return this.host.core === core;
  }

  /** Octets written here and not yet handed to a chunk record (their Buffers still held). */
  get unflushed(): number {
    return this.buffered;
  }

  /** True once some data went to chunk records: the message is stored chunked. */
  get chunked(): boolean {
    return this.written > 0;
  }

  /** Appends bytes (kept by reference, not copied). False: wait for drained() before more. */
  write(b: Buffer): boolean {
    if (this.state !== 'open' || this.failed || b.length === 0) return true;
    if (b.length < SMALL && ++this.smallViews > MAX_SMALL_VIEWS) this.coalesce();
    this.views.push(b);
    this.buffered += b.length;
    this.size += b.length;
    this.host.budget.add(b.length);
    this.maybeFlush(false);
    return !this.full;
  }

  /** Resolves when write() would return true again. */
  drained(): Promise<void> {
    if (!this.full) return Promise.resolve();
    return new Promise((r) => this.waiters.push(r));
  }

  private get full(): boolean {
    return this.flushing !== undefined && this.buffered >= this.chunkSize;
  }

  /** Many tiny writes (BDAT with small chunks, short lines): copy the small tail into one buffer. */
  private coalesce(): void {
    let i = this.views.length;
    let n = 0;
    while (i > 0 && this.views[i - 1]!.length < SMALL) n += this.views[--i]!.length;
    if (this.views.length - i > 1)
      this.views.splice(i, this.views.length - i, Buffer.concat(this.views.slice(i), n));
    this.smallViews = 0;
  }

  private maybeFlush(force: boolean): void {
    if (this.flushing || this.failed || this.closing || this.state !== 'open') return;
    const threshold = force || this.host.budget.over ? MIN_CHUNK : this.chunkSize;
    if (this.buffered < threshold) return;
    const views = this.views;
    const n = this.buffered;
    this.views = [];
    this.buffered = 0;
    this.smallViews = 0;
    const offset = this.written;
    this.written += n;
    const core = this.host.core;
    const lane = core.dataLane();
    this.flushing = (async () => {
      try {
        core.appendChunk(lane, this.msgId, offset, false, views, n, (e) => this.placed(lane, e));
        await this.host.writer.commit();
      } catch (e) {
        this.failed ??= e as MtaError;
      } finally {
        this.host.budget.sub(n);
        this.flushing = undefined;
      }
      this.maybeFlush(false);
      if (!this.full) for (const w of this.waiters.splice(0)) w();
    })();
  }

  private placed(lane: ChunkedData['lane'], e: Extent): void {
    // A chunk placed after an abort is released at once; the message never existed.
    if (this.state === 'aborted') this.host.core.unpinExtent(lane, e.seq, e.len);
    else this.extents.push(e);
  }

  /** Waits for the flush in progress (so every chunk so far is written and placed). */
  async settled(): Promise<void> {
    while (this.flushing) await this.flushing;
  }

  /** No more writes: waits until no flush is running and none can start (before take()). */
  async finishWriting(): Promise<void> {
    this.closing = true;
    await this.settled();
  }

  /**
   * Reads back everything written so far, from the start, in pieces (for consumers that need
   * the whole message at the end of data, before the envelope commits: DKIM signing, milters).
   */
  async *read(piece = 256 * 1024): AsyncGenerator<Buffer> {
    await this.settled();
    if (this.failed) throw this.failed;
    for (const e of this.extents.slice()) {
      for (let at = 0; at < e.len; at += piece) {
        yield await this.host.readSegment('data', e.seq, e.off + at, Math.min(piece, e.len - at));
      }
    }
    for (const v of this.views.slice()) yield v;
  }

  /**
   * Hands the data over to Queue.accept: the bytes still buffered (and their budget share) are
   * the caller's from now on. `chunked` says whether they are the last chunk or the whole message.
   */
  take(): { views: Buffer[]; bytes: number; offset: number } {
    this.state = 'accepted';
    this.unsubscribe();
    const out = { views: this.views, bytes: this.buffered, offset: this.written };
    this.views = [];
    this.buffered = 0;
    return out;
  }

  /** Drops the data: the transaction was aborted (client gone, RSET, refused). Idempotent. */
  abort(): void {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    this.unsubscribe();
    this.host.budget.sub(this.buffered);
    this.views = [];
    this.buffered = 0;
    const lane = this.host.core.dataLane();
    for (const e of this.extents.splice(0)) this.host.core.unpinExtent(lane, e.seq, e.len);
    for (const w of this.waiters.splice(0)) w();
  }
}
