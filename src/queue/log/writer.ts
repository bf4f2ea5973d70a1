// The group-commit writer of one queue directory. Producers append records (to any lane) and
// then await `commit()`; the writer takes everything pending as one batch, writes each lane's
// records with one positional write per segment and makes them durable with one fdatasync per
// touched file. Every waiter of the batch resolves together: one fdatasync covers many messages.
//
// Up to four phases per batch, each written and synced only after the one before is durable:
// 1 — everything ordinary, including a moved piece's replacement version; 2 — new pieces split
// off a moved piece (so a new piece is never durable without its parent's replacement, and
// recovery can always tell a move was cut short); 3 — records that *end* an envelope because it
// moved, so a crash never keeps the kill without the replacement (docs/queue-states.md). An
// outcome that calls for a delivery report is written one phase later than it would be, after
// the report (phase 1): a report may survive its outcome (a duplicate), never the reverse (a
// failure nobody hears of) — the two are often in different files (outcomes.ts).
// Empty phases cost nothing: an ordinary batch is one write and one fdatasync per file.
//
// Two batches in flight: records committed while a batch syncs are sealed and written, and
// their fdatasync issued, without waiting for it — but only when both batches hold ordinary
// (phase-1) records only and neither starts a segment, so nothing is written into a file whose
// predecessor's records may not be durable, and no phase runs ahead of the one it depends on.
// Batches are acknowledged strictly in order: a later batch's waiters run only after every
// earlier batch is durable; when the earlier one fails, the later one is refused with it (after
// its I/O has ended) and the cut to undo covers both.
//
// Invariant: a record's position is assigned when the batch is sealed, and its `onPlaced`
// callback runs then, before any I/O of the batch. A failed fdatasync (or directory fsync), or a
// failed write or create other than for lack of space, poisons the writer: the failing batch and
// every later commit reject with QUEUE_POISONED until restart, because after a failed fsync the
// kernel may have dropped the dirty pages (no retry can be trusted). A write or create that
// fails with ENOSPC/EDQUOT refuses the batch with QUEUE_FULL and leaves `failedCut`: the queue
// cuts what the batch half-wrote and reopens from disk (queues.ts), as a restart would.
// Size (over 400 lines): batching, the write phases, segment rolls and the refusal paths share the
// batch state; a split would expose it.
import { MtaError } from '../../errors.js';
import { encodeFrame } from '../record/frame.js';
import { encodeHeader, FORMAT_VERSION, RT_HEADER } from '../record/records.js';
import type { QueueFile, QueueFs } from './fs.js';
import type { SparePool } from './spares.js';
import { segmentName } from './segment.js';

/**
 * Batches in flight at once. The disks measured here complete parallel fdatasyncs of one file
 * almost as fast as one (docs/performance.md), so a deeper pipeline turns waiting into throughput.
 */
export const DEFAULT_MAX_IN_FLIGHT = 4;
/** Bytes past which a growing batch is sealed while others are in flight. */
export const DEFAULT_SEAL_BYTES = 128 * 1024;

/** A failed fdatasync or directory fsync: always poisons (rule 4), whatever its errno. */
class SyncFailed extends Error {
  constructor(override readonly cause: unknown) {
    super(`sync failed: ${(cause as Error)?.message ?? String(cause)}`);
  }
}

function syncFailed(e: unknown): never {
  throw new SyncFailed(e);
}

function frameBytes(frame: readonly Buffer[]): number {
  let n = 0;
  for (const b of frame) n += b.length;
  return n;
}

/** Write order inside a batch; see the header. */
export type Phase = 1 | 2 | 3 | 4;

export type Placed = (seq: number, offset: number) => void;

interface Op {
  lane: string;
  frame: Buffer[];
  length: number;
  phase: Phase;
  onPlaced: Placed | undefined;
}

type FileWrite = { lane: string; seq: number; position: number; bufs: Buffer[]; bytes: number };

