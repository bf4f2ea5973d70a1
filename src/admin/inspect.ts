// Read-only inspection of the live queue for the operator: list (mailq), show, summary (qshape).
// Reads only the queue's public parts — the index tables, lanes, facets, readEnvelope(s) and
// readData — and never changes the queue (Queue.indexFacets only fills in what the index knows).
// Invariant: a piece that changes while we read it (delivered, moved, superseded) is skipped or
// re-read, never reported with another message's envelope: the piece row's generation is
// checked after every await. Cost: the filters (lane, domain, sender, age) and the whole of
// `summary` are answered from the in-memory index (state/facets.ts: every piece's recipient
// domains and sender), so summary reads nothing and list reads only the envelopes it shows,
// in batches of neighbouring records. The first inspection after a start reads the envelopes
// recovery found once, to learn their facets.
import type { Queue } from '../queue/queue.js';
import type { Queues } from '../queue/queues.js';
import {
  type EnvelopeRecord,
  formatId,
  type HistoryEntry,
  OUTCOME_DELIVERED,
  OUTCOME_FAILED,
} from '../queue/record/records.js';
import { F_INFLIGHT, NO_SLOT } from '../queue/state/tables.js';
import { domainOf } from '../util/domain.js';

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

function laneMatches(name: string, kind: string, want: string): boolean {
  const w = want.toLowerCase();
  return name === w || kind === w;
}

function senderMatches(sender: string, want: string): boolean {
  const w = want.trim().toLowerCase();
  if (w === '<>' || w === '') return sender === '';
  if (w.startsWith('@')) return domainOf(sender) === w.slice(1).replace(/\.$/, '');
  return sender.toLowerCase() === w.replace(/^<(.*)>$/, '$1');
}

/**
 * A queue that refuses writes never wrote its last batch: pieces made current in it were never
 * acknowledged and are not (all) on disk. Read-only commands skip them and work for the rest.
 */
function unwritten(q: Queue, pslot: number): boolean {
  return q.poisoned !== undefined && q.core.pieces.batch[pslot]! > q.writer.durableBatch;
}

