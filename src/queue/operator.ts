// Operator actions on one message (logmta queue hold/release/flush/delete/bounce, the control
// socket): each runs on every live piece of the message once no delivery of it is in flight, as
// a new version with a history entry (a move), a Done (delete) or a failure report (bounce).
// Invariants: a piece is marked in flight while an action works on it, so no delivery starts on
// it meanwhile; a piece that a delivery holds past settleTimeoutMs is left alone and counted as
// busy, so the caller can say which messages it could not act on; a move writes its data to the
// data lane first when it leaves `new` (core.ts). Fails: the writer's error.
import type { QueueContext, QueueOptions } from './context.js';
import { HISTORY_MAX } from './context.js';
import type { LaneRunner } from './lanes/runner.js';
import type { LaneState } from './lanes/lane.js';
import type { Outcomes } from './outcomes.js';
import type { Reader } from './read.js';
import { DONE_DELETED, DONE_MOVED, type EnvelopeInfo, formatId } from './record/records.js';
import { F_INFLIGHT } from './state/tables.js';

/** What an operator action did to one message. */
export interface ActionOutcome {
  /** Pieces (envelopes) acted on. */
  pieces: number;
  /** Pieces left alone because a delivery of them was still in flight when the wait ran out. */
  busy: number;
}

export class Operator {
  private readonly settleTimeoutMs: number;

  constructor(
    private readonly cx: QueueContext,
    private readonly read: Reader,
    private readonly outcomes: Pick<Outcomes, 'finish'>,
    private readonly runner: Pick<LaneRunner, 'take' | 'pump' | 'inflightJobs' | 'claims'>,
    opts: Pick<QueueOptions, 'settleTimeoutMs'>,
  ) {
    this.settleTimeoutMs = opts.settleTimeoutMs ?? 30_000;
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
    const core = this.cx.core;
    const P = core.pieces;
    const deadline = this.cx.clock.now() + this.settleTimeoutMs;
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
        const release = this.runner.take(p);
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
      const wait = this.cx.clock.now();
      if (wait >= deadline) return { pieces, busy: busy.length };
      const running = busy
        .map((p) => this.runner.inflightJobs.get(p) ?? this.runner.claims.get(p))
        .filter((x): x is Promise<void> => x !== undefined);
      let cancel: (() => void) | undefined;
      await Promise.race([
        running.length > 0 ? Promise.allSettled(running) : new Promise((r) => setTimeout(r, 10)),
        new Promise<void>((r) => {
          cancel = this.cx.clock.setTimer(deadline - wait, r);
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
    const core = this.cx.core;
    const P = core.pieces;
    const r = await this.settled(msgId, async (pslot) => {
      const from = core.laneOf(pslot);
      const to = target(from);
      if (!to || to === from) return 'skip';
      const gen = P.gen[pslot]!;
      const env = await this.read.readEnvelope(pslot);
      const mslot = P.msg[pslot]!;
      const needData = to.kind !== 'new' && core.lanes[core.msgs.dataLane[mslot]!]!.kind !== 'data';
      const data = needData ? await this.read.readData(mslot, msgId) : undefined;
      if (P.gen[pslot] !== gen || !core.isLive(pslot)) return 'retry';
      const now = this.cx.clock.now();
      if (data) core.putData(mslot, core.dataLane(), [data], data.length);
      const pending = this.read.pendingOf(pslot, env);
      const info: EnvelopeInfo = {
        ...env.info,
        recipients: pending.map((i) => env.info.recipients[i]!),
        attempts: this.read.attemptsOf(pslot, env),
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
    await this.cx.writer.commit();
    if (r.pieces > 0) this.cx.emit({ type: 'admin', id: formatId(msgId), action: ev });
    this.runner.pump(core.newLane());
    return r;
  }

  /** Administrative hold: the message waits in the hold lane until released. */
  hold(msgId: number): Promise<ActionOutcome> {
    return this.moveAll(
      msgId,
      (l) => (l.kind === 'hold' ? undefined : this.cx.core.lane('hold')),
      'held by operator',
    );
  }

  /** Releases held pieces (operator hold, or a held domain) for an immediate attempt. */
  release(msgId: number): Promise<ActionOutcome> {
    return this.moveAll(
      msgId,
      (l) => (l.kind === 'hold' || l.kind === 'held' ? this.cx.core.newLane() : undefined),
      'released by operator',
    );
  }

  /** Operator flush of one message: its pieces in the retry ladder are attempted now (moved to `new`). */
  flushMessage(msgId: number): Promise<ActionOutcome> {
    return this.moveAll(
      msgId,
      (l) => (l.kind === 'retry' ? this.cx.core.newLane() : undefined),
      'flushed by operator',
    );
  }

  /** Deletes a message without any report. */
  async remove(msgId: number): Promise<ActionOutcome> {
    const r = await this.settled(msgId, async (p) => {
      this.cx.fresh.env.delete(p);
      this.cx.core.killPiece(p, DONE_DELETED, 1);
      return 'done';
    });
    if (this.cx.core.msgs.byId.get(msgId) === undefined) this.cx.fresh.drop(msgId);
    await this.cx.writer.commit();
    if (r.pieces > 0) this.cx.emit({ type: 'admin', id: formatId(msgId), action: 'deleted by operator' });
    return r;
  }

  /** Ends a message now with a failure report to its sender for every pending recipient. */
  async bounce(msgId: number): Promise<ActionOutcome> {
    const P = this.cx.core.pieces;
    const r = await this.settled(msgId, async (pslot) => {
      const gen = P.gen[pslot]!;
      const env = await this.read.readEnvelope(pslot);
      if (P.gen[pslot] !== gen) return 'retry';
      const pending = this.read.pendingOf(pslot, env);
      await this.outcomes.finish(
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
    if (r.pieces > 0) this.cx.emit({ type: 'admin', id: formatId(msgId), action: 'bounced by operator' });
    return r;
  }
}
