// The facade of one queue directory: accept messages durably, run the lanes (the runner is the
// cleaner), take delivery outcomes, serve operator actions and inspection. Everything else in
// logmta uses the queue through this class (or Queues for several directories).
//
// Rules kept here (DESIGN.md §3): accept() resolves only after the batch holding the message's
// data and envelopes is durable; nothing is handed to delivery before its envelope is durable;
// an outcome is committed before the piece counts as done; a permanent failure's report is
// appended in the same batch as the failure.
import { MtaError } from '../errors.js';
import { type Clock, systemClock } from '../util/clock.js';
import { type Extent, QueueCore } from './core.js';
import { DEFAULT_MEMORY_BUDGET, MemoryBudget } from './data/budget.js';
import { CHUNK_SIZE, DataSpool } from './data/spool.js';
import { IdSource } from './ids.js';
import { ExpiryHeap } from './lanes/expiry.js';
import type { HeldFlush, LaneState } from './lanes/lane.js';
import { NodeQueueFs, type QueueFs } from './log/fs.js';
import { segmentName } from './log/segment.js';
import { readRanges, type WantedRange } from './log/batch-read.js';
import { GroupWriter } from './log/writer.js';
import { FRAME_HEADER } from './record/frame.js';
import {
  DONE_COMPLETED,
  DONE_DELETED,
  DONE_MOVED,
  decodeEnvelope,
  type EnvelopeInfo,
  type EnvelopeRecord,
  formatId,
  OUTCOME_DELIVERED,
  OUTCOME_FAILED,
  type RecipientInfo,
} from './record/records.js';
import { type RecoveryReport, recover } from './recovery.js';
import { F_INFLIGHT, NO_SLOT, UNPLACED } from './state/tables.js';
import type {
  AcceptInput,
  AcceptResult,
  Deliverer,
  DeliveryJob,
  QueueEvent,
  QueueHooks,
  RcptOutcome,
  ReportKind,
} from './types.js';

export interface QueueOptions {
  dir: string;
  fs?: QueueFs;
  clock?: Clock;
  ids?: IdSource;
  /** Retry ladder delays in ms (default 5m 15m 30m 1h 2h 4h 8h). */
  retry?: number[];
  maxAge?: number;
  delayWarning?: number;
  segmentSize?: number;
  /** Benchmark-only switch: no fdatasync. */
  sync?: boolean;
  maxInflight?: number;
  /** Deliveries in flight per flushed held lane (default 64): a long flush leaves room for other mail. */
  flushConcurrency?: number;
  /** How long an operator action waits for a delivery of the message in flight (default 30 s). */
  settleTimeoutMs?: number;
  /** Delay before a piece whose attempt could not be finished (read or write error) is tried again (default 30 s). */
  limboRetryMs?: number;
  hooks?: QueueHooks;
  /** Memory budget for message bytes (shared by the queues of one process). */
  budget?: MemoryBudget;
  /** Bytes a spool buffers before it writes a chunk record (tests make it small). */
  chunkSize?: number;
  onProgress?: (done: number, total: number) => void;
}

/** What an operator action did to one message. */
export interface ActionOutcome {
  /** Pieces (envelopes) acted on. */
  pieces: number;
  /** Pieces left alone because a delivery of them was still in flight when the wait ran out. */
  busy: number;
}

export const DEFAULT_RETRY = [5, 15, 30, 60, 120, 240, 480].map((m) => m * 60_000);
const HISTORY_MAX = 20;
/** Messages whose accepted bytes are kept in memory for their first attempt (see freshData). */
const FRESH_MAX = 4096;
/** Longest sleep of the expiry timer: a clock step is noticed within this. */
const EXPIRY_TICK_MAX = 60_000;
/** Held pieces expiring at once (their bounces share fdatasyncs). */
const EXPIRY_BATCH = 64;
/** Pieces in which data is read back from the log for delivery (a stream never holds more). */
export const READ_PIECE = 256 * 1024;
/** Reports include at most this much of the original message (headers only when it is larger). */
export const REPORT_DATA_MAX = 1024 * 1024;

export class Queue {
  readonly dir: string;
  readonly core: QueueCore;
  readonly writer: GroupWriter;
  readonly fs: QueueFs;
  readonly clock: Clock;
  readonly ids: IdSource;
  /**
   * Set while new mail must be refused although the queue writes (the disk was full and its
   * reserve is not yet back, queues.ts): accept() throws it; outcomes and reports still go in.
   */
  acceptRefusal: MtaError | undefined;
  /** Told once when the writer starts refusing writes (QUEUE_FULL or QUEUE_POISONED). */
  onRefused: ((q: Queue, e: MtaError) => void) | undefined;
  readonly retry: number[];
  /** The longest retry delay: no due time can lie further ahead unless the clock stepped back. */
  private readonly longestDelay: number;
  readonly maxAge: number;
  readonly delayWarning: number;
  readonly hooks: QueueHooks;
  readonly budget: MemoryBudget;
  readonly chunkSize: number;
  recovery: RecoveryReport | undefined;
  private deliverer: Deliverer | undefined;
  private running = false;
  private stopped = false;
  private inflight = 0;
  private readonly maxInflight: number;
  private readonly inflightJobs = new Map<number, Promise<void>>();
  /** Held pieces handed to an ATRN session (claimHeld), by slot: resolved when their job is finished. */
  private readonly claims = new Map<number, Promise<void>>();
  private readonly flushConcurrency: number;
  private readonly settleTimeoutMs: number;
  private readonly limboRetryMs: number;
  /** When every held piece gives up (arrival + its lane's max_age); see lanes/expiry.ts. */
  readonly expiry = new ExpiryHeap();
  private expiryLimit = 1024;
  private expiryTimer: (() => void) | undefined;
  private expiryAt = Number.POSITIVE_INFINITY;
  private expiring: Promise<number> | undefined;
  /**
   * Pieces of timed lanes whose attempt ended without a record (the envelope or data could not
   * be read, the outcome could not be written): they left their lane's FIFO when dispatched, so
   * they are put back after limboRetryMs rather than waiting for a restart.
   */
  private limbo: Array<{ slot: number; gen: number; lane: LaneState }> = [];
  private limboTimer: (() => void) | undefined;
  /**
   * Just-accepted envelopes and data kept in memory for their first attempt, so it needs no read
   * back. Envelopes by piece slot with the generation they were made current at (a slot can be
   * reused); data by message id. Bounded: past FRESH_MAX messages, or when it would take more
   * than half the memory budget, the attempt reads from disk. Chunked (large) data is never kept.
   */
  private readonly freshEnv = new Map<number, { gen: number; rec: EnvelopeRecord }>();
  private readonly freshData = new Map<number, { chunks: readonly Buffer[]; size: number }>();
  private readonly blocked = new Set<LaneState>();
  /** `new` and retry lanes, in creation order (see pumpAll). */
  private readonly timed: LaneState[] = [];
  private timedSeen = 0;
  /** Held lanes with a flush under way. */
  private readonly flushingLanes = new Set<LaneState>();
  private reclaiming = false;
  private compacting = false;
  private facetsIndexing: Promise<void> | undefined;
  private maintenance: (() => void) | undefined;

