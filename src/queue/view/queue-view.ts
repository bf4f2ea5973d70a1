// The read model of one queue directory: what `queue list/show/summary`, the metrics, the
// dashboard, the cluster heartbeat and `status` ask, answered from the index (state/: lanes,
// piece rows, facets) and from envelopes read with few reads — as the values of view/types.ts.
// Invariants: read-only (indexFacets only fills in what the index knows); a piece that changes
// while it is read (delivered, moved, superseded) is skipped or re-read, never reported with
// another message's envelope — its generation is checked after every await; a queue that refuses
// writes never wrote its last batch, so pieces made current in it are skipped.
// Cost: the filters (lane, domain, sender, age) and the summary come from the index alone; a list
// reads only the envelopes it shows, in batches of neighbouring records; the counts are O(lanes)
// plus, for oldest(), one pass over the message rows and, for heldSummary(), over held FIFOs.
import type { QueueContext } from '../context.js';
import type { Reader } from '../read.js';
import { type EnvelopeRecord, formatId, OUTCOME_DELIVERED, OUTCOME_FAILED } from '../record/records.js';
import { domainOf } from '../../util/domain.js';
import { F_INFLIGHT, F_LIVE, NO_SLOT } from '../state/tables.js';
import { ageBucket, countRow } from './summary.js';
import type {
  Filter,
  HeldDomain,
  LaneDepth,
  MessageView,
  OldMessage,
  PieceView,
  RecipientView,
  SummaryRow,
  WriterStats,
} from './types.js';

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

/** The filter's domain as the facets hold domains (lower case, no leading @, no trailing dot). */
export function filterDomain(f: Filter): string | undefined {
  return f.domain?.toLowerCase().replace(/^@/, '').replace(/\.$/, '');
}

/** A filter compiled against one queue's index: which of its pieces match. */
class IndexFilter {
  private readonly domainId: number | undefined;
  private readonly senderOk = new Map<number, boolean>();
  /** No piece of this queue can match (the domain was never seen there). */
  readonly none: boolean;

  constructor(
    private readonly cx: QueueContext,
    readonly f: Filter,
  ) {
    const domain = filterDomain(f);
    this.domainId = domain === undefined ? undefined : cx.core.facets.domains.find(domain);
    this.none = domain !== undefined && this.domainId === undefined;
  }

  /** Whether live piece `p` matches on lane, sender and a pending recipient in the domain. */
  piece(p: number): boolean {
    const core = this.cx.core;
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

  /** The live pieces of message row `mslot` that the filter keeps (none that were never written). */
  pieces(mslot: number, now: number, unwritten: (p: number) => boolean): number[] {
    const core = this.cx.core;
    const out: number[] = [];
    if (this.none) return out;
    if (this.f.olderThanMs !== undefined && now - core.msgs.arrival[mslot]! < this.f.olderThanMs) return out;
    for (let p = core.msgs.head[mslot]!; p !== NO_SLOT; p = core.pieces.next[p]!)
      if (this.piece(p) && !unwritten(p)) out.push(p);
    return out;
  }
}

export class QueueView {
  constructor(
    private readonly cx: QueueContext,
    private readonly read: Reader,
  ) {}

  /**
   * A queue that refuses writes never wrote its last batch: pieces made current in it were never
   * acknowledged and are not (all) on disk. Read-only commands skip them and work for the rest.
   */
  private unwritten = (pslot: number): boolean =>
    this.cx.writer.poisoned !== undefined && this.cx.core.pieces.batch[pslot]! > this.cx.writer.durableBatch;

  /** Reads a piece's envelope if the piece still is what it was when we started. */
  private async readStable(pslot: number, msgId: number): Promise<EnvelopeRecord | undefined> {
    const core = this.cx.core;
    const P = core.pieces;
    for (let i = 0; i < 3; i++) {
      if (!core.isLive(pslot)) return undefined;
      if (this.unwritten(pslot)) return undefined;
      const gen = P.gen[pslot]!;
      try {
        const env = await this.read.readEnvelope(pslot);
        if (P.gen[pslot] === gen && env.msgId === msgId) return env;
      } catch (e) {
        // The segment may have been unlinked because the piece moved on: re-check and retry.
        if (P.gen[pslot] === gen) throw e;
      }
    }
    return undefined;
  }