/** The one promise every commit() of a batch shares (no allocation per waiter). */
interface BatchDone {
  promise: Promise<void>;
  resolve: () => void;
  reject: (e: Error) => void;
}

function batchDone(): BatchDone {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {}); // every caller handles it; this only keeps an unwatched batch quiet
  return { promise, resolve, reject };
}

/** A sealed batch whose I/O is under way. */
interface InFlight {
  batch: number;
  done: BatchDone | undefined;
  io: Promise<void>;
  /** Where each file it touches ended before it (for a refused batch's cut). */
  cut: Array<{ path: string; length: number }>;
  /** Ordinary records only and no new segment: the next batch may be written meanwhile. */
  simple: boolean;
  /** Its I/O has ended (either way). */
  settled: boolean;
}

function mergeCuts(
  a: Array<{ path: string; length: number }>,
  b: Array<{ path: string; length: number }>,
): Array<{ path: string; length: number }> {
  const m = new Map<string, number>();
  for (const c of [...a, ...b]) m.set(c.path, Math.min(m.get(c.path) ?? c.length, c.length));
  return [...m].map(([path, length]) => ({ path, length }));
}

interface LaneTail {
  seq: number;
  /** Size of the current segment's header: a segment holds at least one record past it. */
  base: number;
  /** Logical end of the segment, including records sealed but not yet written. */
  size: number;
  /** Segment files being created, by sequence number. */
  creating: Map<number, Promise<QueueFile>>;
  /** Header frames of segments not yet created, so their size is fixed when sealing. */
  headers: Map<number, Buffer[]>;
  dirReady: Promise<void> | undefined;
}

export interface WriterOptions {
  fs: QueueFs;
  dir: string;
  segmentSize: number;
  /** Benchmark-only: skip fdatasync. Never the default. */
  sync: boolean;
  /** Most batches written and syncing at once (default DEFAULT_MAX_IN_FLIGHT). */
  maxInFlight?: number;
  /** A batch this big is sealed without waiting for more producers (default DEFAULT_SEAL_BYTES). */
  sealBytes?: number;
  now: () => number;
  /** Reclaimed segment files kept zeroed for reuse (spares.ts); without it segments are unlinked. */
  spares?: SparePool;
}

export interface WriterStats {
  batches: number;
  records: number;
  bytes: number;
  datasyncs: number;
  lastBatchRecords: number;
  /** Histogram inputs: fsync latency of the last batch in ms. */
  lastSyncMs: number;
}

export class GroupWriter {
  private pending: Op[] = [];
  /** The batch being filled: what commit() callers wait for. */
  private filling: BatchDone | undefined;
  private flushing = false;
  private poison: MtaError | undefined;
  private readonly tails = new Map<string, LaneTail>();
  private batchNo = 0;
  /** Number of the last batch that is durable. */
  durableBatch = 0;
  readonly stats: WriterStats = {
    batches: 0,
    records: 0,
    bytes: 0,
    datasyncs: 0,
    lastBatchRecords: 0,
    lastSyncMs: 0,
  };
  /** Called after each durable batch, with its number (the queue reclaims segments then). */
  onDurable: ((batch: number) => void) | undefined;
  /** Called after each batch with its size and sync time, for metrics. */
  onBatch: ((records: number, bytes: number, syncMs: number) => void) | undefined;

  constructor(private readonly opts: WriterOptions) {}

  get poisoned(): MtaError | undefined {
    return this.poison;
  }

  /** Bytes appended but not yet durable: used to spread new mail across queues. */
  pendingBytes = 0;

  /**
   * Tells the writer where a lane's log ends (from recovery). `closed`: the segment must not be
   * appended to (it is corrupt, being set aside, or has no header); the next record starts seq+1.
   */
  setTail(lane: string, seq: number, size: number, closed = false): void {
    this.tails.set(lane, {
      seq,
      // A closed tail looks full and holds a record past its base, so the next append rolls over.
      size: closed ? Number.MAX_SAFE_INTEGER : size,
      base: closed ? 0 : size,
      creating: new Map(),
      headers: new Map(),
      dirReady: Promise.resolve(),
    });
  }

