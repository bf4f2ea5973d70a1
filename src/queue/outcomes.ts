// Delivery outcomes: what an attempt's per-recipient results do to a piece. Final outcomes are
// committed as deltas (record) or with the end of the attempt (finish), which also decides
// expiry, delay warnings, where deferred recipients go (a domain's held lane, the next rung of the
// retry ladder, or back where they were), data relocation out of `new`, splitting, and the write
// phases of a move (docs/queue-states.md), and appends the reports it is handed: which outcomes
// call for a report is the report policy's answer (hooks.reports, delivery/reports.ts).
// Invariants (DESIGN.md §3): an outcome is committed before the piece counts as done; a
// permanent failure's report is appended in the same batch as the failure; a move's old version
// dies only after every replacement is durable (phase 3); a stale outcome (the piece changed
// meanwhile: an operator action) writes nothing. Fails: the writer's error (nothing acted on).
import type { Acceptor } from './accept.js';
import { HISTORY_MAX, type QueueContext } from './context.js';
import type { LaneState } from './lanes/lane.js';
import type { Phase } from './log/writer.js';
import type { Reader } from './read.js';
import {
  DONE_COMPLETED,
  DONE_MOVED,
  type EnvelopeInfo,
  type EnvelopeRecord,
  envelopeJson,
  envelopeSaysWarned,
  formatId,
  OUTCOME_DELIVERED,
  OUTCOME_FAILED,
} from './record/records.js';
import type { QueueEvent, RcptOutcome, ReportKind } from './types.js';

export class Outcomes {
  constructor(
    private readonly cx: QueueContext,
    private readonly read: Reader,
    /** Appends the reports this builds to the outcome's batch (accept.ts). */
    private readonly acceptor: Pick<Acceptor, 'append'>,
    /** Runs a lane (lanes/runner.ts): where recipients went, and `new` for the reports. */
    private readonly pump: (lane: LaneState) => void,
  ) {
    cx.core.warnPending = (rec) => this.warnPending(rec);
    cx.core.unflaggedWarnPending = (body) => this.unflaggedWarnPending(body);
  }

  /**
   * warnPending for an envelope an older logmta wrote, without its flag byte (an upgraded queue):
   * from its bytes alone — recovery parses no JSON — no unless a report policy is set, the JSON
   * does not say a warning was sent, and the policy's byte test (ReportHooks.mayWantDelay) allows
   * one. A yes may be wrong (the policy says no after all): the sweep reads the envelope at the
   * deadline and finish() decides, sending nothing then.
   */
  unflaggedWarnPending(body: Buffer): boolean {
    const policy = this.cx.hooks.reports;
    if (!policy || envelopeSaysWarned(body)) return false;
    return policy.mayWantDelay?.(envelopeJson(body)) ?? true;
  }

  /**
   * Whether a delay warning is to come for this envelope: none was sent, and the report policy
   * wants one for some recipient. Kept as the envelope's flag (core.ts), so that the deadline of
   * a held piece's warning (expire.ts) is known without reading its envelope.
   */
  warnPending(env: EnvelopeRecord): boolean {
    const policy = this.cx.hooks.reports;
    if (env.info.warned || !policy) return false;
    return env.info.recipients.some((r, i) => policy.wants('delay', env, r, { rcpt: i, status: 'deferred' }));
  }