  private pieceView(pslot: number, env: EnvelopeRecord): PieceView {
    const core = this.cx.core;
    const lane = core.laneOf(pslot);
    const pending = new Set(this.read.pendingOf(pslot, env));
    const v: PieceView = {
      piece: env.piece,
      version: env.version,
      lane: lane.name,
      laneKind: lane.kind,
      due: env.due,
      active: (core.pieces.flags[pslot]! & F_INFLIGHT) !== 0,
      // Deferrals of a held piece back into its lane write nothing: the queue counts them in
      // memory since the envelope was written (docs/queue-states.md, "Held lanes").
      attempts: this.read.attemptsOf(pslot, env),
      recipients: env.info.recipients.map((r, i) => {
        const outcome = core.deltas.get(pslot)?.get(i);
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
    const unwritten = core.unwritten.get(pslot);
    if (unwritten) v.lastError = unwritten.last;
    else if (env.info.lastError !== undefined) v.lastError = env.info.lastError;
    return v;
  }

  private static messageView(
    msgId: number,
    qi: number,
    env: EnvelopeRecord,
    pieces: PieceView[],
  ): MessageView {
    const m: MessageView = {
      id: formatId(msgId),
      queue: qi,
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

  /** Compiles a filter once the facets of every piece are known (read once after a start). */
  private async compile(f: Filter): Promise<IndexFilter> {
    await this.read.indexFacets();
    return new IndexFilter(this.cx, f);
  }

  /** Ids of the live messages with a piece matching the filter, in ascending order. */
  async matching(filter: Filter, now: number): Promise<number[]> {
    const f = await this.compile(filter);
    const ids: number[] = [];
    if (f.none) return ids;
    for (const [msgId, mslot] of this.cx.core.msgs.byId)
      if (f.pieces(mslot, now, this.unwritten).length > 0) ids.push(msgId);
    return ids.sort((a, b) => a - b);
  }

  /**
   * Views of the messages `ids` (queue index `qi`) with only their pieces that match the filter
   * now; the envelopes are read together. A message that ended or stopped matching is left out.
   */
  async messages(
    ids: readonly number[],
    filter: Filter,
    now: number,
    qi: number,
  ): Promise<Map<number, MessageView>> {
    const f = await this.compile(filter);
    const M = this.cx.core.msgs;
    const wanted: Array<{ msgId: number; pieces: number[] }> = [];
    for (const msgId of ids) {
      const mslot = M.byId.get(msgId);
      if (mslot !== undefined) wanted.push({ msgId, pieces: f.pieces(mslot, now, this.unwritten) });
    }
    const slots = wanted.flatMap((w) => w.pieces);
    const envs = slots.length > 0 ? await this.read.readEnvelopes(slots) : new Map<number, EnvelopeRecord>();
    const out = new Map<number, MessageView>();
    for (const { msgId, pieces } of wanted) {
      let first: EnvelopeRecord | undefined;
      const views: PieceView[] = [];
      for (const pslot of pieces) {
        // Read in the batch, or again alone if it changed meanwhile.
        let env = envs.get(pslot);
        if (env?.msgId !== msgId) env = await this.readStable(pslot, msgId);
        // The index describes the version just read: it may have stopped matching meanwhile.
        if (!env || !f.piece(pslot)) continue;
        first ??= env;
        views.push(this.pieceView(pslot, env));
      }
      if (first && views.length > 0) {
        views.sort((a, b) => a.piece - b.piece);
        out.set(msgId, QueueView.messageView(msgId, qi, first, views));
      }
    }
    return out;
  }

  /** One message with every live piece (and its data if asked), or undefined when it is not here. */
  async describe(
    msgId: number,
    qi: number,
    withData: boolean,
  ): Promise<(MessageView & { data?: Buffer }) | undefined> {
    const core = this.cx.core;
    const mslot = core.msgs.byId.get(msgId);
    if (mslot === undefined) return undefined;
    let first: EnvelopeRecord | undefined;
    const pieces: PieceView[] = [];
    for (const pslot of core.piecesOf(mslot)) {
      const env = await this.readStable(pslot, msgId);
      if (!env) continue;
      first ??= env;
      pieces.push(this.pieceView(pslot, env));
    }
    if (!first) return undefined;
    pieces.sort((a, b) => a.piece - b.piece);
    const view: MessageView & { data?: Buffer } = QueueView.messageView(msgId, qi, first, pieces);
    if (withData) view.data = await this.read.readData(mslot, msgId);
    return view;
  }

  /**
   * Adds the summary counts of the messages matching the filter to `total` and `byDomain`, from
   * the index alone: the figures summarize() would give over the listed messages.
   */
  async summarize(
    filter: Filter,
    now: number,
    nb: number,
    total: SummaryRow,
    byDomain: Map<string, SummaryRow>,
  ): Promise<void> {
    const f = await this.compile(filter);
    const core = this.cx.core;
    const facets = core.facets;
    const names = facets.domains.names;
    // Counts by domain id and bucket; `mark` dedups a message's domains without a Set per message.
    const counts = new Int32Array(names.length * nb);
    const mark = new Int32Array(names.length).fill(-1);
    let stamp = 0;
    for (const mslot of core.msgs.byId.values()) {
      const pieces = f.pieces(mslot, now, this.unwritten);
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
        if (counts[d * nb + b]! > 0) countRow(byDomain, names[d]!, b, nb, counts[d * nb + b]!);
  }

  /** Whether the message is queued here. */
  has(msgId: number): boolean {
    return this.cx.core.msgs.byId.has(msgId);
  }

  /** Live messages. */
  get messageCount(): number {
    return this.cx.core.msgs.count;
  }

  /** Adds the live pieces of every lane but `data` to `into`, by lane name. */
  laneDepths(into: Map<string, LaneDepth>): void {
    for (const lane of this.cx.core.lanes) {
      if (lane.kind === 'data') continue;
      let d = into.get(lane.name);
      if (!d) into.set(lane.name, (d = { lane: lane.name, kind: lane.kind, live: 0 }));
      d.live += lane.live;
    }
  }

  /** Adds the held lanes (one per ETRN/ODMR domain) with their counts and oldest ages to `into`. */
  heldSummary(now: number, into: Map<string, HeldDomain>): void {
    const core = this.cx.core;
    const P = core.pieces;
    const M = core.msgs;
    for (const lane of core.lanes) {
      if (lane.kind !== 'held' || lane.domain === undefined) continue;
      let h = into.get(lane.domain);
      if (!h) into.set(lane.domain, (h = { domain: lane.domain, count: 0, oldestAgeMs: 0 }));
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

  /** The `n` longest-queued messages, oldest first. */
  oldest(n: number): OldMessage[] {
    const core = this.cx.core;
    const M = core.msgs;
    const P = core.pieces;
    const top: Array<{ arrival: number; id: number; lane: string }> = [];
    if (n <= 0) return [];
    for (const [id, slot] of M.byId) {
      const a = M.arrival[slot]!;
      if (top.length < n || a < top[top.length - 1]!.arrival) {
        const head = M.head[slot]!;
        const lane = head === NO_SLOT ? '' : (core.lanes[P.lane[head]!]?.name ?? '');
        let i = top.length;
        while (i > 0 && top[i - 1]!.arrival > a) i--;
        top.splice(i, 0, { arrival: a, id, lane });
        if (top.length > n) top.pop();
      }
    }
    return top.map((t) => ({ id: formatId(t.id), arrival: t.arrival, lane: t.lane }));
  }

  writerStats(): WriterStats {
    const w = this.cx.writer;
    return {
      dir: this.cx.dir,
      batches: w.stats.batches,
      records: w.stats.records,
      bytes: w.stats.bytes,
      datasyncs: w.stats.datasyncs,
      poisoned: w.poisoned !== undefined,
      spares: {
        ready: this.cx.spares.readyCount,
        kept: this.cx.spares.stats.kept,
        reused: this.cx.spares.stats.taken,
      },
    };
  }
}
