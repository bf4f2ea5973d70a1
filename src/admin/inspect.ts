// Read-only inspection of the live queue for the operator: list (mailq), show, summary (qshape).
// Reads only the queue's public parts — the index tables, lanes, readEnvelope and readData —
// and never mutates anything.
// Invariant: a piece that changes while we read it (delivered, moved, superseded) is skipped or
// re-read, never reported with another message's envelope: the piece row's generation is
// checked after every await. Cost: one envelope read per live piece that passes the cheap
// filters (lane, age), like mailq reading every queue file.
import type { Queue } from '../queue/queue.js';
import type { Queues } from '../queue/queues.js';
import {
  type EnvelopeRecord,
  formatId,
  type HistoryEntry,
  OUTCOME_DELIVERED,
  OUTCOME_FAILED,
} from '../queue/record/records.js';
import { F_INFLIGHT } from '../queue/state/tables.js';

export interface Filter {
  /** A lane name ("hold", "retry-5m", "held-example.org") or kind ("new", "retry", "held", "hold"). */
  lane?: string;
  /** Only pieces with a pending recipient in this domain (case-insensitive). */
  domain?: string;
  /** An address (case-insensitive), "@domain" for any sender there, or "<>" for the null sender. */
  sender?: string;
  /** Only messages that arrived at least this long ago. */
  olderThanMs?: number;
}

export interface RecipientView {
  address: string;
  /**
   * pending: still to deliver; delivered / failed: the outcome recorded in this version of the
   * piece; done: finished in an earlier version (its outcome is in the history).
   */
  state: 'pending' | 'delivered' | 'failed' | 'done';
  last?: string;
  notify?: string[];
  orcpt?: string;
}

export interface PieceView {
  piece: number;
  version: number;
  lane: string;
  laneKind: string;
  /** Next attempt (retry lanes); held lanes wait for ETRN/ATRN or release. */
  due: number;
  /** A delivery of this piece is under way. */
  active: boolean;
  attempts: number;
  lastError?: string;
  recipients: RecipientView[];
  history: HistoryEntry[];
}

export interface MessageView {
  id: string;
  /** Index of the queue directory (config queue.paths) holding it. */
  queue: number;
  arrival: number;
  size: number;
  sender: string;
  envid?: string;
  ret?: string;
  report?: boolean;
  client?: Record<string, string>;
  pieces: PieceView[];
}

interface Ref {
  q: Queue;
  qi: number;
  mslot: number;
  msgId: number;
}

export function domainOfAddress(a: string): string {
  const at = a.lastIndexOf('@');
  return at < 0
    ? ''
    : a
        .slice(at + 1)
        .toLowerCase()
        .replace(/\.$/, '');
}

function laneMatches(name: string, kind: string, want: string): boolean {
  const w = want.toLowerCase();
  return name === w || kind === w;
}

function senderMatches(sender: string, want: string): boolean {
  const w = want.trim().toLowerCase();
  if (w === '<>' || w === '') return sender === '';
  if (w.startsWith('@')) return domainOfAddress(sender) === w.slice(1).replace(/\.$/, '');
  return sender.toLowerCase() === w.replace(/^<(.*)>$/, '$1');
}

/** Reads a piece's envelope if the piece still is what it was when we started. */
async function readStable(q: Queue, pslot: number, msgId: number): Promise<EnvelopeRecord | undefined> {
  const P = q.core.pieces;
  for (let i = 0; i < 3; i++) {
    if (!q.core.isLive(pslot)) return undefined;
    const gen = P.gen[pslot]!;
    try {
      const env = await q.readEnvelope(pslot);
      if (P.gen[pslot] === gen && env.msgId === msgId) return env;
    } catch (e) {
      // The segment may have been unlinked because the piece moved on: re-check and retry.
      if (P.gen[pslot] === gen) throw e;
    }
  }
  return undefined;
}

function pieceView(q: Queue, pslot: number, env: EnvelopeRecord): PieceView {
  const lane = q.core.laneOf(pslot);
  const pending = new Set(q.pendingOf(pslot, env));
  const v: PieceView = {
    piece: env.piece,
    version: env.version,
    lane: lane.name,
    laneKind: lane.kind,
    due: env.due,
    active: (q.core.pieces.flags[pslot]! & F_INFLIGHT) !== 0,
    // Deferrals of a held piece back into its lane write nothing: the queue counts them in
    // memory since the envelope was written (docs/queue-states.md, "Held lanes").
    attempts: q.attemptsOf(pslot, env),
    recipients: env.info.recipients.map((r, i) => {
      const outcome = q.core.deltas.get(pslot)?.get(i);
      const state: RecipientView['state'] = pending.has(i)
        ? 'pending'
        : outcome === OUTCOME_DELIVERED
          ? 'delivered'
          : outcome === OUTCOME_FAILED
            ? 'failed'
            : 'done';
      const rv: RecipientView = { address: r.address, state };
      if (r.last !== undefined) rv.last = r.last;
      if (r.notify) rv.notify = r.notify;
      if (r.orcpt !== undefined) rv.orcpt = r.orcpt;
      return rv;
    }),
    history: env.info.history,
  };
  const unwritten = q.core.unwritten.get(pslot);
  if (unwritten) v.lastError = unwritten.last;
  else if (env.info.lastError !== undefined) v.lastError = env.info.lastError;
  return v;
}