  /** The sequence number of the segment the lane currently appends to (-1: none yet). */
  currentSeq(lane: string): number {
    return this.tails.get(lane)?.seq ?? -1;
  }

  /** Queues a record. Nothing is written until the next batch; call commit() to wait for it. */
  append(lane: string, type: number, body: readonly Buffer[], phase: Phase = 1, onPlaced?: Placed): void {
    const refused = this.poison ?? this.stopped;
    if (refused) throw refused;
    const frame = encodeFrame(type, body);
    let length = 0;
    for (const b of frame) length += b.length;
    this.pending.push({ lane, frame, length, phase, onPlaced });
    this.pendingBytes += length;
    this.unsealed += length;
  }

  /** True while a batch is being sealed (its records' onPlaced callbacks run then). */
  private sealing = false;

  /**
   * Number of the batch that the records appended so far will be part of; inside an onPlaced
   * callback, the batch being sealed (the record being placed is in it, not in the next one).
   */
  get nextBatch(): number {
    return this.sealing ? this.batchNo : this.batchNo + 1;
  }

  /** Resolves when every record appended before this call is durable. */
  commit(): Promise<void> {
    const refused = this.poison ?? this.stopped;
    if (refused) return Promise.reject(refused);
    this.filling ??= batchDone();
    const p = this.filling.promise;
    if (!this.flushing) this.flushed = this.flushLoop();
    else if (this.unsealed >= this.sealBytes && this.mayStart()) this.inflight.push(this.start());
    else this.wake?.();
    return p;
  }

  /** Wakes the flush loop while it waits on a batch in flight (a commit arrived). */
  private wake: (() => void) | undefined;

  /** Set by close(): no batch is sealed after it. */
  private stopped: MtaError | undefined;
  /** The running flush loop (resolved when none runs). */
  private flushed: Promise<void> = Promise.resolve();
  /** Sealed batches whose I/O is under way or not yet acknowledged, oldest first. */
  private readonly inflight: InFlight[] = [];
  /** Bytes appended since the last seal. */
  private unsealed = 0;
  /** A batch grown past this many bytes is sealed at once when the pipeline has room. */
  private get sealBytes(): number {
    return this.opts.sealBytes ?? DEFAULT_SEAL_BYTES;
  }

  /**
   * Whether what is pending may be sealed and written now. Always when nothing is in flight; with
   * one batch in flight, when it and the pending records are plain (mayOverlap); with more, only
   * once the pending records have grown to sealBytes and the pipeline has room. Below that a
   * third batch keeps growing while two sync, so a loaded queue pays for fewer, larger
   * fdatasyncs, and a burst of large messages still keeps several in flight.
   */
  private mayStart(): boolean {
    const n = this.inflight.length;
    if (n === 0) return true;
    if (n > 1 && (this.unsealed < this.sealBytes || n >= (this.opts.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT)))
      return false;
    for (const b of this.inflight) if (!b.simple) return false;
    return this.mayOverlap();
  }