  private constructor(opts: QueueOptions) {
    this.dir = opts.dir;
    this.fs = opts.fs ?? new NodeQueueFs();
    this.clock = opts.clock ?? systemClock;
    this.ids = opts.ids ?? new IdSource(() => this.clock.now());
    this.retry = (opts.retry ?? DEFAULT_RETRY).slice();
    this.longestDelay = Math.max(0, ...this.retry);
    this.maxAge = opts.maxAge ?? 5 * 86_400_000;
    this.delayWarning = opts.delayWarning ?? 4 * 3_600_000;
    this.hooks = opts.hooks ?? {};
    this.maxInflight = opts.maxInflight ?? 2000;
    this.flushConcurrency = opts.flushConcurrency ?? 64;
    this.settleTimeoutMs = opts.settleTimeoutMs ?? 30_000;
    this.limboRetryMs = opts.limboRetryMs ?? 30_000;
    this.budget = opts.budget ?? new MemoryBudget(DEFAULT_MEMORY_BUDGET);
    this.chunkSize = opts.chunkSize ?? CHUNK_SIZE;
    this.writer = new GroupWriter({
      fs: this.fs,
      dir: this.dir,
      segmentSize: opts.segmentSize ?? 64 * 1024 * 1024,
      sync: opts.sync ?? true,
      now: () => this.clock.now(),
    });
    this.core = new QueueCore(this.writer);
    this.core.onHeldEntry = (pslot, gen, lane, arrival) => this.expiryEntry(pslot, gen, lane, arrival);
    this.writer.onDurable = () => this.afterDurable();
    this.writer.onRefused = (e) => this.onRefused?.(this, e);
  }

  /** Opens a queue directory: recovery is the only way in. */
  static async open(opts: QueueOptions): Promise<Queue> {
    const q = new Queue(opts);
    q.recovery = await recover(q, opts.onProgress);
    return q;
  }

  setDeliverer(d: Deliverer): void {
    this.deliverer = d;
  }

  /** Starts the lane runners: recovered `new` pieces are attempted, retry lanes wait for their due times. */
  start(): void {
    this.running = true;
    for (const lane of this.core.lanes) this.pump(lane);
    const tick = () => {
      this.maintain().catch((e) =>
        this.emit({ type: 'admin', id: '-', action: `maintenance failed: ${String(e)}` }),
      );
      this.maintenance = this.clock.setTimer(60_000, tick);
    };
    this.maintenance = this.clock.setTimer(60_000, tick);
    this.armExpiry();
    void this.reclaim();
  }

  /** Stops dispatching. Crash-only: nothing needs saving; in-flight jobs may still finish. */
  async stop(): Promise<void> {
    this.halt();
    await Promise.allSettled([...this.inflightJobs.values()]);
    await this.close();
  }

  /** Stops dispatching and every timer now; in-flight jobs are not waited for. */
  halt(): void {
    this.running = false;
    this.stopped = true;
    this.maintenance?.();
    this.expiryTimer?.();
    this.expiryTimer = undefined;
    this.limboTimer?.();
    this.limboTimer = undefined;
    for (const lane of this.core.lanes) {
      lane.cancelTimer?.();
      // A flush that cannot finish now ends here; its pieces stay held for the next start.
      if (lane.flush) this.endFlush(lane);
    }
  }

  /**
   * Stops all I/O now, whatever is still in flight (their outcomes are refused): when this
   * resolves the directory may be handed to another process. stop() ends with it.
   */
  async close(): Promise<void> {
    await this.writer.close();
    this.fs.closeHandles?.();
  }

  get pendingBytes(): number {
    return this.writer.pendingBytes;
  }

  get poisoned(): MtaError | undefined {
    return this.writer.poisoned;
  }

  private emit(ev: QueueEvent): void {
    this.hooks.onEvent?.(ev);
  }

  // ------------------------------------------------------------------ accepting

  /**
   * A spool for the data of a message being received (streamed to the log in chunks once it is
   * large); pass it as `data` to accept() on this queue, or abort() it.
   */
  spool(msgId: number): DataSpool {
    this.ids.observe(msgId);
    return new DataSpool(
      {
        core: this.core,
        writer: this.writer,
        budget: this.budget,
        readSegment: (lane, seq, off, len) =>
          this.fs.read(`${this.dir}/lanes/${lane}/${segmentName(seq)}`, off, len),
      },
      msgId,
      this.chunkSize,
    );
  }

  /** Accepts a message; resolves once it is durable (the caller may then reply 250). */
  async accept(input: AcceptInput): Promise<AcceptResult> {
    const spool = input.data instanceof DataSpool ? input.data : undefined;
    let fresh: { msgId: number; size: number; toNew: boolean; uncount: number };
    try {
      if (this.acceptRefusal) throw this.acceptRefusal;
      if (spool) {
        if (spool.host.core !== this.core)
          throw new MtaError('WRONG_QUEUE', 'transient', 'a spool is accepted by the queue that made it');
        if (input.msgId !== undefined && input.msgId !== spool.msgId)
          throw new MtaError('WRONG_ID', 'transient', 'a spool is accepted under its own message id');
        await spool.finishWriting();
        if (spool.failed) throw spool.failed;
        if (spool.state !== 'open')
          throw new MtaError('SPOOL_CLOSED', 'transient', 'the message data was discarded');
      }
      fresh = this.acceptInternal(spool ? { ...input, msgId: spool.msgId } : input);
    } catch (e) {
      spool?.abort();
      throw e;
    }
    try {
      await this.writer.commit();
    } catch (e) {
      this.dropFresh(fresh.msgId);
      throw e;
    } finally {
      this.budget.sub(fresh.uncount);
    }
    const id = formatId(fresh.msgId);
    this.emit({ type: 'accepted', id, size: fresh.size, recipients: input.recipients.length });
    if (fresh.toNew) this.pump(this.core.newLane());
    return { id, msgId: fresh.msgId };
  }