function messageView(ref: Ref, env: EnvelopeRecord, pieces: PieceView[]): MessageView {
  const m: MessageView = {
    id: formatId(ref.msgId),
    queue: ref.qi,
    arrival: env.arrival,
    size: env.info.size,
    sender: env.info.sender,
    pieces,
  };
  if (env.info.envid !== undefined) m.envid = env.info.envid;
  if (env.info.ret !== undefined) m.ret = env.info.ret;
  if (env.info.report) m.report = true;
  if (env.info.client) m.client = env.info.client;
  return m;
}

function refs(queues: Queues): Ref[] {
  const out: Ref[] = [];
  queues.list.forEach((q, qi) => {
    for (const [msgId, mslot] of q.core.msgs.byId) out.push({ q, qi, mslot, msgId });
  });
  return out.sort((a, b) => a.msgId - b.msgId);
}

/** Live messages matching the filter, oldest first, with only their matching pieces. */
export async function listMessages(
  queues: Queues,
  filter: Filter,
  now: number,
  limit = Number.POSITIVE_INFINITY,
): Promise<MessageView[]> {
  const out: MessageView[] = [];
  const domain = filter.domain?.toLowerCase().replace(/^@/, '').replace(/\.$/, '');
  for (const ref of refs(queues)) {
    if (out.length >= limit) break;
    const { q, mslot, msgId } = ref;
    if (q.core.msgs.id[mslot] !== msgId) continue; // finished while we were reading others
    if (filter.olderThanMs !== undefined && now - q.core.msgs.arrival[mslot]! < filter.olderThanMs) continue;
    let first: EnvelopeRecord | undefined;
    const pieces: PieceView[] = [];
    for (const pslot of q.core.piecesOf(mslot)) {
      if (!q.core.isLive(pslot)) continue;
      const lane = q.core.laneOf(pslot);
      if (filter.lane !== undefined && !laneMatches(lane.name, lane.kind, filter.lane)) continue;
      const env = await readStable(q, pslot, msgId);
      if (!env) continue;
      if (filter.sender !== undefined && !senderMatches(env.info.sender, filter.sender)) break;
      const view = pieceView(q, pslot, env);
      if (
        domain !== undefined &&
        !view.recipients.some((r) => r.state === 'pending' && domainOfAddress(r.address) === domain)
      )
        continue;
      first ??= env;
      pieces.push(view);
    }
    if (first && pieces.length > 0) {
      pieces.sort((a, b) => a.piece - b.piece);
      out.push(messageView(ref, first, pieces));
    }
  }
  return out;
}

/** One message with every live piece, or undefined when it is not queued. */
export async function showMessage(
  queues: Queues,
  msgId: number,
  withData: boolean,
): Promise<(MessageView & { data?: Buffer }) | undefined> {
  for (const [qi, q] of queues.list.entries()) {
    const mslot = q.core.msgs.byId.get(msgId);
    if (mslot === undefined) continue;
    const ref = { q, qi, mslot, msgId };
    let first: EnvelopeRecord | undefined;
    const pieces: PieceView[] = [];
    for (const pslot of q.core.piecesOf(mslot)) {
      const env = await readStable(q, pslot, msgId);
      if (!env) continue;
      first ??= env;
      pieces.push(pieceView(q, pslot, env));
    }
    if (!first) return undefined;
    pieces.sort((a, b) => a.piece - b.piece);
    const view: MessageView & { data?: Buffer } = messageView(ref, first, pieces);
    if (withData) view.data = await q.readData(mslot, msgId);
    return view;
  }
  return undefined;
}

/** qshape's age buckets, in minutes: [0,5) [5,10) [10,20) [20,40) [40,80) [80,160) [160,∞). */
export const AGE_BUCKETS_MIN = [0, 5, 10, 20, 40, 80, 160] as const;

export function bucketLabels(): string[] {
  return AGE_BUCKETS_MIN.map((m, i) => {
    const next = AGE_BUCKETS_MIN[i + 1];
    return next === undefined ? `${m}m+` : `${m}-${next}m`;
  });
}

export function ageBucket(ageMs: number): number {
  const min = ageMs / 60_000;
  let b = 0;
  for (let i = 0; i < AGE_BUCKETS_MIN.length; i++) if (min >= AGE_BUCKETS_MIN[i]!) b = i;
  return b;
}

export interface SummaryRow {
  domain: string;
  total: number;
  buckets: number[];
}

export interface Summary {
  buckets: string[];
  /** Sum over every message (a message counts once, however many domains it has). */
  total: SummaryRow;
  /** Per destination domain of pending recipients; a message counts once in each of its domains. */
  rows: SummaryRow[];
}

/** Counts per destination domain by age, like Postfix's qshape. */
export function summarize(messages: readonly MessageView[], now: number): Summary {
  const labels = bucketLabels();
  const total: SummaryRow = { domain: 'TOTAL', total: 0, buckets: labels.map(() => 0) };
  const byDomain = new Map<string, SummaryRow>();
  for (const m of messages) {
    const b = ageBucket(Math.max(0, now - m.arrival));
    total.total++;
    total.buckets[b]!++;
    const domains = new Set<string>();
    for (const p of m.pieces)
      for (const r of p.recipients) if (r.state === 'pending') domains.add(domainOfAddress(r.address));
    for (const d of domains) {
      let row = byDomain.get(d);
      if (!row) byDomain.set(d, (row = { domain: d, total: 0, buckets: labels.map(() => 0) }));
      row.total++;
      row.buckets[b]!++;
    }
  }
  const rows = [...byDomain.values()].sort((a, b) => b.total - a.total || a.domain.localeCompare(b.domain));
  return { buckets: labels, total, rows };
}
