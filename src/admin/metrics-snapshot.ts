// A point-in-time picture of a running daemon, read from the queue's read model (lane depths,
// held lanes, the oldest messages, the writers' counters), the listeners' connections and the
// connection pool: what the Prometheus gauges and the dashboard's /api/stats both show.
// Cost: O(lanes) plus one pass over the live messages (for the oldest) and over the held lanes'
// FIFOs (queue/view/queue-view.ts); callers cache it for a short while rather than compute it
// per gauge. Invariant: read-only; it never touches the disk or changes queue state.
import type { ConnectionPool } from '../delivery/pool.js';
import type { HeldDomain, LaneDepth, Queues, WriterStats } from '../queue/index.js';

export type { HeldDomain, LaneDepth };

const OLDEST_LISTED = 10;

export interface ObservedParts {
  queues: Queues;
  pool: ConnectionPool;
  listeners: readonly { readonly connections: { readonly size: number } }[];
  now: () => number;
}

export interface DaemonSnapshot {
  time: number;
  lanes: LaneDepth[];
  held: HeldDomain[];
  /** Pieces in the administrative hold lane. */
  operatorHeld: number;
  messages: number;
  oldestAgeMs: number;
  /** The longest-queued messages (at most OLDEST_LISTED), oldest first: links for the dashboard. */
  oldest: Array<{ id: string; ageMs: number; lane: string }>;
  smtpSessions: number;
  destinations: Array<{ key: string; active: number; idle: number; waiting: number }>;
  writers: WriterStats[];
}

export function takeSnapshot(p: ObservedParts): DaemonSnapshot {
  const now = p.now();
  const q = p.queues;
  const lanes = q.laneDepths();
  const messages = q.messageCount();
  const oldest = q.oldest(OLDEST_LISTED);
  let smtpSessions = 0;
  for (const l of p.listeners) smtpSessions += l.connections.size;
  return {
    time: now,
    lanes,
    held: q.heldSummary(now),
    operatorHeld: lanes.filter((l) => l.kind === 'hold').reduce((n, l) => n + l.live, 0),
    messages,
    oldestAgeMs: messages > 0 && oldest[0] !== undefined ? Math.max(0, now - oldest[0].arrival) : 0,
    oldest: oldest.map((t) => ({ id: t.id, ageMs: Math.max(0, now - t.arrival), lane: t.lane })),
    smtpSessions,
    destinations: p.pool.snapshot(),
    writers: q.writerStats(),
  };
}