  /** Commits final outcomes now (deltas) with their reports, so a crash does not repeat them. */
  async record(pslot: number, gen: number, env: EnvelopeRecord, outcomes: RcptOutcome[]): Promise<void> {
    const core = this.cx.core;
    const current = () => core.pieces.gen[pslot] === gen && core.isLive(pslot);
    const finalsNow = () =>
      outcomes.filter((o) => o.status !== 'deferred' && !core.deltas.get(pslot)?.has(o.rcpt));
    if (!current()) return;
    let finals = finalsNow();
    if (finals.length === 0) return;
    // The reports' copy of the message is read before anything is appended: a failure and its
    // report go in one batch, and while a read is awaited another producer's commit may make the
    // current batch durable — with the failure alone, were it already appended.
    const data =
      this.reportsDue(env, finals).length > 0
        ? await this.read.reportData(core.pieces.msg[pslot]!, env.msgId).catch(() => Buffer.alloc(0))
        : Buffer.alloc(0);
    if (!current()) return;
    finals = finalsNow();
    if (finals.length === 0) return;
    const now = this.cx.clock.now();
    const due = this.reportsDue(env, finals);
    const phase = phaseOf(1, due);
    for (const o of finals) {
      const detail: { t: number; code?: number; enhanced?: string; text?: string; host?: string } = {
        t: now,
      };
      if (o.code !== undefined) detail.code = o.code;
      if (o.enhanced !== undefined) detail.enhanced = o.enhanced;
      if (o.text !== undefined) detail.text = o.text;
      if (o.host !== undefined) detail.host = o.host;
      core.putDelta(
        pslot,
        {
          rcpt: o.rcpt,
          outcome: o.status === 'delivered' ? OUTCOME_DELIVERED : OUTCOME_FAILED,
          detail,
        },
        phase,
      );
    }
    this.appendReports(env, due, data, now);
    await this.cx.writer.commit();
    this.emitOutcomes(env, finals);
    this.pump(core.newLane());
  }

  private emitOutcomes(env: EnvelopeRecord, outs: RcptOutcome[]): void {
    if (!this.cx.hooks.onEvent) return;
    const id = formatId(env.msgId);
    for (const o of outs) {
      const ev: QueueEvent = { type: o.status, id, rcpt: env.info.recipients[o.rcpt]?.address ?? '?' };
      if (o.code !== undefined) ev.code = o.code;
      if (o.enhanced !== undefined) ev.enhanced = o.enhanced;
      if (o.text !== undefined) ev.text = o.text;
      if (o.host !== undefined) ev.host = o.host;
      this.cx.emit(ev);
    }
  }

  /**
   * The reports these outcomes call for, by kind: who gets one is the report policy's answer
   * (hooks.reports.wants, delivery/reports.ts), never decided here.
   */
  private reportsDue(
    env: EnvelopeRecord,
    finals: readonly RcptOutcome[],
    delayed: readonly RcptOutcome[] = [],
  ): Array<[ReportKind, RcptOutcome[]]> {
    const policy = this.cx.hooks.reports;
    if (!policy) return [];
    const out: Array<[ReportKind, RcptOutcome[]]> = [];
    const add = (kind: ReportKind, list: readonly RcptOutcome[]) => {
      const due = list.filter((o) => {
        const r = env.info.recipients[o.rcpt];
        return r !== undefined && policy.wants(kind, env, r, o);
      });
      if (due.length > 0) out.push([kind, due]);
    };
    add(
      'failure',
      finals.filter((o) => o.status === 'failed'),
    );
    add(
      'success',
      finals.filter((o) => o.status === 'delivered'),
    );
    add('delay', delayed);
    return out;
  }

  /** Appends the reports due (reportsDue) to the current batch, the outcome's. */
  private appendReports(
    env: EnvelopeRecord,
    due: ReadonlyArray<[ReportKind, RcptOutcome[]]>,
    data: Buffer,
    now: number,
    retryUntil?: ReadonlyMap<number, number>,
  ): void {
    const policy = this.cx.hooks.reports;
    if (!policy) return;
    for (const [kind, list] of due) {
      const msg = policy.build({
        kind,
        id: formatId(env.msgId),
        envelope: env,
        recipients: list.map((o) => {
          const until = kind === 'delay' ? retryUntil?.get(o.rcpt) : undefined;
          const r = { info: env.info.recipients[o.rcpt]!, outcome: o };
          return until === undefined ? r : { ...r, retryUntil: until };
        }),
        data,
        now,
      });
      if (msg) this.acceptor.append({ ...msg, report: true });
    }
  }