  private async flushLoop(): Promise<void> {
    this.flushing = true;
    const inflight = this.inflight;
    try {
      while (!this.poison && !this.stopped) {
        const more = this.pending.length > 0 || this.filling !== undefined;
        if (!more && inflight.length === 0) break;
        if (more && this.mayStart()) {
          inflight.push(this.start());
          continue;
        }
        const head = inflight[0]!;
        if (!head.settled) {
          // Wake up when the oldest batch's I/O has ended or a commit arrives.
          await Promise.race([head.io.catch(() => {}), new Promise<void>((r) => (this.wake = r))]);
          this.wake = undefined;
          continue;
        }
        inflight.shift();
        const waited = head.done !== undefined;
        const ok = await this.finish(head, inflight);
        // Let the producers just released (and I/O that arrived during the sync) append before
        // what they append is sealed: otherwise every released producer would seal a batch of
        // its own. A batch that grows past sealBytes meanwhile is sealed at once (commit()).
        if (ok && waited) await new Promise<void>((r) => setImmediate(r));
      }
    } finally {
      // Batches still in flight (close() or a poisoned writer) settle before the loop ends.
      while (inflight.length > 0) await this.finish(inflight.shift()!, inflight).catch(() => false);
      this.flushing = false;
    }
    const refused = this.poison ?? this.stopped;
    if (refused && this.filling) {
      this.filling.reject(refused);
      this.filling = undefined;
    }
  }

  /** Seals everything pending as the next batch and starts its I/O. */
  private start(): InFlight {
    const ops = this.pending;
    const done = this.filling;
    this.pending = [];
    this.filling = undefined;
    this.unsealed = 0;
    const batch = ++this.batchNo;
    const seqs = new Map<string, number>();
    for (const [lane, t] of this.tails) seqs.set(lane, t.seq);
    let phased = false;
    for (const op of ops) if (op.phase !== 1) phased = true;
    // writeBatch seals synchronously (positions, onPlaced, batchCut) before its first await.
    const io = this.writeBatch(ops);
    let rolled = false;
    for (const [lane, t] of this.tails) if (seqs.get(lane) !== t.seq) rolled = true;
    const b: InFlight = {
      batch,
      done,
      io,
      cut: ops.length === 0 ? [] : this.batchCut,
      simple: !phased && !rolled,
      settled: false,
    };
    io.then(
      () => (b.settled = true),
      () => (b.settled = true),
    );
    return b;
  }

  /**
   * Whether the pending records may be sealed and written while `older` is still syncing. Only
   * the plain case: both batches hold ordinary (phase-1) records only and neither starts a new
   * segment, so every record lands in a segment file that is already open and is the last of
   * its lane. (A batch with phases needs the one before it durable; a new segment must not be
   * written before the records of its predecessor are durable — reader.ts, torn tails.)
   */
  private mayOverlap(): boolean {
    if (this.pending.length === 0) return false;
    const size = new Map<string, number>();
    for (const op of this.pending) {
      if (op.phase !== 1) return false;
      const t = this.tails.get(op.lane);
      if (t === undefined || t.seq < 0 || !t.creating.has(t.seq)) return false;
      const at = size.get(op.lane) ?? t.size;
      if (at + op.length > this.opts.segmentSize && at > t.base) return false;
      size.set(op.lane, at + op.length);
    }
    return true;
  }

  /**
   * Waits for `b`'s I/O and acknowledges it (then its waiters run). When it failed, the batches
   * after it (`later`, already written or being written) are refused with it: their I/O settles
   * first, and the cut to undo covers them all.
   */
  private async finish(b: InFlight, later: readonly InFlight[]): Promise<boolean> {
    try {
      await b.io;
    } catch (e) {
      let cut = b.cut;
      for (const n of later) {
        await n.io.catch(() => {});
        cut = mergeCuts(cut, n.cut);
      }
      if (!this.poison) {
        this.failedCut = cut;
        this.setPoison(e);
      }
      b.done?.reject(this.poison!);
      return false;
    }
    if (this.poison) {
      // A later batch failed first (it cannot be acknowledged before this one anyway).
      b.done?.reject(this.poison);
      return false;
    }
    this.durableBatch = b.batch;
    b.done?.resolve();
    this.onDurable?.(b.batch);
    return true;
  }

