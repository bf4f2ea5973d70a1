// A point-in-time picture of a running daemon, read from the live in-memory state (lane
// counts, held lanes, message arrival times, listener connections, the connection pool, the
// writers' counters): what the Prometheus gauges and the dashboard's /api/stats both show.
// Cost: O(lanes) plus one pass over the live messages (for the oldest age) and over the held
// lanes' FIFOs; callers cache it for a short while rather than compute it per gauge.
// Invariant: read-only; it never touches the disk or changes queue state.
import type { ConnectionPool } from '../delivery/pool.js';
import type { Queues } from '../queue/queues.js';
import { formatId } from '../queue/record/records.js';
import { F_LIVE, NO_SLOT } from '../queue/state/tables.js';

const OLDEST_LISTED = 10;
import type { SmtpListener } from '../smtp/server/listener.js';

export interface ObservedParts {
  queues: Queues;
  pool: ConnectionPool;
  listeners: readonly SmtpListener[];
  now: () => number;
}

export interface LaneDepth {
  lane: string;
  kind: string;
  /** Live pieces, summed over every queue directory. */
  live: number;
}

export interface HeldDomain {
  domain: string;
  count: number;
  /** Age of the oldest message waiting in the lane (ms); 0 when empty. */
  oldestAgeMs: number;
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
  writers: Array<{
    dir: string;
    batches: number;
    records: number;
    bytes: number;
    datasyncs: number;
    poisoned: boolean;
  }>;
}

export function takeSnapshot(p: ObservedParts): DaemonSnapshot {
  const now = p.now();
  const lanes = new Map<string, LaneDepth>();
  const held = new Map<string, HeldDomain>();
  let operatorHeld = 0;
  let messages = 0;
  let oldest = Number.POSITIVE_INFINITY;
  const top: Array<{ arrival: number; id: number; lane: string }> = [];
  for (const q of p.queues.list) {
    const core = q.core;
    const M = core.msgs;
    const P = core.pieces;
    messages += M.count;
    for (const [id, slot] of M.byId) {
      const a = M.arrival[slot]!;
      if (a < oldest) oldest = a;
      if (top.length < OLDEST_LISTED || a < top[top.length - 1]!.arrival) {
        const head = M.head[slot]!;
        const lane = head === NO_SLOT ? '' : (core.lanes[P.lane[head]!]?.name ?? '');
        let i = top.length;
        while (i > 0 && top[i - 1]!.arrival > a) i--;
        top.splice(i, 0, { arrival: a, id, lane });
        if (top.length > OLDEST_LISTED) top.pop();
      }
    }
    for (const lane of core.lanes) {
      if (lane.kind === 'data') continue;
      let d = lanes.get(lane.name);
      if (!d) lanes.set(lane.name, (d = { lane: lane.name, kind: lane.kind, live: 0 }));
      d.live += lane.live;
      if (lane.kind === 'hold') operatorHeld += lane.live;
      if (lane.kind !== 'held' || lane.domain === undefined) continue;
      let h = held.get(lane.domain);
      if (!h) held.set(lane.domain, (h = { domain: lane.domain, count: 0, oldestAgeMs: 0 }));
      h.count += lane.live;
      if (lane.live === 0) continue;
      // Held lanes are small and never walked by a timer: a pass over the FIFO is cheap.
      for (let i = 0; i < lane.fifo.length; i++) {
        const slot = lane.fifo.slotAt(i);
        if (P.gen[slot] !== lane.fifo.genAt(i) || (P.flags[slot]! & F_LIVE) === 0) continue;
        if (P.lane[slot] !== lane.idx) continue;
        const age = now - M.arrival[P.msg[slot]!]!;
        if (age > h.oldestAgeMs) h.oldestAgeMs = age;
      }
    }
  }
  let smtpSessions = 0;
  for (const l of p.listeners) smtpSessions += l.connections.size;
  return {
    time: now,
    lanes: [...lanes.values()].sort(laneOrder),
    held: [...held.values()].sort((a, b) => b.count - a.count || a.domain.localeCompare(b.domain)),
    operatorHeld,
    messages,
    oldestAgeMs: messages > 0 && Number.isFinite(oldest) ? Math.max(0, now - oldest) : 0,
    oldest: top.map((t) => ({ id: formatId(t.id), ageMs: Math.max(0, now - t.arrival), lane: t.lane })),
    smtpSessions,
    destinations: p.pool.snapshot(),
    writers: p.queues.list.map((q) => ({
      dir: q.dir,
      batches: q.writer.stats.batches,
      records: q.writer.stats.records,
      bytes: q.writer.stats.bytes,
      datasyncs: q.writer.stats.datasyncs,
      poisoned: q.poisoned !== undefined,
    })),
  };
}

const KIND_ORDER: Record<string, number> = { new: 0, retry: 1, held: 2, hold: 3 };

/** new, then the retry ladder by delay, then held domains, then the operator hold lane. */
function laneOrder(a: LaneDepth, b: LaneDepth): number {
  const k = (KIND_ORDER[a.kind] ?? 9) - (KIND_ORDER[b.kind] ?? 9);
  if (k !== 0) return k;
  return a.lane.localeCompare(b.lane, 'en', { numeric: true });
}