/** Reads a piece's envelope if the piece still is what it was when we started. */
async function readStable(q: Queue, pslot: number, msgId: number): Promise<EnvelopeRecord | undefined> {
  const P = q.core.pieces;
  for (let i = 0; i < 3; i++) {
    if (!q.core.isLive(pslot)) return undefined;
    if (unwritten(q, pslot)) return undefined;
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

/** A filter compiled against one queue's index: which of its pieces match. */
class IndexFilter {
  private readonly domainId: number | undefined;
  private readonly senderOk = new Map<number, boolean>();
  /** No piece of this queue can match (the domain was never seen there). */
  readonly none: boolean;

  constructor(
    readonly q: Queue,
    readonly f: Filter,
    domain: string | undefined,
  ) {
    this.domainId = domain === undefined ? undefined : q.core.facets.domains.find(domain);
    this.none = domain !== undefined && this.domainId === undefined;
  }

  /** Whether live piece `p` matches on lane, sender and a pending recipient in the domain. */
  piece(p: number): boolean {
    const core = this.q.core;
    const facets = core.facets;
    if (!core.isLive(p) || !facets.known(p)) return false;
    const f = this.f;
    if (f.lane !== undefined) {
      const lane = core.laneOf(p);
      if (!laneMatches(lane.name, lane.kind, f.lane)) return false;
    }
    if (f.sender !== undefined) {
      const sid = core.pieces.sender[p]!;
      let ok = this.senderOk.get(sid);
      if (ok === undefined) {
        ok = senderMatches(facets.senders.names[sid] ?? '', f.sender);
        this.senderOk.set(sid, ok);
      }
      if (!ok) return false;
    }
    if (this.domainId === undefined) return true;
    const done = core.deltas.get(p);
    const n = facets.recipientCount(p);
    for (let i = 0; i < n; i++) if (!done?.has(i) && facets.domainOf(p, i) === this.domainId) return true;
    return false;
  }
}

async function compile(queues: Queues, filter: Filter): Promise<IndexFilter[]> {
  await Promise.all(queues.list.map((q) => q.indexFacets()));
  const domain = filter.domain?.toLowerCase().replace(/^@/, '').replace(/\.$/, '');
  return queues.list.map((q) => new IndexFilter(q, filter, domain));
}

/** The live pieces of message row `mslot` that the filter keeps. */
function matchingPieces(f: IndexFilter, mslot: number, now: number): number[] {
  const core = f.q.core;
  const out: number[] = [];
  if (f.none) return out;
  if (f.f.olderThanMs !== undefined && now - core.msgs.arrival[mslot]! < f.f.olderThanMs) return out;
  for (let p = core.msgs.head[mslot]!; p !== NO_SLOT; p = core.pieces.next[p]!) if (f.piece(p)) out.push(p);
  return out;
}

/** Ids of the live messages matching the filter, oldest first, read from the index alone. */
export async function matchIds(queues: Queues, filter: Filter, now: number): Promise<string[]> {
  const fs = await compile(queues, filter);
  const ids: number[] = [];
  for (const f of fs)
    for (const [msgId, mslot] of f.q.core.msgs.byId)
      if (matchingPieces(f, mslot, now).length > 0) ids.push(msgId);
  return ids.sort((a, b) => a - b).map(formatId);
}

/** Messages read per batch of envelope reads in listMessages. */
const LIST_BATCH = 2048;

/** Live messages matching the filter, oldest first, with only their matching pieces. */
export async function listMessages(
  queues: Queues,
  filter: Filter,
  now: number,
  limit = Number.POSITIVE_INFINITY,
): Promise<MessageView[]> {
  const fs = await compile(queues, filter);
  const out: MessageView[] = [];
  const all = refs(queues);
  for (let i = 0; i < all.length && out.length < limit; i += LIST_BATCH) {
    // The index decides which pieces to read; their envelopes are read together, per queue.
    const batch = all.slice(i, i + LIST_BATCH).map((ref) => {
      const alive = ref.q.core.msgs.id[ref.mslot] === ref.msgId;
      const pieces = alive ? matchingPieces(fs[ref.qi]!, ref.mslot, now) : [];
      return { ref, pieces: pieces.filter((p) => !unwritten(ref.q, p)) };
    });
    const envs = new Map<Queue, Map<number, EnvelopeRecord>>();
    for (const q of queues.list) {
      const slots = batch.filter((b) => b.ref.q === q).flatMap((b) => b.pieces);
      envs.set(q, slots.length > 0 ? await q.readEnvelopes(slots) : new Map());
    }
    for (const { ref, pieces } of batch) {
      if (out.length >= limit) break;
      if (pieces.length === 0) continue;
      const { q, msgId } = ref;
      let first: EnvelopeRecord | undefined;
      const views: PieceView[] = [];
      for (const pslot of pieces) {
        // Read in the batch, or again alone if it changed meanwhile.
        let env = envs.get(q)?.get(pslot);
        if (env?.msgId !== msgId) env = await readStable(q, pslot, msgId);
        // The index describes the version just read: it may have stopped matching meanwhile.
        if (!env || !fs[ref.qi]!.piece(pslot)) continue;
        const view = pieceView(q, pslot, env);
        first ??= env;
        views.push(view);
      }
      if (first && views.length > 0) {
        views.sort((a, b) => a.piece - b.piece);
        out.push(messageView(ref, first, views));
      }
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
      for (const r of p.recipients) if (r.state === 'pending') domains.add(domainOf(r.address));
    for (const d of domains) count(byDomain, d, b, labels.length);
  }
  return { buckets: labels, total, rows: sortedRows(byDomain) };
}

function count(rows: Map<string, SummaryRow>, d: string, b: number, n: number, by = 1): void {
  let row = rows.get(d);
  if (!row) rows.set(d, (row = { domain: d, total: 0, buckets: new Array<number>(n).fill(0) }));
  row.total += by;
  row.buckets[b]! += by;
}

function sortedRows(rows: Map<string, SummaryRow>): SummaryRow[] {
  return [...rows.values()].sort((a, b) => b.total - a.total || a.domain.localeCompare(b.domain));
}

/**
 * The summary of the live messages matching the filter, counted in the index alone: the same
 * figures as summarize(listMessages(...)), without reading or building any message.
 */
export async function summaryOf(queues: Queues, filter: Filter, now: number): Promise<Summary> {
  const fs = await compile(queues, filter);
  const labels = bucketLabels();
  const nb = labels.length;
  const total: SummaryRow = { domain: 'TOTAL', total: 0, buckets: labels.map(() => 0) };
  const byDomain = new Map<string, SummaryRow>();
  for (const f of fs) {
    const core = f.q.core;
    const facets = core.facets;
    const names = facets.domains.names;
    // Counts by domain id and bucket; `mark` dedups a message's domains without a Set per message.
    const counts = new Int32Array(names.length * nb);
    const mark = new Int32Array(names.length).fill(-1);
    let stamp = 0;
    for (const mslot of core.msgs.byId.values()) {
      const pieces = matchingPieces(f, mslot, now).filter((p) => !unwritten(f.q, p));
      if (pieces.length === 0) continue;
      const b = ageBucket(Math.max(0, now - core.msgs.arrival[mslot]!));
      total.total++;
      total.buckets[b]!++;
      stamp++;
      for (const p of pieces) {
        const done = core.deltas.get(p);
        const n = facets.recipientCount(p);
        for (let i = 0; i < n; i++) {
          if (done?.has(i)) continue;
          const d = facets.domainOf(p, i);
          if (mark[d] === stamp) continue;
          mark[d] = stamp;
          counts[d * nb + b]!++;
        }
      }
    }
    for (let d = 0; d < names.length; d++)
      for (let b = 0; b < nb; b++)
        if (counts[d * nb + b]! > 0) count(byDomain, names[d]!, b, nb, counts[d * nb + b]!);
  }
  return { buckets: labels, total, rows: sortedRows(byDomain) };
}