  private setPoison(e: unknown): void {
    if (this.poison) return;
    const sync = e instanceof SyncFailed;
    const cause = sync ? e.cause : e;
    const code = (cause as NodeJS.ErrnoException)?.code ?? String(cause);
    const dir = this.opts.dir;
    if (!sync && (code === 'ENOSPC' || code === 'EDQUOT')) {
      // A write that found no space changed nothing that was acknowledged: the batch is refused,
      // and what it half-wrote is listed in `failedCut` so the queue can cut it and reopen.
      this.poison = new MtaError(
        'QUEUE_FULL',
        'transient',
        `queue ${dir}: ${code} while writing a batch; the batch was refused (nothing of it was acknowledged)`,
        {
          smtp: { code: 452, enhanced: '4.3.1', text: 'Insufficient system storage, try again later' },
          cause,
        },
      );
    } else {
      // DESIGN.md rule 4: after a failed fsync the kernel may have dropped the dirty pages, so no
      // write since the last good sync can be trusted, and no retry can be either.
      const what = sync ? 'fdatasync/fsync' : 'write';
      this.poison = new MtaError(
        'QUEUE_POISONED',
        'transient',
        `queue ${dir}: ${what} failed (${code}); the queue refuses all writes. Check the disk (kernel log, SMART), then restart logmta: recovery keeps every acknowledged message`,
        { smtp: { code: 451, enhanced: '4.3.0', text: 'Local error in processing, try again later' }, cause },
      );
    }
    this.onRefused?.(this.poison);
  }

  /** Called once when the writer starts refusing (QUEUE_FULL or QUEUE_POISONED). */
  onRefused: ((e: MtaError) => void) | undefined;

  /**
   * After QUEUE_FULL: the length each file touched by the refused batch had before it. Cutting
   * the files back to these leaves the directory exactly as after the last durable batch.
   */
  failedCut: Array<{ path: string; length: number }> | undefined;
  private batchCut: Array<{ path: string; length: number }> = [];

  /** Seals the ops into per-file writes (phase by phase in each lane), then does the I/O. */
  private async writeBatch(ops: Op[]): Promise<void> {
    if (ops.length === 0) return;
    const phases: Array<Map<string, FileWrite>> = [new Map(), new Map(), new Map(), new Map()];
    // Sealing is synchronous: no append can interleave, and onPlaced sees nextBatch = this batch.
    this.sealing = true;
    try {
      this.seal(ops, phases);
    } finally {
      this.sealing = false;
    }
    let bytes = 0;
    for (const op of ops) bytes += op.length;
    // Where each touched file ended before this batch (a segment the batch creates: its header).
    const cut = new Map<string, number>();
    for (const writes of phases)
      for (const w of writes.values()) {
        const path = `${this.laneDir(w.lane)}/${segmentName(w.seq)}`;
        cut.set(path, Math.min(cut.get(path) ?? w.position, w.position));
      }
    this.batchCut = [...cut].map(([path, length]) => ({ path, length }));
    const t0 = performance.now();
    let syncs = 0;
    for (const writes of phases) {
      if (writes.size === 0) continue;
      // Lanes in parallel; within a lane, segments in order. When a batch rolls a lane over,
      // the earlier segment's part is durable before the later segment is written, so a torn
      // record can only ever be in the last segment of a lane that holds records (reader.ts).
      const byLane = new Map<string, FileWrite[]>();
      for (const w of writes.values()) {
        const list = byLane.get(w.lane);
        if (list) list.push(w);
        else byLane.set(w.lane, [w]);
      }
      const counts = await Promise.all(
        [...byLane.values()].map(async (list) => {
          list.sort((a, b) => a.seq - b.seq);
          let n = 0;
          for (let i = 0; i < list.length; i++) {
            const w = list[i]!;
            const f = await this.fileFor(w.lane, w.seq);
            // The point of the design: one fdatasync per touched file covers every record of the
            // batch. On a file opened O_DSYNC the write itself is that fdatasync: its failures
            // poison as a write's do, except ENOSPC/EDQUOT, which refuse the batch and cut it
            // (what it wrote is cut off, so a sync that failed for lack of space leaves nothing
            // to trust). A phase starts only after every file of the one before is durable.
            await f.write(w.bufs, w.position);
            if (this.opts.sync) {
              if (!f.writesDurable) await f.datasync().catch(syncFailed);
              n++;
            }
          }
          return n;
        }),
      );
      for (const n of counts) syncs += n;
    }
    const syncMs = performance.now() - t0;
    this.closeOlder();
    this.pendingBytes = Math.max(0, this.pendingBytes - bytes);
    this.stats.batches++;
    this.stats.records += ops.length;
    this.stats.bytes += bytes;
    this.stats.datasyncs += syncs;
    this.stats.lastBatchRecords = ops.length;
    this.stats.lastSyncMs = syncMs;
    this.onBatch?.(ops.length, bytes, syncMs);
  }

