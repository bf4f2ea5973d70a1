// The facade of one queue directory: everything else in logmta uses the queue through this class
// (or Queues, for several directories). It composes the steps of a message's life, one file each:
//   accept.ts        a message in: data and envelopes appended, durable before accept() resolves
//   lanes/runner.ts  the lane runner: what is due is dispatched to the deliverer, flushes of held lanes
//   outcomes.ts      what an attempt's outcomes do: deltas, moves down the ladder, splits, reports
//   claim.ts         held mail handed to an ATRN session, one message at a time
//   operator.ts      hold, release, flush, delete, bounce of one message
//   expire.ts        held mail that reached its max_age is bounced
//   maintenance.ts   garbage segments unlinked, sparse data compacted
//   read.ts          envelopes and data read back from the log
//   recovery.ts      the only way in: the index rebuilt from the lanes at every start
// Rules kept (DESIGN.md §3): accept() resolves only after the batch holding the message's data and
// envelopes is durable; nothing is handed to delivery before its envelope is durable; an outcome
// is committed before the piece counts as done; a permanent failure's report is appended in the
// same batch as the failure.
import type { MtaError } from '../errors.js';
import type { Clock } from '../util/clock.js';
import { Acceptor } from './accept.js';
import { Claims, type HeldCursor } from './claim.js';
import { QueueContext, type QueueOptions } from './context.js';
import type { QueueCore } from './core.js';
import type { MemoryBudget } from './data/budget.js';
import type { DataSpool } from './data/spool.js';
import { Expiry } from './expire.js';
import type { IdSource } from './ids.js';
import type { ExpiryHeap } from './lanes/expiry.js';
import { Handover } from './lanes/handover.js';
import type { LaneState } from './lanes/lane.js';
import { LaneRunner } from './lanes/runner.js';
import type { QueueFs } from './log/fs.js';
import type { SparePool } from './log/spares.js';
import type { GroupWriter } from './log/writer.js';
import { Maintenance } from './maintenance.js';
import { type ActionOutcome, Operator } from './operator.js';
import { Outcomes } from './outcomes.js';
import { Reader } from './read.js';
import type { EnvelopeRecord } from './record/records.js';
import { type RecoveryReport, recover } from './recovery.js';
import type { AcceptInput, AcceptResult, Deliverer, DeliveryJob, QueueEvent, QueueHooks } from './types.js';
import { QueueView } from './view/queue-view.js';
import type { BatchListener } from './view/types.js';

export type { ActionOutcome, HeldCursor, QueueOptions };
export { DEFAULT_RETRY } from './context.js';
export { READ_PIECE, REPORT_DATA_MAX } from './read.js';

/** How often the maintenance tick (compaction, expiry, reclamation) runs. */
const MAINTENANCE_MS = 60_000;

let contextOf: (q: Queue) => QueueContext;

/**
 * The index, writer and file system behind a queue: for queue/'s own modules and for tests and
 * benchmarks only. index.ts does not export it, and the layering test keeps the rest of src/ on
 * index.ts, so admin, CLI and ODMR cannot reach the columns, flag bits or the writer.
 */
export function internals(q: Queue): {
  core: QueueCore;
  writer: GroupWriter;
  fs: QueueFs;
  spares: SparePool;
} {
  return contextOf(q);
}

export class Queue {
  static {
    contextOf = (q) => q.cx;
  }
  /** Told once when the writer starts refusing writes (QUEUE_FULL or QUEUE_POISONED). */
  onRefused: ((q: Queue, e: MtaError) => void) | undefined;
  recovery: RecoveryReport | undefined;
  /** The read model of this directory: messages, lanes and writer as plain values (view/). */
  readonly view: QueueView;
  private readonly cx: QueueContext;
  private readonly read: Reader;
  private readonly acceptor: Acceptor;
  private readonly outcomes: Outcomes;
  private readonly runner: LaneRunner;
  private readonly claims: Claims;
  private readonly operator: Operator;
  private readonly expire: Expiry;
  private readonly maintenance: Maintenance;
  private maintenanceTimer: (() => void) | undefined;
  private readonly batchListeners = new Set<BatchListener>();

  private constructor(opts: QueueOptions) {
    const cx = new QueueContext(opts);
    this.cx = cx;
    this.read = new Reader(cx);
    // The runner needs the outcomes and the outcomes run lanes: a closure breaks the circle.
    const pump = (lane: LaneState) => this.runner.pump(lane);
    this.acceptor = new Acceptor(cx, pump);
    this.outcomes = new Outcomes(cx, this.read, this.acceptor, pump);
    this.runner = new LaneRunner(cx, this.read, this.outcomes, opts);
    this.claims = new Claims(cx, this.read, this.runner);
    this.operator = new Operator(cx, this.read, this.outcomes, this.runner, opts);
    this.expire = new Expiry(cx, this.read, this.outcomes, (slot) => this.runner.take(slot));
    this.maintenance = new Maintenance(cx, this.read, () => this.expire.expireHeld());
    cx.writer.onDurable = (batch) => {
      cx.core.forgetDurable(batch);
      this.runner.unblock();
      // Not while recovery runs: it still reads (and sets aside) segments that may look empty.
      if (!this.maintenance.reclaiming && this.recovery) void this.maintenance.reclaim();
    };
    cx.writer.onRefused = (e) => this.onRefused?.(this, e);
    cx.writer.onBatch = (records, bytes, syncMs) => {
      for (const l of this.batchListeners) l(records, bytes, syncMs);
    };
    this.view = new QueueView(cx, this.read);
  }

