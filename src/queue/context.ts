// The parts of one queue directory that every step of a message's life shares: the directory and
// its file system, the clock, the id source, the index (core.ts) with its group-commit writer,
// the hooks given by the daemon, the settings, and whether the runners are running. Built once
// by the Queue facade (queue.ts) and handed to each step (accept.ts, lanes/runner.ts,
// outcomes.ts, claim.ts, operator.ts, expire.ts, maintenance.ts, read.ts); no step keeps a copy
// of anything here. Private to queue/.
import type { MtaError } from '../errors.js';
import { type Clock, systemClock } from '../util/clock.js';
import { QueueCore } from './core.js';
import { DEFAULT_MEMORY_BUDGET, MemoryBudget } from './data/budget.js';
import { CHUNK_SIZE } from './data/spool.js';
import { FreshCache } from './fresh.js';
import { IdSource } from './ids.js';
import type { LaneState } from './lanes/lane.js';
import { NodeQueueFs, type QueueFs } from './log/fs.js';
import { DEFAULT_SPARE_SEGMENTS, SparePool } from './log/spares.js';
import { GroupWriter } from './log/writer.js';
import type { QueueEvent, QueueHooks } from './types.js';

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
  /** Reclaimed segment files kept zeroed for reuse (log/spares.ts; default DEFAULT_SPARE_SEGMENTS, 0: none). */
  spareSegments?: number;
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

export const DEFAULT_RETRY = [5, 15, 30, 60, 120, 240, 480].map((m) => m * 60_000);
/** History entries an envelope keeps (the oldest go first). */
export const HISTORY_MAX = 20;

export class QueueContext {
  readonly dir: string;
  readonly fs: QueueFs;
  readonly clock: Clock;
  readonly ids: IdSource;
  readonly writer: GroupWriter;
  /** Reclaimed segment files kept for reuse; the writer takes and gives them. */
  readonly spares: SparePool;
  readonly core: QueueCore;
  readonly retry: number[];
  /** The longest retry delay: no due time can lie further ahead unless the clock stepped back. */
  readonly longestDelay: number;
  readonly maxAge: number;
  readonly delayWarning: number;
  readonly hooks: QueueHooks;
  readonly budget: MemoryBudget;
  readonly chunkSize: number;
  /** Just-accepted envelopes and data kept in memory for their first attempt (fresh.ts). */
  readonly fresh: FreshCache;
  /**
   * Set while new mail must be refused although the queue writes (the disk was full and its
   * reserve is not yet back, queues.ts): accept() throws it; outcomes and reports still go in.
   */
  acceptRefusal: MtaError | undefined;
  /** The runners dispatch (start() was called, halt() was not). */
  running = false;
  /** halt() was called: no flush starts any more. */
  stopped = false;

  constructor(opts: QueueOptions) {
    this.dir = opts.dir;
    this.fs = opts.fs ?? new NodeQueueFs();
    this.clock = opts.clock ?? systemClock;
    this.ids = opts.ids ?? new IdSource(() => this.clock.now());
    this.retry = (opts.retry ?? DEFAULT_RETRY).slice();
    this.longestDelay = Math.max(0, ...this.retry);
    this.maxAge = opts.maxAge ?? 5 * 86_400_000;
    this.delayWarning = opts.delayWarning ?? 4 * 3_600_000;
    this.hooks = opts.hooks ?? {};
    this.budget = opts.budget ?? new MemoryBudget(DEFAULT_MEMORY_BUDGET);
    this.chunkSize = opts.chunkSize ?? CHUNK_SIZE;
    this.fresh = new FreshCache(this.budget);
    const segmentSize = opts.segmentSize ?? 64 * 1024 * 1024;
    this.spares = new SparePool(this.fs, this.dir, segmentSize, opts.spareSegments ?? DEFAULT_SPARE_SEGMENTS);
    this.writer = new GroupWriter({
      fs: this.fs,
      dir: this.dir,
      segmentSize,
      sync: opts.sync ?? true,
      now: () => this.clock.now(),
      spares: this.spares,
    });
    this.core = new QueueCore(this.writer);
  }

  /** Listeners of the queue's events besides hooks.onEvent (Queue.onEvent). */
  readonly eventListeners = new Set<(ev: QueueEvent) => void>();

  emit(ev: QueueEvent): void {
    this.hooks.onEvent?.(ev);
    if (this.eventListeners.size > 0) for (const l of this.eventListeners) l(ev);
  }

  /** Give-up age of a lane's mail: the domain's max_age for held lanes, else the queue's. */
  maxAgeOf(lane: LaneState): number {
    if (lane.maxAge === undefined)
      lane.maxAge = lane.kind === 'held' ? (this.hooks.maxAgeFor?.(lane.domain) ?? this.maxAge) : this.maxAge;
    return lane.maxAge;
  }
}