  /** Assigns every op its segment and offset, rolling over to a new segment when one is full. */
  private seal(ops: Op[], phases: Array<Map<string, FileWrite>>): void {
    for (const phase of [1, 2, 3, 4] as const) {
      for (const op of ops) {
        if (op.phase !== phase) continue;
        const tail = this.tailOf(op.lane);
        if (tail.seq < 0 || (tail.size + op.length > this.opts.segmentSize && tail.size > tail.base)) {
          tail.seq = tail.seq < 0 ? 1 : tail.seq + 1;
          tail.size = frameBytes(this.headerFor(op.lane, tail, tail.seq));
          tail.base = tail.size;
        }
        const key = `${op.lane}/${tail.seq}`;
        const writes = phases[phase - 1]!;
        let w = writes.get(key);
        if (!w) {
          w = { lane: op.lane, seq: tail.seq, position: tail.size, bufs: [], bytes: 0 };
          writes.set(key, w);
        }
        op.onPlaced?.(tail.seq, tail.size);
        for (const b of op.frame) w.bufs.push(b);
        w.bytes += op.length;
        tail.size += op.length;
        this.maybePrepareNext(op.lane, tail);
      }
    }
  }

  private tailOf(lane: string): LaneTail {
    let t = this.tails.get(lane);
    if (!t) {
      t = { seq: -1, size: 0, base: 0, creating: new Map(), headers: new Map(), dirReady: undefined };
      this.tails.set(lane, t);
    }
    return t;
  }

  private headerFor(lane: string, tail: LaneTail, seq: number): Buffer[] {
    let h = tail.headers.get(seq);
    if (!h) {
      h = encodeFrame(RT_HEADER, [
        encodeHeader({ format: FORMAT_VERSION, lane, seq, created: this.opts.now() }),
      ]);
      tail.headers.set(seq, h);
    }
    return h;
  }

  /** Starts creating the next segment once the current one is three-quarters full. */
  private maybePrepareNext(lane: string, tail: LaneTail): void {
    // Only once the current segment itself is being created (or open): a batch that has just
    // rolled over seals into a segment that fileFor() creates later, during the batch's I/O, and
    // preparing its successor first would create seq+1 before seq — a gap if the process dies.
    if (
      tail.size > this.opts.segmentSize * 0.75 &&
      tail.creating.has(tail.seq) &&
      !tail.creating.has(tail.seq + 1)
    ) {
      const p = this.createSegment(lane, tail, tail.seq + 1);
      p.catch(() => {}); // the error surfaces when the file is needed
    }
  }

  private laneDir(lane: string): string {
    return `${this.opts.dir}/lanes/${lane}`;
  }