  /**
   * Appends a message's records without waiting (the caller commits). Returns, in `uncount`,
   * budget bytes (a spool's last buffered bytes) to release once the commit is over.
   */
  private acceptInternal(input: AcceptInput): {
    msgId: number;
    size: number;
    toNew: boolean;
    uncount: number;
  } {
    if (this.writer.poisoned) throw this.writer.poisoned;
    if (input.recipients.length === 0)
      throw new MtaError('NO_RECIPIENTS', 'permanent', 'a message needs at least one recipient');
    const core = this.core;
    const now = this.clock.now();
    const msgId = input.msgId ?? this.ids.next();
    // An id from our own IdSource is above every id seen, so only a given one can clash.
    if (input.msgId !== undefined) {
      this.ids.observe(msgId);
      if (core.msgs.byId.has(msgId))
        throw new MtaError('DUPLICATE_ID', 'transient', `message id ${formatId(msgId)} already queued`);
    }
    const arrival = input.arrival ?? now;
    // The data: given whole, or a spool's — whose last bytes are either the whole message (it was
    // never chunked) or its last chunk. Nothing below throws, so the spool is never left half taken.
    const spool = input.data instanceof DataSpool ? input.data : undefined;
    const taken = spool?.take();
    const chunks: readonly Buffer[] = taken ? taken.views : (input.data as readonly Buffer[]);
    let size = taken ? taken.offset + taken.bytes : 0;
    if (!taken) for (const b of chunks) size += b.length;
    let uncount = taken?.bytes ?? 0;
    // Recipients grouped by first lane; the common case (everything to `new`) builds no map.
    const groups = new Map<LaneState, number[] | null>();
    const dests = input.destinations;
    if (!dests || dests.every((d) => d.kind === 'new')) groups.set(core.newLane(), null);
    else {
      for (let i = 0; i < input.recipients.length; i++) {
        const d = dests[i] ?? { kind: 'new' as const };
        const lane =
          d.kind === 'held'
            ? core.heldLane(d.domain)
            : d.kind === 'hold'
              ? core.lane('hold')
              : core.newLane();
        let g = groups.get(lane);
        if (!g) groups.set(lane, (g = []));
        g.push(i);
      }
    }
    const onlyNew = groups.size === 1 && groups.has(core.newLane());
    const mslot = core.newMessage(msgId, arrival);
    if (spool?.chunked) {
      // The last chunk completes the data: from its placement on the message owns every chunk.
      const extents = spool.extents;
      const lane = core.dataLane();
      core.appendChunk(lane, msgId, taken!.offset, true, chunks, taken!.bytes, (e) => {
        extents.push(e);
        core.setChunked(mslot, msgId, lane, extents);
      });
    } else core.putData(mslot, onlyNew ? core.newLane() : core.dataLane(), chunks, size);
    const base: EnvelopeInfo = {
      sender: input.sender,
      recipients: input.recipients,
      size,
      attempts: 0,
      history: [{ t: now, ev: 'received' }],
    };
    if (input.ret) base.ret = input.ret;
    if (input.envid !== undefined) base.envid = input.envid;
    if (input.smtputf8) base.smtputf8 = true;
    if (input.body) base.body = input.body;
    if (input.client) base.client = input.client;
    if (input.report) base.report = true;
    let pieceNo = 0;
    let toNew = false;
    for (const [lane, idxs] of groups) {
      const pslot = core.addPiece(mslot, pieceNo);
      const rec: EnvelopeRecord = {
        msgId,
        piece: pieceNo,
        version: 1,
        due: arrival,
        arrival,
        rcptCount: idxs ? idxs.length : input.recipients.length,
        info: idxs ? { ...base, recipients: idxs.map((i) => input.recipients[i]!) } : base,
      };
      core.putEnvelope(pslot, lane, rec);
      if (lane.kind === 'new') {
        if (this.freshEnv.size < FRESH_MAX) this.freshEnv.set(pslot, { gen: core.pieces.gen[pslot]!, rec });
        toNew = true;
      }
      pieceNo++;
    }
    if (toNew && !spool?.chunked && this.freshData.size < FRESH_MAX) {
      // Kept for the first attempt only while that leaves half the budget to arriving mail.
      if (taken ? this.budget.used <= this.budget.limit / 2 : this.budget.roomForCache(size)) {
        if (!taken) this.budget.add(size);
        this.freshData.set(msgId, { chunks, size });
        uncount = 0;
      }
    }
    return { msgId, size, toNew, uncount };
  }

  private dropFresh(msgId: number): void {
    const f = this.freshData.get(msgId);
    if (f === undefined) return;
    this.freshData.delete(msgId);
    this.budget.sub(f.size);
  }

  // ------------------------------------------------------------------ running lanes

  private afterDurable(): void {
    if (this.blocked.size > 0) {
      const lanes = [...this.blocked];
      this.blocked.clear();
      for (const l of lanes) this.pump(l);
    }
    // Not while recovery runs: it still reads (and sets aside) segments that may look empty.
    if (!this.reclaiming && this.recovery) void this.reclaim();
  }