  private nextLane(lane: LaneState): LaneState {
    const core = this.cx.core;
    if (this.cx.retry.length === 0) return core.lane('hold');
    if (lane.kind !== 'retry') return core.retryLane(this.cx.retry[0]!);
    const next = this.cx.retry.find((d) => d > lane.delay);
    return core.retryLane(next ?? this.cx.retry[this.cx.retry.length - 1]!);
  }

  /**
   * Commits an attempt's result: expiry, delay warnings, where deferred recipients go (their
   * held lane or the next rung), data relocation, splitting, the write phases, reports, events.
   */
  async finish(
    pslot: number,
    gen: number,
    env: EnvelopeRecord,
    pending: number[],
    outcomes: RcptOutcome[],
  ): Promise<void> {
    const core = this.cx.core;
    const P = core.pieces;
    if (P.gen[pslot] !== gen || !core.isLive(pslot)) return; // changed meanwhile (operator action): outcome is stale
    const lane = core.laneOf(pslot);
    const now = this.cx.clock.now();
    const done = core.deltas.get(pslot);
    const byRcpt = new Map<number, RcptOutcome>();
    for (const o of outcomes) if (!done?.has(o.rcpt)) byRcpt.set(o.rcpt, o);
    const expired = now - env.arrival >= this.cx.maxAgeOf(lane);
    // Recipients not tried in this job (expiry, a held piece's delay warning, an operator action).
    const untried = new Set<number>();
    for (const r of pending) {
      if (done?.has(r) || byRcpt.has(r)) continue;
      // A report about it says what its last attempt met, which a held piece keeps in memory
      // when nothing was written; held mail never attempted is waiting for its customer.
      const last =
        expired || lane.kind === 'held'
          ? (core.unwritten.get(pslot)?.last ?? env.info.recipients[r]?.last)
          : undefined;
      const text = last
        ? `last error: ${last}`
        : lane.kind === 'held'
          ? `held until ${lane.domain} collects its mail`
          : 'not attempted';
      byRcpt.set(r, { rcpt: r, status: 'deferred', text, untried: true });
      untried.add(r);
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
        this.cx.emit({
          type: 'expired',
          id: formatId(env.msgId),
          rcpt: env.info.recipients[o.rcpt]?.address ?? '?',
        });
      } else deferred.push(o);
    }
    // Delay warnings: once per message, once it has waited delay_warning, for the recipients
    // the report policy says want one.
    const due = this.reportsDue(
      env,
      finals,
      deferred.length > 0 && !env.info.warned && now - env.arrival >= this.cx.delayWarning ? deferred : [],
    );
    const delayList = due.find(([kind]) => kind === 'delay')?.[1] ?? [];
    // Where deferred recipients go: their held lane, or the next rung of the ladder. A delay
    // warning promises the give-up time of the lane each will wait in (a held domain's max_age).
    const groups = new Map<LaneState, RcptOutcome[]>();
    const retryUntil = new Map<number, number>();
    for (const o of deferred) {
      const target = o.hold
        ? core.heldLane(o.hold)
        : lane.kind === 'held' || lane.kind === 'hold'
          ? lane
          : this.nextLane(lane);
      let g = groups.get(target);
      if (!g) groups.set(target, (g = []));
      g.push(o);
      retryUntil.set(o.rcpt, env.arrival + this.cx.maxAgeOf(target));
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
    const reportData = due.length > 0 ? await this.read.reportData(mslot, env.msgId) : Buffer.alloc(0);
    const data = relocate ? await this.read.readData(mslot, env.msgId) : undefined;
    if (P.gen[pslot] !== gen || !core.isLive(pslot)) return;
    if (groups.size === 0) {
      core.killPiece(pslot, DONE_COMPLETED, phaseOf(1, due));
    } else {
      if (data && core.lanes[core.msgs.dataLane[mslot]!]!.kind !== 'data')
        core.putData(mslot, core.dataLane(), [data], data.length);
      const oldVersion = P.version[pslot]!;
      // A job without outcomes (a held piece's delay warning) was no attempt.
      const attempts = this.read.attemptsOf(pslot, env) + (outcomes.length > 0 ? 1 : 0);
      // What an untried recipient last met stays what it was (the held piece's attempts that
      // wrote nothing included: the new version folds them in).
      const unwrittenLast = core.unwritten.get(pslot)?.last;
      let first = true;
      for (const [target, list] of groups) {
        const tried = list.filter((o) => !untried.has(o.rcpt));
        const info: EnvelopeInfo = {
          ...env.info,
          recipients: list.map((o) => {
            const r = env.info.recipients[o.rcpt]!;
            if (!untried.has(o.rcpt)) return { ...r, last: describe(o) };
            return unwrittenLast === undefined ? r : { ...r, last: unwrittenLast };
          }),
          attempts,
          history: [
            ...env.info.history,
            tried.length === 0 && delayList.length > 0
              ? { t: now, ev: 'delay warning sent' }
              : {
                  t: now,
                  ev: target.kind === 'held' ? `held for ${target.domain}` : `deferred to ${target.name}`,
                  detail: describe(list[0]!),
                },
          ].slice(-HISTORY_MAX),
        };
        const withText = tried.find((o) => o.text);
        if (withText !== undefined) info.lastError = describe(withText);
        else if (unwrittenLast !== undefined) info.lastError = unwrittenLast;
        if (delayList.length > 0) info.warned = true;
        const dueAt = target.kind === 'retry' ? now + target.delay : now;
        if (first) {
          core.putEnvelope(
            pslot,
            target,
            {
              msgId: env.msgId,
              piece: env.piece,
              version: oldVersion + 1,
              due: dueAt,
              arrival: env.arrival,
              rcptCount: list.length,
              info,
            },
            phaseOf(1, due),
          );
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
              due: dueAt,
              arrival: env.arrival,
              rcptCount: list.length,
              info,
            },
            phaseOf(2, due),
          ); // a split-off piece is durable only after the parent's new version (phase 2)
        }
        // A held piece rewritten in its own lane for its delay warning did not move.
        if (target !== lane || outcomes.length > 0)
          this.cx.emit({ type: 'moved', id: formatId(env.msgId), lane: target.name });
      }
      // The old version dies only after every replacement is durable (phase 3).
      core.appendDone(lane.name, env.msgId, env.piece, oldVersion, DONE_MOVED, phaseOf(3, due));
    }
    this.appendReports(env, due, reportData, now, retryUntil);
    await this.cx.writer.commit();
    // A job without outcomes (a delay warning) deferred nothing: no "deferred" for its recipients.
    this.emitOutcomes(env, outcomes.length > 0 ? [...finals, ...deferred] : finals);
    for (const o of delayList)
      this.cx.emit({
        type: 'warned',
        id: formatId(env.msgId),
        rcpt: env.info.recipients[o.rcpt]?.address ?? '?',
      });
    for (const target of groups.keys()) if (target.kind === 'new') this.pump(target);
    this.pump(core.newLane());
  }
}
/**
 * The write phase of an outcome's record that would be in `base` without reports: one later when
 * reports are due, since they go first (phase 1) — a crash may keep a report without its outcome
 * (a duplicate), never an outcome without its report (writer.ts).
 */
function phaseOf(base: 1 | 2 | 3, due: readonly unknown[]): Phase {
  return (due.length > 0 ? base + 1 : base) as Phase;
}

function describe(o: RcptOutcome): string {
  const parts: string[] = [];
  if (o.code !== undefined) parts.push(String(o.code));
  if (o.enhanced) parts.push(o.enhanced);
  if (o.text) parts.push(o.text);
  if (o.host) parts.push(`(${o.host})`);
  return parts.join(' ') || o.status;
}