  private createSegment(lane: string, tail: LaneTail, seq: number): Promise<QueueFile> {
    let p = tail.creating.get(seq);
    if (p) return p;
    const prev = tail.creating.get(seq - 1);
    p = (async () => {
      // Segments of a lane come into existence in order: a batch that spans several new
      // segments must not leave a later one durable without an earlier one (a false gap).
      if (prev) await prev.catch(() => {});
      if (!tail.dirReady) {
        tail.dirReady = (async () => {
          await this.opts.fs.mkdirp(this.laneDir(lane));
          await this.opts.fs.syncDir(`${this.opts.dir}/lanes`).catch(syncFailed);
        })();
      }
      await tail.dirReady;
      const path = `${this.laneDir(lane)}/${segmentName(seq)}`;
      // A lane's first segment is a new file; later ones (and every one of `new` and `data`,
      // the lanes accepted mail fills) reuse a spare when one is ready: a lane that has filled a
      // segment is busy enough for one, and a quiet held lane is not given 64 MiB of zeros.
      const reuse = this.opts.spares && (seq > 1 || lane === 'new' || lane === 'data');
      const f =
        reuse && (await this.opts.spares!.take(path, this.laneDir(lane)))
          ? await this.opts.fs.openWrite(path, this.opts.sync)
          : await this.opts.fs.create(path, this.opts.sync);
      await f.write(this.headerFor(lane, tail, seq), 0);
      if (this.opts.sync && !f.writesDurable) await f.datasync().catch(syncFailed);
      // The new file's directory entry must be durable before any commit in it is acknowledged.
      await this.opts.fs.syncDir(this.laneDir(lane)).catch(syncFailed);
      return f;
    })();
    tail.creating.set(seq, p);
    return p;
  }

  private async fileFor(lane: string, seq: number): Promise<QueueFile> {
    const tail = this.tailOf(lane);
    const creating = tail.creating.get(seq);
    if (creating) {
      // Handles of older segments are closed by closeOlder() after the batch: a batch that
      // rolls over still writes to the previous segment while it opens the next one.
      return await creating;
    }
    // An existing segment found by recovery.
    const path = `${this.laneDir(lane)}/${segmentName(seq)}`;
    const existing = (await this.opts.fs.size(path).catch(() => -1)) >= 0;
    const p = existing ? this.opts.fs.openWrite(path, this.opts.sync) : this.createSegment(lane, tail, seq);
    tail.creating.set(seq, p);
    return p;
  }

  /** Closes the handles of segments older than each lane's current one (after a batch's I/O). */
  private closeOlder(): void {
    for (const tail of this.tails.values()) {
      for (const [s, pf] of tail.creating) {
        if (s < tail.seq) {
          tail.creating.delete(s);
          tail.headers.delete(s);
          pf.then((old) => old.close()).catch(() => {});
        }
      }
    }
  }

  /**
   * Unlinks a whole segment (or hands its file to the spare pool) and makes that durable before
   * the next one (lane order). True when the file became a spare.
   */
  async unlinkSegment(lane: string, seq: number): Promise<boolean> {
    if (this.stopped) throw this.stopped;
    const tail = this.tails.get(lane);
    const pf = tail?.creating.get(seq);
    if (pf) {
      tail!.creating.delete(seq);
      await pf.then((f) => f.close()).catch(() => {});
    }
    const path = `${this.laneDir(lane)}/${segmentName(seq)}`;
    if (await this.opts.spares?.keep(path, this.laneDir(lane))) return true;
    await this.opts.fs.unlink(path);
    await this.opts.fs.syncDir(this.laneDir(lane));
    return false;
  }

  /**
   * Stops writing: the batch being written finishes, nothing after it is sealed (later appends
   * throw and commits reject with QUEUE_STOPPED), then files are closed. When this resolves the
   * writer does no more I/O, so the queue directory may be handed to another process.
   * Pending records are not written: crash-only, recovery redoes what is needed.
   */
  async close(): Promise<void> {
    this.stopped ??= new MtaError('QUEUE_STOPPED', 'transient', 'the queue has stopped', {
      smtp: { code: 451, enhanced: '4.3.2' },
    });
    await this.flushed;
    await this.opts.spares?.close();
    for (const t of this.tails.values()) {
      for (const p of t.creating.values()) await p.then((f) => f.close()).catch(() => {});
      t.creating.clear();
    }
  }
}