  /** Told of every group commit (records, bytes, write + fdatasync ms); returns the unsubscribe. */
  onBatch(listener: BatchListener): () => void {
    this.batchListeners.add(listener);
    return () => this.batchListeners.delete(listener);
  }

  /** Told of every queue event (besides hooks.onEvent); returns the unsubscribe. */
  onEvent(listener: (ev: QueueEvent) => void): () => void {
    this.cx.eventListeners.add(listener);
    return () => this.cx.eventListeners.delete(listener);
  }

  /** Opens a queue directory: recovery is the only way in. */
  static async open(opts: QueueOptions): Promise<Queue> {
    const q = new Queue(opts);
    // The spare pool first: on a disk short of space its files are unlinked before recovery
    // needs room, and what it numbers next is known before the first freed segment comes.
    const spares = await q.cx.spares.open();
    try {
      q.recovery = await recover(q.cx, opts.onProgress);
    } catch (e) {
      await q.cx.spares.close(); // no zeroing goes on under a queue that never opened
      throw e;
    }
    q.recovery.spares = spares;
    return q;
  }

  get dir(): string {
    return this.cx.dir;
  }

  get clock(): Clock {
    return this.cx.clock;
  }

  get ids(): IdSource {
    return this.cx.ids;
  }

  get retry(): number[] {
    return this.cx.retry;
  }

  get maxAge(): number {
    return this.cx.maxAge;
  }

  get delayWarning(): number {
    return this.cx.delayWarning;
  }

  get hooks(): QueueHooks {
    return this.cx.hooks;
  }

  get budget(): MemoryBudget {
    return this.cx.budget;
  }

  get chunkSize(): number {
    return this.cx.chunkSize;
  }

  /** When every held piece gives up (arrival + its lane's max_age); see lanes/expiry.ts. */
  get expiry(): ExpiryHeap {
    return this.expire.expiry;
  }

  /**
   * Set while new mail must be refused although the queue writes (the disk was full and its
   * reserve is not yet back, queues.ts): accept() throws it; outcomes and reports still go in.
   */
  get acceptRefusal(): MtaError | undefined {
    return this.cx.acceptRefusal;
  }

  set acceptRefusal(e: MtaError | undefined) {
    this.cx.acceptRefusal = e;
  }

  setDeliverer(d: Deliverer): void {
    this.runner.deliverer = d;
  }

  /** Starts the lane runners: recovered `new` pieces are attempted, retry lanes wait for their due times. */
  start(): void {
    this.runner.start();
    const tick = () => {
      this.maintain().catch((e) =>
        this.cx.emit({ type: 'admin', id: '-', action: `maintenance failed: ${String(e)}` }),
      );
      this.maintenanceTimer = this.cx.clock.setTimer(MAINTENANCE_MS, tick);
    };
    this.maintenanceTimer = this.cx.clock.setTimer(MAINTENANCE_MS, tick);
    this.expire.arm();
    void this.maintenance.reclaim();
  }

  /** Stops dispatching. Crash-only: nothing needs saving; in-flight jobs may still finish. */
  async stop(): Promise<void> {
    this.halt();
    await Promise.allSettled([...this.runner.inflightJobs.values()]);
    await this.close();
  }

  /** Stops dispatching and every timer now; in-flight jobs are not waited for. */
  halt(): void {
    this.maintenanceTimer?.();
    this.expire.halt();
    this.runner.halt();
  }

  /**
   * For a queue being replaced by its directory reopened (a full disk, queues.ts), after halt():
   * what it has in flight, to be adopted by the successor (adopt); from now on the outcomes its
   * jobs report go to the successor (lanes/handover.ts).
   */
  handOff(): Handover {
    this.runner.handover ??= new Handover(this.runner.adoptions.inflightList());
    return this.runner.handover;
  }

  /** Takes over what a replaced queue still delivers (see handOff); call before start(). */
  adopt(h: Handover): void {
    this.runner.adoptions.adopt(h.inflight);
    h.attach(this.runner.adoptions);
  }

  /**
   * Stops all I/O now, whatever is still in flight (their outcomes are refused): when this
   * resolves the directory may be handed to another process. stop() ends with it.
   */
  async close(): Promise<void> {
    await this.cx.writer.close();
    this.cx.fs.closeHandles?.();
  }

  get pendingBytes(): number {
    return this.cx.writer.pendingBytes;
  }

  get poisoned(): MtaError | undefined {
    return this.cx.writer.poisoned;
  }