  /** Dispatches what is due in a lane (or, for a held lane, what its flush has left), up to the in-flight limit. */
  pump(lane: LaneState): void {
    if (lane.held) {
      this.pumpFlush(lane);
      return;
    }
    if (!this.running || !this.deliverer || this.writer.poisoned) return;
    const P = this.core.pieces;
    const now = this.clock.now();
    while (this.inflight < this.maxInflight && lane.fifo.length > 0) {
      const slot = lane.fifo.slotAt(0);
      const gen = lane.fifo.genAt(0);
      if (!this.core.isCurrentIn(lane, slot, gen)) {
        lane.fifo.shift();
        if (lane.flushLeft > 0) lane.flushLeft--;
        continue;
      }
      if (P.batch[slot]! > this.writer.durableBatch) {
        this.blocked.add(lane); // not durable yet: never deliver what could still be lost
        break;
      }
      if (lane.kind === 'retry' && lane.flushLeft <= 0 && P.due[slot]! > now) {
        // A due time further ahead than any retry delay was written under a clock that was
        // ahead and has since stepped back: it is due now (docs/queue-states.md, clock steps).
        if (P.due[slot]! > now + Math.max(lane.delay, this.longestDelay)) P.due[slot] = now;
        else {
          this.schedule(lane, P.due[slot]!);
          break;
        }
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
    if (this.writer.poisoned || !this.deliverer) {
      // Nothing can be delivered or recorded: the flush is over (its pieces stay held).
      this.endFlush(lane);
      return;
    }
    if (!this.running) return;
    const P = this.core.pieces;
    while (f.pos < f.slots.length) {
      if (this.inflight >= this.maxInflight || lane.flushInflight >= this.flushConcurrency) return;
      const slot = f.slots[f.pos]!;
      if (!this.core.isCurrentIn(lane, slot, f.gens[f.pos]!) || (P.flags[slot]! & F_INFLIGHT) !== 0) {
        f.pos++;
        continue;
      }
      if (P.batch[slot]! > this.writer.durableBatch) {
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
    const lanes = this.core.lanes;
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
    lane.cancelTimer = this.clock.setTimer(at - this.clock.now(), () => {
      lane.cancelTimer = undefined;
      this.pump(lane);
    });
  }

  private dispatch(pslot: number, lane: LaneState): void {
    const P = this.core.pieces;
    P.flags[pslot]! |= F_INFLIGHT;
    this.inflight++;
    if (lane.held) lane.flushInflight++;
    const gen = P.gen[pslot]!;
    const m = P.msg[pslot]!;
    const msgId = this.core.msgs.head[m] === NO_SLOT ? undefined : this.core.msgs.id[m];
    const run = (async () => {
      const fresh = this.freshEnv.get(pslot);
      this.freshEnv.delete(pslot);
      const env = fresh && fresh.gen === gen ? fresh.rec : await this.readEnvelope(pslot);
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
          if (!lane.held && this.core.isLive(pslot)) this.toLimbo(pslot, gen, lane);
        }
        // After the first attempt the data is read from disk: memory holds only mail in flight.
        if (msgId !== undefined) this.dropFresh(msgId);
        this.pumpAll();
      });
  }

  private toLimbo(slot: number, gen: number, lane: LaneState): void {
    this.limbo.push({ slot, gen, lane });
    if (this.limboTimer || !this.running) return;
    this.limboTimer = this.clock.setTimer(this.limboRetryMs, () => {
      this.limboTimer = undefined;
      const list = this.limbo;
      this.limbo = [];
      const lanes = new Set<LaneState>();
      for (const { slot, gen, lane } of list) {
        if (!this.core.isCurrentIn(lane, slot, gen)) continue;
        if ((this.core.pieces.flags[slot]! & F_INFLIGHT) !== 0) continue;
        lane.fifo.push(slot, gen);
        lanes.add(lane);
      }
      for (const l of lanes) this.pump(l);
    });
  }

  private makeJob(pslot: number, gen: number, env: EnvelopeRecord, lane: LaneState): DeliveryJob {
    const P = this.core.pieces;
    const done = this.core.deltas.get(pslot);
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
      attempts: this.attemptsOf(pslot, env),
      pending,
      data: () => this.readDataParts(mslot, env.msgId),
      stream: () => this.dataStream(mslot, env.msgId),
      record: (outcomes) => this.recordOutcomes(pslot, gen, env, outcomes),
      finish: (outcomes) => this.finishJob(pslot, gen, env, pending, outcomes),
    };
    const f = lane.flush;
    if (f) job.flush = f.reachableSince !== undefined ? { reachableSince: f.reachableSince } : {};
    return job;
  }

  /** Attempts so far: the envelope's count plus the held deferrals since it was written (in memory). */
  attemptsOf(pslot: number, env: EnvelopeRecord): number {
    return env.info.attempts + (this.core.unwritten.get(pslot)?.attempts ?? 0);
  }

  async readEnvelope(pslot: number): Promise<EnvelopeRecord> {
    const P = this.core.pieces;
    const lane = this.core.laneOf(pslot);
    if (P.seq[pslot] === UNPLACED) {
      await this.writer.commit();
    }
    const buf = await this.fs.read(
      `${this.dir}/lanes/${lane.name}/${segmentName(P.seq[pslot]!)}`,
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
    const P = this.core.pieces;
    const out = new Map<number, EnvelopeRecord>();
    if (slots.some((p) => P.seq[p] === UNPLACED)) await this.writer.commit();
    const gens = new Map<number, number>();
    const wanted: WantedRange[] = [];
    for (const p of slots) {
      if (!this.core.isLive(p) || P.seq[p] === UNPLACED) continue;
      gens.set(p, P.gen[p]!);
      wanted.push({
        key: p,
        path: `${this.dir}/lanes/${this.core.laneOf(p).name}/${segmentName(P.seq[p]!)}`,
        off: P.off[p]! + FRAME_HEADER,
        len: P.len[p]! - FRAME_HEADER,
      });
    }
    await readRanges(this.fs, wanted, (p, bytes) => {
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
        const P = this.core.pieces;
        // A read can miss a piece that moved meanwhile (its new version's facets are known then);
        // a few passes pick up what a failed read left.
        for (let pass = 0; pass < 3; pass++) {
          const todo: number[] = [];
          for (const m of this.core.msgs.byId.values())
            for (let p = this.core.msgs.head[m]!; p !== NO_SLOT; p = P.next[p]!)
              if (this.core.isLive(p) && !this.core.facets.known(p)) todo.push(p);
          if (todo.length === 0) break;
          for (let i = 0; i < todo.length; i += 4096) {
            const part = todo.slice(i, i + 4096);
            const gens = part.map((p) => P.gen[p]!);
            const envs = await this.readEnvelopes(part);
            part.forEach((p, k) => {
              const e = envs.get(p);
              if (e && P.gen[p] === gens[k] && !this.core.facets.known(p)) this.core.facets.set(p, e);
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
    const fresh = this.freshData.get(msgId);
    if (fresh && this.core.msgs.id[mslot] === msgId) return fresh.chunks as readonly Buffer[];
    return [await this.readData(mslot, msgId)];
  }

  /** The whole data of a message in one buffer (small messages; see dataStream for any size). */
  async readData(mslot: number, msgId: number): Promise<Buffer> {
    const M = this.core.msgs;
    if (M.id[mslot] !== msgId)
      throw new MtaError('MESSAGE_GONE', 'permanent', `message ${formatId(msgId)} is no longer queued`);
    const fresh = this.freshData.get(msgId);
    if (fresh) return fresh.chunks.length === 1 ? fresh.chunks[0]! : Buffer.concat(fresh.chunks as Buffer[]);
    if (M.dataSeq[mslot] === UNPLACED) await this.writer.commit();
    if (this.core.chunked.has(mslot)) {
      const parts: Buffer[] = [];
      for await (const b of this.dataStream(mslot, msgId)) parts.push(b);
      return Buffer.concat(parts);
    }
    const lane = this.core.lanes[M.dataLane[mslot]!]!;
    return this.fs.read(
      `${this.dir}/lanes/${lane.name}/${segmentName(M.dataSeq[mslot]!)}`,
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
    const M = this.core.msgs;
    const gone = () =>
      new MtaError('MESSAGE_GONE', 'permanent', `message ${formatId(msgId)} is no longer queued`);
    if (M.id[mslot] !== msgId) throw gone();
    const fresh = this.freshData.get(msgId);
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
      if (M.dataSeq[mslot] === UNPLACED) await this.writer.commit();
      const end = Math.min(M.dataLen[mslot]!, limit);
      if (pos >= end) return;
      const at = this.core.dataAt(mslot, pos, Math.min(piece, end - pos));
      let buf: Buffer;
      try {
        buf = await this.fs.read(`${this.dir}/lanes/${at.lane}/${segmentName(at.seq)}`, at.off, at.len);
      } catch (e) {
        // The copy just read may have been replaced and unlinked (compaction): look again, once.
        const moved = M.id[mslot] === msgId && this.core.dataAt(mslot, pos, at.len).seq !== at.seq;
        if (!moved || retried) throw e;
        retried = true;
        continue;
      }
      retried = false;
      pos += buf.length;
      yield buf;
    }
  }

  // ------------------------------------------------------------------ outcomes

  private async recordOutcomes(
    pslot: number,
    gen: number,
    env: EnvelopeRecord,
    outcomes: RcptOutcome[],
  ): Promise<void> {
    const core = this.core;
    if (core.pieces.gen[pslot] !== gen || !core.isLive(pslot)) return;
    const finals = outcomes.filter((o) => o.status !== 'deferred' && !core.deltas.get(pslot)?.has(o.rcpt));
    if (finals.length === 0) return;
    const now = this.clock.now();
    for (const o of finals) {
      const detail: { t: number; code?: number; enhanced?: string; text?: string; host?: string } = {
        t: now,
      };
      if (o.code !== undefined) detail.code = o.code;
      if (o.enhanced !== undefined) detail.enhanced = o.enhanced;
      if (o.text !== undefined) detail.text = o.text;
      if (o.host !== undefined) detail.host = o.host;
      core.putDelta(pslot, {
        rcpt: o.rcpt,
        outcome: o.status === 'delivered' ? OUTCOME_DELIVERED : OUTCOME_FAILED,
        detail,
      });
    }
    const data = (await this.reportsNeedData(env, finals))
      ? await this.reportData(core.pieces.msg[pslot]!, env.msgId).catch(() => Buffer.alloc(0))
      : Buffer.alloc(0);
    this.appendReports(env, finals, data, now);
    await this.writer.commit();
    this.emitOutcomes(env, finals);
    this.pump(core.newLane());
  }

  private emitOutcomes(env: EnvelopeRecord, outs: RcptOutcome[]): void {
    if (!this.hooks.onEvent) return;
    const id = formatId(env.msgId);
    for (const o of outs) {
      const ev: QueueEvent = { type: o.status, id, rcpt: env.info.recipients[o.rcpt]?.address ?? '?' };
      if (o.code !== undefined) ev.code = o.code;
      if (o.enhanced !== undefined) ev.enhanced = o.enhanced;
      if (o.text !== undefined) ev.text = o.text;
      if (o.host !== undefined) ev.host = o.host;
      this.emit(ev);
    }
  }

  /** What a report may quote of the original: all of it up to REPORT_DATA_MAX, else its start. */
  private async reportData(mslot: number, msgId: number): Promise<Buffer> {
    if (this.core.msgs.dataLen[mslot]! <= REPORT_DATA_MAX || this.freshData.has(msgId))
      return this.readData(mslot, msgId).then((b) =>
        b.length > REPORT_DATA_MAX ? b.subarray(0, REPORT_DATA_MAX) : b,
      );
    const parts: Buffer[] = [];
    for await (const b of this.dataStream(mslot, msgId, READ_PIECE, REPORT_DATA_MAX)) parts.push(b);
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  private async reportsNeedData(env: EnvelopeRecord, outs: RcptOutcome[]): Promise<boolean> {
    if (!this.hooks.report || env.info.report || env.info.sender === '') return false;
    return outs.some(
      (o) =>
        o.status === 'failed' || (o.status === 'delivered' && wants(env.info.recipients[o.rcpt], 'SUCCESS')),
    );
  }

  /** Appends reports (bounce, success) for these outcomes to the current batch. */
  private appendReports(
    env: EnvelopeRecord,
    outs: RcptOutcome[],
    data: Buffer,
    now: number,
    delay: RcptOutcome[] = [],
  ): void {
    const report = this.hooks.report;
    if (!report || env.info.report || env.info.sender === '') return; // never a report to <> or about a report
    const kinds: Array<[ReportKind, RcptOutcome[]]> = [
      [
        'failure',
        outs.filter(
          (o) =>
            o.status === 'failed' &&
            !wants(env.info.recipients[o.rcpt], 'NEVER') &&
            (notifyOf(env.info.recipients[o.rcpt]) === undefined ||
              wants(env.info.recipients[o.rcpt], 'FAILURE')),
        ),
      ],
      [
        'success',
        outs.filter((o) => o.status === 'delivered' && wants(env.info.recipients[o.rcpt], 'SUCCESS')),
      ],
      ['delay', delay],
    ];
    for (const [kind, list] of kinds) {
      if (list.length === 0) continue;
      const msg = report({
        kind,
        id: formatId(env.msgId),
        envelope: env,
        recipients: list.map((o) => ({ info: env.info.recipients[o.rcpt]!, outcome: o })),
        data,
        now,
      });
      if (msg) this.acceptInternal({ ...msg, report: true });
    }
  }

  private nextLane(lane: LaneState): LaneState {
    const core = this.core;
    if (this.retry.length === 0) return core.lane('hold');
    if (lane.kind !== 'retry') return core.retryLane(this.retry[0]!);
    const next = this.retry.find((d) => d > lane.delay);
    return core.retryLane(next ?? this.retry[this.retry.length - 1]!);
  }

  private async finishJob(
    pslot: number,
    gen: number,
    env: EnvelopeRecord,
    pending: number[],
    outcomes: RcptOutcome[],
  ): Promise<void> {
    const core = this.core;
    const P = core.pieces;
    if (P.gen[pslot] !== gen || !core.isLive(pslot)) return; // changed meanwhile (operator action): outcome is stale
    const lane = core.laneOf(pslot);
    const now = this.clock.now();
    const done = core.deltas.get(pslot);
    const byRcpt = new Map<number, RcptOutcome>();
    for (const o of outcomes) if (!done?.has(o.rcpt)) byRcpt.set(o.rcpt, o);
    const expired = now - env.arrival >= this.maxAgeOf(lane);
    for (const r of pending) {
      if (done?.has(r) || byRcpt.has(r)) continue;
      // Not tried in this job (expiry, an operator action). An expired recipient's report says
      // what its last attempt met, which a held piece keeps in memory when nothing was written.
      const last = expired ? (core.unwritten.get(pslot)?.last ?? env.info.recipients[r]?.last) : undefined;
      byRcpt.set(r, { rcpt: r, status: 'deferred', text: last ? `last error: ${last}` : 'not attempted' });
    }
    const finals: RcptOutcome[] = [];
    const deferred: RcptOutcome[] = [];
    for (const o of byRcpt.values()) {
      if (o.status !== 'deferred') finals.push(o);
      else if (expired) {
        const e: RcptOutcome = {
          ...o,
          status: 'failed',
          enhanced: '4.4.7',
          text: `delivery time expired${o.text ? `: ${o.text}` : ''}`,
        };
        finals.push(e);
        this.emit({
          type: 'expired',
          id: formatId(env.msgId),
          rcpt: env.info.recipients[o.rcpt]?.address ?? '?',
        });
      } else deferred.push(o);
    }
    // Delay warnings: once per message, for recipients that asked for them.
    const delayList =
      deferred.length > 0 && !env.info.warned && now - env.arrival >= this.delayWarning
        ? deferred.filter((o) => wants(env.info.recipients[o.rcpt], 'DELAY'))
        : [];
    // Where deferred recipients go: their held lane, or the next rung of the ladder.
    const groups = new Map<LaneState, RcptOutcome[]>();
    for (const o of deferred) {
      const target = o.hold
        ? core.heldLane(o.hold)
        : lane.kind === 'held' || lane.kind === 'hold'
          ? lane
          : this.nextLane(lane);
      let g = groups.get(target);
      if (!g) groups.set(target, (g = []));
      g.push(o);
    }
    const keepInPlace =
      groups.size === 1 &&
      groups.has(lane) &&
      lane.kind !== 'retry' &&
      lane.kind !== 'new' &&
      finals.length === 0 &&
      delayList.length === 0;
    if (keepInPlace) {
      // A held piece nobody could take: nothing to write. It never left its lane's FIFO, so the
      // next flush, ATRN or expiry finds it; the attempt is counted in memory only.
      if (outcomes.length > 0) {
        const u = core.unwritten.get(pslot);
        const last = describe(deferred[0]!);
        if (u) {
          u.attempts++;
          u.last = last;
          u.at = now;
        } else core.unwritten.set(pslot, { attempts: 1, last, at: now });
      }
      return;
    }
    const mslot = P.msg[pslot]!;
    // Data must live in the data lane once any piece leaves `new`; data still in `new` is
    // copied (it was written whole, so it is small: large data is streamed to `data` at once).
    const relocate =
      core.lanes[core.msgs.dataLane[mslot]!]!.kind !== 'data' &&
      [...groups.keys()].some((l) => l.kind !== 'new');
    const reportData =
      (await this.reportsNeedData(env, finals)) || delayList.length > 0
        ? await this.reportData(mslot, env.msgId)
        : Buffer.alloc(0);
    const data = relocate ? await this.readData(mslot, env.msgId) : undefined;
    if (P.gen[pslot] !== gen || !core.isLive(pslot)) return;
    if (groups.size === 0) {
      core.killPiece(pslot, DONE_COMPLETED, 1);
    } else {
      if (data && core.lanes[core.msgs.dataLane[mslot]!]!.kind !== 'data')
        core.putData(mslot, core.dataLane(), [data], data.length);
      const oldVersion = P.version[pslot]!;
      const attempts = this.attemptsOf(pslot, env) + 1;
      let first = true;
      for (const [target, list] of groups) {
        const info: EnvelopeInfo = {
          ...env.info,
          recipients: list.map((o) => ({ ...env.info.recipients[o.rcpt]!, last: describe(o) })),
          attempts,
          history: [
            ...env.info.history,
            {
              t: now,
              ev: target.kind === 'held' ? `held for ${target.domain}` : `deferred to ${target.name}`,
              detail: describe(list[0]!),
            },
          ].slice(-HISTORY_MAX),
        };
        const last = list.find((o) => o.text)?.text;
        if (last !== undefined) info.lastError = describe(list.find((o) => o.text)!);
        if (delayList.length > 0) info.warned = true;
        const due = target.kind === 'retry' ? now + target.delay : now;
        if (first) {
          core.putEnvelope(pslot, target, {
            msgId: env.msgId,
            piece: env.piece,
            version: oldVersion + 1,
            due,
            arrival: env.arrival,
            rcptCount: list.length,
            info,
          });
          first = false;
        } else {
          const pno = core.msgs.nextPieceNo[mslot]!;
          const np = core.addPiece(mslot, pno);
          core.putEnvelope(
            np,
            target,
            {
              msgId: env.msgId,
              piece: pno,
              version: 1,
              due,
              arrival: env.arrival,
              rcptCount: list.length,
              info,
            },
            2,
          ); // a split-off piece is durable only after the parent's new version (phase 2)
        }
        this.emit({ type: 'moved', id: formatId(env.msgId), lane: target.name });
      }
      // The old version dies only after every replacement is durable (phase 3).
      core.appendDone(lane.name, env.msgId, env.piece, oldVersion, DONE_MOVED, 3);
    }
    this.appendReports(env, finals, reportData, now, delayList);
    await this.writer.commit();
    this.emitOutcomes(env, [...finals, ...deferred]);
    for (const target of groups.keys()) if (target.kind === 'new') this.pump(target);
    this.pump(core.newLane());
  }

  // ------------------------------------------------------------------ garbage

  private async reclaim(): Promise<void> {
    if (this.reclaiming) return;
    this.reclaiming = true;
    try {
      for (;;) {
        const list = this.core.reclaimable();
        if (list.length === 0) break;
        for (const { lane, seq } of list) {
          try {
            await this.writer.unlinkSegment(lane.name, seq);
            this.core.forgetSegment(lane, seq);
            this.emit({ type: 'segment-unlinked', lane: lane.name, seq });
          } catch (e) {
            const s = lane.segs.get(seq);
            if (s) s.busy = false;
            if ((e as NodeJS.ErrnoException).code === 'ENOENT') this.core.forgetSegment(lane, seq);
            else break;
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
    const core = this.core;
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
        const buf = await this.readData(mslot, id).catch(() => undefined);
        if (!buf || M.id[mslot] !== id || M.dataSeq[mslot] !== seq || core.chunked.has(mslot)) continue;
        core.putData(mslot, dataLane, [buf], buf.length);
        moved++;
        pending += buf.length;
        if (pending >= this.chunkSize) {
          pending = 0;
          await this.writer.commit();
        }
      }
      await this.writer.commit();
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
    const core = this.core;
    const M = core.msgs;
    const lane = core.dataLane();
    const extents: Extent[] = [];
    const total = M.dataLen[mslot]!;
    let offset = 0;
    let views: Buffer[] = [];
    let buffered = 0;
    try {
      for await (const b of this.dataStream(mslot, msgId)) {
        views.push(b);
        buffered += b.length;
        if (buffered >= this.chunkSize && offset + buffered < total) {
          core.appendChunk(lane, msgId, offset, false, views, buffered, (e) => extents.push(e));
          offset += buffered;
          views = [];
          buffered = 0;
          await this.writer.commit();
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
    await this.writer.commit();
    return true;
  }

  /** Give-up age of a lane's mail: the domain's max_age for held lanes, else the queue's. */
  maxAgeOf(lane: LaneState): number {
    if (lane.maxAge === undefined)
      lane.maxAge = lane.kind === 'held' ? (this.hooks.maxAgeFor?.(lane.domain) ?? this.maxAge) : this.maxAge;
    return lane.maxAge;
  }

  /** A piece became current in a held or hold lane: note when it gives up. */
  private expiryEntry(pslot: number, gen: number, lane: LaneState, arrival: number): void {
    const at = arrival + this.maxAgeOf(lane);
    if (this.expiry.size >= this.expiryLimit) {
      // Entries of pieces that moved on or ended outnumber the live ones: drop them (amortised O(1)).
      this.expiry.compact((slot, g) => this.core.pieces.gen[slot] === g && this.core.isLive(slot));
      this.expiryLimit = Math.max(1024, 2 * this.expiry.size);
    }
    this.expiry.push(at, pslot, gen);
    if (at < this.expiryAt) this.armExpiry();
  }

  /** Sets the expiry timer for the earliest deadline (at most EXPIRY_TICK_MAX ahead). */
  private armExpiry(): void {
    if (!this.running) return;
    const now = this.clock.now();
    // A queue that refuses writes cannot bounce anything: look again a while later, no sooner.
    const at = this.writer.poisoned
      ? now + EXPIRY_TICK_MAX
      : Math.min(this.expiry.peek(), now + EXPIRY_TICK_MAX);
    if (this.expiryTimer && this.expiryAt <= at) return;
    this.expiryTimer?.();
    this.expiryAt = at;
    this.expiryTimer = this.clock.setTimer(Math.max(0, at - now), () => {
      this.expiryTimer = undefined;
      this.expiryAt = Number.POSITIVE_INFINITY;
      this.expireHeld()
        .catch((e) => this.emit({ type: 'admin', id: '-', action: `expiry failed: ${String(e)}` }))
        .finally(() => this.armExpiry());
    });
  }

  /**
   * Bounces (RFC 3464, via finishJob) every held or operator-held piece whose arrival plus its
   * lane's max_age has passed, whether or not a flush ever touched it. Only expired entries are
   * visited (lanes/expiry.ts); a piece in flight is looked at again a little later, when its
   * attempt has ended (an attempt that ends after the deadline bounces by itself). Returns how
   * many pieces it ended.
   */
  expireHeld(): Promise<number> {
    this.expiring ??= this.sweepExpired().finally(() => {
      this.expiring = undefined;
    });
    return this.expiring;
  }

  private async sweepExpired(): Promise<number> {
    if (this.writer.poisoned) return 0;
    const core = this.core;
    const P = core.pieces;
    const now = this.clock.now();
    const later: Array<{ slot: number; gen: number }> = [];
    let n = 0;
    let batch: Promise<void>[] = [];
    const expire = async (slot: number, gen: number): Promise<void> => {
      // Taken for the sweep: no flush or claim may deliver it while it is being bounced.
      const release = this.take(slot);
      try {
        const env = await this.readEnvelope(slot);
        if (P.gen[slot] !== gen || !core.isLive(slot)) return;
        await this.finishJob(slot, gen, env, this.pendingOf(slot, env), []);
        if (P.gen[slot] !== gen || !core.isLive(slot)) n++;
      } finally {
        release();
        // Still there (a clock step, a write that failed): it stays due for the next sweep.
        if (P.gen[slot] === gen && core.isLive(slot)) later.push({ slot, gen });
      }
    };
    while (this.expiry.peek() <= now) {
      const e = this.expiry.pop()!;
      if (P.gen[e.slot] !== e.gen || !core.isLive(e.slot)) continue;
      if ((P.flags[e.slot]! & F_INFLIGHT) !== 0) {
        later.push(e);
        continue;
      }
      batch.push(expire(e.slot, e.gen).catch(() => {}));
      if (batch.length >= EXPIRY_BATCH) {
        await Promise.all(batch);
        batch = [];
      }
    }
    await Promise.all(batch);
    const retryAt = now + Math.min(EXPIRY_TICK_MAX, 1_000);
    for (const e of later) this.expiry.push(retryAt, e.slot, e.gen);
    return n;
  }

  pendingOf(pslot: number, env: EnvelopeRecord): number[] {
    const done = this.core.deltas.get(pslot);
    const out: number[] = [];
    for (let i = 0; i < env.info.recipients.length; i++) if (!done?.has(i)) out.push(i);
    return out;
  }

  // ------------------------------------------------------------------ operator actions

  /**
   * Marks a piece in flight for work that is not a delivery (expiry, an operator action), so no
   * flush, claim or lane runner starts on it meanwhile. The returned function ends that: the
   * mark goes (unless the piece changed version, which clears it anyway) and its lane runs again.
   */
  private take(slot: number): () => void {
    const P = this.core.pieces;
    const gen = P.gen[slot]!;
    const lane = this.core.laneOf(slot);
    P.flags[slot]! |= F_INFLIGHT;
    return () => {
      if (P.gen[slot] === gen) P.flags[slot]! &= ~F_INFLIGHT;
      this.pump(lane);
    };
  }

  /**
   * Runs `act` on every live piece of a message, each once no delivery of it is in flight (an
   * attempt by the lane runner, a flush or an ATRN session). A piece that a delivery takes while
   * `act` awaits is waited for and tried again. After settleTimeoutMs, pieces still in flight are
   * left alone and counted as busy, so the caller can say which messages it could not act on.
   */
  private async settled(
    msgId: number,
    act: (pslot: number) => Promise<'done' | 'skip' | 'retry'>,
  ): Promise<ActionOutcome> {
    const core = this.core;
    const P = core.pieces;
    const deadline = this.clock.now() + this.settleTimeoutMs;
    const handled = new Set<number>(); // piece numbers acted on, or found to need nothing
    let pieces = 0;
    for (;;) {
      const m = core.msgs.byId.get(msgId);
      if (m === undefined) return { pieces, busy: 0 };
      const left = core.piecesOf(m).filter((p) => core.isLive(p) && !handled.has(P.piece[p]!));
      const busy: number[] = [];
      for (const p of left) {
        if ((P.flags[p]! & F_INFLIGHT) !== 0) {
          busy.push(p);
          continue;
        }
        const piece = P.piece[p]!;
        // Taken while the action works on it: no delivery may start on it meanwhile.
        const release = this.take(p);
        let r: 'done' | 'skip' | 'retry';
        try {
          r = await act(p);
        } finally {
          release();
        }
        if (r === 'retry') busy.push(p);
        else {
          handled.add(piece);
          if (r === 'done') pieces++;
        }
      }
      if (busy.length === 0) return { pieces, busy: 0 };
      const wait = this.clock.now();
      if (wait >= deadline) return { pieces, busy: busy.length };
      const running = busy
        .map((p) => this.inflightJobs.get(p) ?? this.claims.get(p))
        .filter((x): x is Promise<void> => x !== undefined);
      let cancel: (() => void) | undefined;
      await Promise.race([
        running.length > 0 ? Promise.allSettled(running) : new Promise((r) => setTimeout(r, 10)),
        new Promise<void>((r) => {
          cancel = this.clock.setTimer(deadline - wait, r);
        }),
      ]);
      cancel?.();
    }
  }

  /** Moves every live piece of a message to `target` as a new version with a history entry. */
  private async moveAll(
    msgId: number,
    target: (lane: LaneState) => LaneState | undefined,
    ev: string,
  ): Promise<ActionOutcome> {
    const core = this.core;
    const P = core.pieces;
    const r = await this.settled(msgId, async (pslot) => {
      const from = core.laneOf(pslot);
      const to = target(from);
      if (!to || to === from) return 'skip';
      const gen = P.gen[pslot]!;
      const env = await this.readEnvelope(pslot);
      const mslot = P.msg[pslot]!;
      const needData = to.kind !== 'new' && core.lanes[core.msgs.dataLane[mslot]!]!.kind !== 'data';
      const data = needData ? await this.readData(mslot, msgId) : undefined;
      if (P.gen[pslot] !== gen || !core.isLive(pslot)) return 'retry';
      const now = this.clock.now();
      if (data) core.putData(mslot, core.dataLane(), [data], data.length);
      const pending = this.pendingOf(pslot, env);
      const info: EnvelopeInfo = {
        ...env.info,
        recipients: pending.map((i) => env.info.recipients[i]!),
        attempts: this.attemptsOf(pslot, env),
        history: [...env.info.history, { t: now, ev }].slice(-HISTORY_MAX),
      };
      const oldVersion = P.version[pslot]!;
      core.putEnvelope(pslot, to, {
        ...env,
        version: oldVersion + 1,
        due: to.kind === 'retry' ? now + to.delay : now,
        rcptCount: pending.length,
        info,
      });
      core.appendDone(from.name, msgId, env.piece, oldVersion, DONE_MOVED, 3); // a moved Done is always the last phase
      return 'done';
    });
    await this.writer.commit();
    if (r.pieces > 0) this.emit({ type: 'admin', id: formatId(msgId), action: ev });
    this.pump(core.newLane());
    return r;
  }

  /** Administrative hold: the message waits in the hold lane until released. */
  hold(msgId: number): Promise<ActionOutcome> {
    return this.moveAll(
      msgId,
      (l) => (l.kind === 'hold' ? undefined : this.core.lane('hold')),
      'held by operator',
    );
  }

  /** Releases held pieces (operator hold, or a held domain) for an immediate attempt. */
  release(msgId: number): Promise<ActionOutcome> {
    return this.moveAll(
      msgId,
      (l) => (l.kind === 'hold' || l.kind === 'held' ? this.core.newLane() : undefined),
      'released by operator',
    );
  }

  /** Operator flush of one message: its pieces in the retry ladder are attempted now (moved to `new`). */
  flushMessage(msgId: number): Promise<ActionOutcome> {
    return this.moveAll(
      msgId,
      (l) => (l.kind === 'retry' ? this.core.newLane() : undefined),
      'flushed by operator',
    );
  }

  /** Deletes a message without any report. */
  async remove(msgId: number): Promise<ActionOutcome> {
    const r = await this.settled(msgId, async (p) => {
      this.freshEnv.delete(p);
      this.core.killPiece(p, DONE_DELETED, 1);
      return 'done';
    });
    if (this.core.msgs.byId.get(msgId) === undefined) this.dropFresh(msgId);
    await this.writer.commit();
    if (r.pieces > 0) this.emit({ type: 'admin', id: formatId(msgId), action: 'deleted by operator' });
    return r;
  }

  /** Ends a message now with a failure report to its sender for every pending recipient. */
  async bounce(msgId: number): Promise<ActionOutcome> {
    const P = this.core.pieces;
    const r = await this.settled(msgId, async (pslot) => {
      const gen = P.gen[pslot]!;
      const env = await this.readEnvelope(pslot);
      if (P.gen[pslot] !== gen) return 'retry';
      const pending = this.pendingOf(pslot, env);
      await this.finishJob(
        pslot,
        gen,
        env,
        pending,
        pending.map((r) => ({
          rcpt: r,
          status: 'failed',
          code: 550,
          enhanced: '5.0.0',
          text: 'returned to sender by the postmaster',
        })),
      );
      return 'done';
    });
    if (r.pieces > 0) this.emit({ type: 'admin', id: formatId(msgId), action: 'bounced by operator' });
    return r;
  }

  /** Attempts every piece of the retry ladder now (like `postqueue -f`). Returns how many. */
  flushRetries(): number {
    let n = 0;
    for (const lane of this.core.lanes) {
      if (lane.kind !== 'retry') continue;
      lane.flushLeft = lane.fifo.length;
      n += lane.live;
      this.pump(lane);
    }
    return n;
  }

  /** Live pieces in a domain's held lane: what an ETRN would make free. */
  heldCount(domain: string): number {
    return this.core.findHeldLane(domain)?.live ?? 0;
  }

  heldDomains(): string[] {
    return this.core.lanes.filter((l) => l.kind === 'held' && l.live > 0).map((l) => l.domain!);
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
    const lane = this.core.findHeldLane(domain);
    if (!lane || lane.live === 0 || this.stopped) return 0;
    const P = this.core.pieces;
    const { slots, gens } = this.core.heldOrder(lane, (p) => (P.flags[p]! & F_INFLIGHT) !== 0);
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
    const core = this.core;
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
      const envs = await this.readEnvelopes(slots);
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
        const e = await this.readEnvelope(slot).catch(() => undefined);
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
    const P = this.core.pieces;
    P.flags[slot]! |= F_INFLIGHT;
    let released!: () => void;
    const claim = new Promise<void>((r) => {
      released = r;
    });
    this.claims.set(slot, claim);
    const release = () => {
      if (this.claims.get(slot) === claim) this.claims.delete(slot);
      if (P.gen[slot] === gen) P.flags[slot]! &= ~F_INFLIGHT;
      released();
    };
    const job = this.makeJob(slot, gen, env, lane);
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

function notifyOf(r: RecipientInfo | undefined): string[] | undefined {
  return r?.notify;
}

function wants(r: RecipientInfo | undefined, what: string): boolean {
  return r?.notify?.includes(what) ?? false;
}

function describe(o: RcptOutcome): string {
  const parts: string[] = [];
  if (o.code !== undefined) parts.push(String(o.code));
  if (o.enhanced) parts.push(o.enhanced);
  if (o.text) parts.push(o.text);
  if (o.host) parts.push(`(${o.host})`);
  return parts.join(' ') || o.status;
}
