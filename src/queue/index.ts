// The public surface of the queue: everything the rest of logmta may use of it. The facade
// (Queues over the directories of queue.paths, Queue for one), the types delivery and policy
// speak (types.ts), the read model (view/: plain values, never the index), the record codecs
// that are pure (record/), and the few helpers the daemon and config need. The index (state/,
// core.ts), the log (log/) and the steps behind the facade stay private to queue/ — the layering
// test (test/architecture/layering.test.ts) fails any file outside queue/ that imports them.
export { type StorageEvent, Queues, type QueuesOptions } from './queues.js';
export {
  type ActionOutcome,
  DEFAULT_RETRY,
  type HeldCursor,
  Queue,
  type QueueOptions,
  READ_PIECE,
  REPORT_DATA_MAX,
} from './queue.js';
export type { RecoveryReport } from './recovery.js';
export type * from './types.js';
export type * from './view/types.js';
export { AGE_BUCKETS_MIN, ageBucket, bucketLabels, summarize } from './view/summary.js';
export { formatId, parseId } from './record/records.js';
export { CHUNK_SIZE, DataSpool, MIN_CHUNK } from './data/spool.js';
export { DEFAULT_MEMORY_BUDGET, MemoryBudget } from './data/budget.js';
export { IdSource } from './ids.js';
export { type LockWait, lockQueueDir, lockQueueDirWaiting, type QueueLock, queueInUse } from './lock.js';
export { MAX_MESSAGE_SIZE, MAX_SEGMENT_SIZE } from './limits.js';
export { DEFAULT_SPARE_SEGMENTS } from './log/spares.js';
/** Lane names (held-<domain>, retry-<delay>, ...) as they appear in events and inspection. */
export {
  heldLaneNameOf,
  type LaneKind,
  type LaneName,
  parseLaneName,
  retryLaneName,
} from './log/segment.js';
export {
  type LaneReport,
  NotAQueueError,
  type SegmentProblem,
  type VerifyReport,
  type VerifyStatus,
  verifyQueue,
} from './verify.js';