  // ------------------------------------------------------------------ accepting (accept.ts)

  /**
   * A spool for the data of a message being received (streamed to the log in chunks once it is
   * large); pass it as `data` to accept() on this queue, or abort() it.
   */
  spool(msgId: number): DataSpool {
    return this.acceptor.spool(msgId);
  }

  /** Accepts a message; resolves once it is durable (the caller may then reply 250). */
  accept(input: AcceptInput): Promise<AcceptResult> {
    return this.acceptor.accept(input);
  }

  // ------------------------------------------------------------------ lanes (lanes/runner.ts)

  /** Dispatches what is due in a lane (or, for a held lane, what its flush has left). */
  pump(lane: LaneState): void {
    this.runner.pump(lane);
  }

  /** Attempts every piece of the retry ladder now (like `postqueue -f`). Returns how many. */
  flushRetries(): number {
    return this.runner.flushRetries();
  }

  /**
   * Delivers a held lane through the normal deliverer (ETRN, probe, operator): every piece in the
   * lane that no delivery holds right now, oldest arrival first. Resolves when each has been
   * attempted and none of the lane's deliveries is in flight; returns how many it set out to
   * attempt (see LaneRunner.flushHeld).
   */
  flushHeld(domain: string, opts: { reachableSince?: number } = {}): Promise<number> {
    return this.runner.flushHeld(domain, opts);
  }

  // ------------------------------------------------------------------ ATRN (claim.ts)

  /** Every piece the cursor of openHeld would give, claimed at once. Each job must be finished. */
  claimHeld(domains: readonly string[]): Promise<DeliveryJob[]> {
    return this.claims.claimHeld(domains);
  }

  /** The held lanes of `domains` as a cursor for a caller-run delivery (ATRN); see claim.ts. */
  openHeld(domains: readonly string[]): HeldCursor {
    return this.claims.openHeld(domains);
  }

  // ------------------------------------------------------------------ operator (operator.ts)

  /** Administrative hold: the message waits in the hold lane until released. */
  hold(msgId: number): Promise<ActionOutcome> {
    return this.operator.hold(msgId);
  }

  /** Releases held pieces (operator hold, or a held domain) for an immediate attempt. */
  release(msgId: number): Promise<ActionOutcome> {
    return this.operator.release(msgId);
  }

  /** Operator flush of one message: its pieces in the retry ladder are attempted now (moved to `new`). */
  flushMessage(msgId: number): Promise<ActionOutcome> {
    return this.operator.flushMessage(msgId);
  }

  /** Deletes a message without any report. */
  remove(msgId: number): Promise<ActionOutcome> {
    return this.operator.remove(msgId);
  }

  /** Ends a message now with a failure report to its sender for every pending recipient. */
  bounce(msgId: number): Promise<ActionOutcome> {
    return this.operator.bounce(msgId);
  }

  // ------------------------------------------------------------------ expiry and maintenance

  /** Bounces every held or operator-held piece past its max_age (expire.ts). Returns how many. */
  expireHeld(): Promise<number> {
    return this.expire.expireHeld();
  }

  /** Give-up age of a lane's mail: the domain's max_age for held lanes, else the queue's. */
  maxAgeOf(lane: LaneState): number {
    return this.cx.maxAgeOf(lane);
  }

  /** Periodic work: compact sparse data segments, expire old held mail, unlink garbage. */
  maintain(): Promise<void> {
    return this.maintenance.maintain();
  }

  /** Copies the live data out of mostly-empty data segments so they can be unlinked. */
  compactData(minBytes?: number): Promise<number> {
    return this.maintenance.compactData(minBytes);
  }

  // ------------------------------------------------------------------ reading (read.ts)

  /** Live pieces in a domain's held lane: what an ETRN would make free. */
  heldCount(domain: string): number {
    return this.read.heldCount(domain);
  }

  heldDomains(): string[] {
    return this.read.heldDomains();
  }

  attemptsOf(pslot: number, env: EnvelopeRecord): number {
    return this.read.attemptsOf(pslot, env);
  }

  pendingOf(pslot: number, env: EnvelopeRecord): number[] {
    return this.read.pendingOf(pslot, env);
  }

  readEnvelope(pslot: number): Promise<EnvelopeRecord> {
    return this.read.readEnvelope(pslot);
  }

  readEnvelopes(slots: readonly number[]): Promise<Map<number, EnvelopeRecord>> {
    return this.read.readEnvelopes(slots);
  }

  indexFacets(): Promise<void> {
    return this.read.indexFacets();
  }

  readDataParts(mslot: number, msgId: number): Promise<readonly Buffer[]> {
    return this.read.readDataParts(mslot, msgId);
  }

  readData(mslot: number, msgId: number): Promise<Buffer> {
    return this.read.readData(mslot, msgId);
  }

  dataStream(mslot: number, msgId: number, piece?: number, limit?: number): AsyncGenerator<Buffer> {
    return this.read.dataStream(mslot, msgId, piece, limit);
  }
}
