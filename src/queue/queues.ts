// Several queue directories (one per disk) used as one: new messages go to the queue with the
// fewest bytes waiting for a sync, so N disks raise the fsync and bandwidth ceiling N-fold.
// A message lives wholly in one queue; lookups by id ask each queue (there are few).
//
// A full disk is ridden out here, without a restart. When a queue's write finds no space
// (QUEUE_FULL: nothing of the refused batch was acknowledged) the queue is stopped, the bytes the
// batch half-wrote are cut (the directory is then exactly as after its last durable batch, state
// S1), its reserve is released (reserve.ts) and the directory is reopened — recovery, as a restart
// would do. The reopened queue delivers and records outcomes (so segments are freed) but refuses
// new mail with 452 4.3.1 until its reserve can be written again; reopening is retried with
// back-off while even recovery finds no space. Deliveries in flight at the fault are handed over
// (lanes/handover.ts): the reopened queue leaves their pieces to them and records their
// outcomes, so nothing is delivered twice (unless the reopen never completes: then, as after a
// crash, the next start attempts them again). A failed fsync (QUEUE_POISONED) is not ridden
// out: that queue refuses writes until the operator restarts (DESIGN.md rule 4).
// Start-up on a full disk: the reserve is released before recovery, so start-up can repair and
// come up delivering.
// Size (over 400 lines): most of it is one-line delegations to the queue of a message; the
// full-disk reopen is its one piece of logic and needs the list it replaces queues in.
import { MtaError } from '../errors.js';
import { type Clock, systemClock } from '../util/clock.js';
import { DEFAULT_MEMORY_BUDGET, MemoryBudget } from './data/budget.js';
import { DataSpool } from './data/spool.js';
import { IdSource } from './ids.js';
import { NodeQueueFs } from './log/fs.js';
import type { Handover } from './lanes/handover.js';
import { Reserve } from './log/reserve.js';
import { type ActionOutcome, type HeldCursor, Queue, type QueueOptions, internals } from './queue.js';
import type { RecoveryReport } from './recovery.js';
import type { AcceptInput, AcceptResult, Deliverer, DeliveryJob, QueueEvent } from './types.js';
import * as across from './view/across.js';
import type {
  BatchListener,
  Filter,
  HeldDomain,
  LaneDepth,
  MessageView,
  OldMessage,
  Summary,
  WriterStats,
} from './view/types.js';

/** What the operator is told about a queue's storage (the daemon logs it). */
export interface StorageEvent {
  queue: string;
  state: 'full' | 'reopened' | 'accepting' | 'poisoned' | 'reopen-failed';
  message: string;
  error?: unknown;
}

export interface QueuesOptions extends Omit<QueueOptions, 'dir'> {
  /** Bytes kept in `<dir>/reserve` for a full disk (default 4 MiB; 0: none). */
  reserve?: number;
  onStorage?: (ev: StorageEvent) => void;
}

const BACKOFF_MIN = 1_000;
const BACKOFF_MAX = 10_000;
const DEFAULT_RESERVE = 4 * 1024 * 1024;

const noSpace = (dir: string) =>
  new MtaError('QUEUE_FULL', 'transient', `queue ${dir}: not enough free space to accept new mail`, {
    smtp: { code: 452, enhanced: '4.3.1', text: 'Insufficient system storage, try again later' },
  });

const isFull = (e: unknown) => e instanceof MtaError && e.code === 'QUEUE_FULL';

export class Queues {
  private deliverer: Deliverer | undefined;
  private started = false;
  private stopped = false;
  private readonly clock: Clock;
  /** Reopens under way: stop() and close() wait for them, so no I/O outlives the Queues. */
  private readonly reopening = new Set<Promise<void>>();
  /** Message bytes in memory, over every queue (see data/budget.ts). */
  readonly budget: MemoryBudget;
  private readonly batchListeners = new Set<BatchListener>();
  private readonly eventListeners = new Set<(ev: QueueEvent) => void>();

  private constructor(
    readonly list: Queue[],
    private readonly opts: QueuesOptions & { ids: IdSource; budget: MemoryBudget },
  ) {
    this.budget = opts.budget;
    this.clock = opts.clock ?? systemClock;
    for (const q of list) this.watch(q);
  }

  static async open(paths: readonly string[], opts: QueuesOptions): Promise<Queues> {
    const ids = opts.ids ?? new IdSource(() => (opts.clock ?? { now: Date.now }).now());
    const budget = opts.budget ?? new MemoryBudget(DEFAULT_MEMORY_BUDGET);
    const full = { ...opts, ids, budget, fs: opts.fs ?? new NodeQueueFs() };
    const list: Queue[] = [];
    for (const dir of paths) list.push(await Queues.openOne(dir, full));
    const qs = new Queues(list, full);
    for (const q of list) if (q.acceptRefusal) qs.awaitSpace(q);
    return qs;
  }

  private static reserveOf(dir: string, opts: QueuesOptions): Reserve {
    return new Reserve(opts.fs!, dir, opts.reserve ?? DEFAULT_RESERVE);
  }

  /**
   * Opens one directory. On a full disk the reserve is released first; recovery that still finds
   * no space is retried with back-off. The queue refuses new mail until its reserve is back.
   */
  private static async openOne(
    dir: string,
    opts: QueuesOptions,
    released = false,
    stopped: () => boolean = () => false,
  ): Promise<Queue> {
    const reserve = Queues.reserveOf(dir, opts);
    await opts.fs!.mkdirp(dir);
    if (!released && (await reserve.low())) {
      await reserve.release();
      released = true;
    }
    const clock = opts.clock ?? systemClock;
    for (let delay = BACKOFF_MIN; ; delay = Math.min(2 * delay, BACKOFF_MAX)) {
      try {
        const q = await Queue.open({ ...opts, dir });
        if (!(await reserve.restore().catch(() => false))) q.acceptRefusal = noSpace(dir);
        return q;
      } catch (e) {
        if (!isFull(e) || stopped()) throw e;
        if (!released) {
          await reserve.release();
          released = true;
          continue;
        }
        opts.onStorage?.({
          queue: dir,
          state: 'reopen-failed',
          message: `recovery of ${dir} found no free space even without its reserve; retrying in ${delay / 1000} s (free space on that file system)`,
          error: e,
        });
        await new Promise<void>((r) => clock.setTimer(delay, r));
      }
    }
  }

  /** Wires a queue's refusals to the reopen logic and its commits and events to our listeners. */
  private watch(q: Queue): void {
    q.onBatch((records, bytes, ms) => {
      for (const l of this.batchListeners) l(records, bytes, ms);
    });
    q.onEvent((ev) => {
      for (const l of this.eventListeners) l(ev);
    });
    q.onRefused = (from, e) => {
      if (isFull(e)) {
        const p: Promise<void> = this.reopen(from, e)
          .catch((err: unknown) => {
            if (this.stopped) return; // stopping: the next start recovers
            this.opts.onStorage?.({
              queue: from.dir,
              state: 'poisoned',
              message: `queue ${from.dir} could not be reopened after a full disk (${String(err)}); it refuses writes: restart logmta`,
              error: err,
            });
          })
          .finally(() => this.reopening.delete(p));
        this.reopening.add(p);
      } else
        this.opts.onStorage?.({
          queue: from.dir,
          state: 'poisoned',
          message: `${e.message}`,
          error: e,
        });
    };
  }

  /** Replaces a queue whose write found the disk full by the same directory reopened. */
  private async reopen(old: Queue, e: MtaError): Promise<void> {
    const dir = old.dir;
    this.opts.onStorage?.({
      queue: dir,
      state: 'full',
      message: `queue ${dir}: the disk is full (${(e.cause as NodeJS.ErrnoException)?.code ?? 'ENOSPC'}): new mail gets 452 4.3.1; the queue reopens from disk and keeps delivering, and accepts again once space is free`,
      error: e,
    });
    old.halt();
    const handover = old.handOff();
    try {
      await this.replace(old, handover);
    } catch (err) {
      handover.fail(err instanceof Error ? err : new Error(String(err)));
      throw err;
    }
  }

  private async replace(old: Queue, handover: Handover): Promise<void> {
    const dir = old.dir;
    await old.close();
    // Cut what the refused batch half-wrote, as recovery would cut a torn tail.
    for (const c of internals(old).writer.failedCut ?? []) {
      await internals(old)
        .fs.truncate(c.path, c.length)
        .catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
        });
    }
    internals(old).fs.closeHandles?.();
    const stopping = () => new MtaError('QUEUE_STOPPED', 'transient', `queue ${dir} is stopping`);
    if (this.stopped) {
      handover.fail(stopping());
      return;
    }
    const q = await Queues.openOne(dir, this.opts, false, () => this.stopped);
    const i = this.list.indexOf(old);
    if (this.stopped || i < 0) {
      handover.fail(stopping());
      await q.close();
      return;
    }
    q.adopt(handover);
    this.watch(q);
    if (this.deliverer) q.setDeliverer(this.deliverer);
    this.list[i] = q;
    if (this.started) q.start();
    this.opts.onStorage?.({
      queue: dir,
      state: 'reopened',
      message: `queue ${dir} reopened after a full disk: ${q.recovery?.liveMessages ?? 0} messages, delivering${q.acceptRefusal ? '; new mail refused until space is free' : ''}`,
    });
    if (q.acceptRefusal) this.awaitSpace(q);
  }

  /** Retries writing the reserve with back-off; accepts new mail again once it is back. */
  private awaitSpace(q: Queue): void {
    const reserve = Queues.reserveOf(q.dir, this.opts);
    let delay = BACKOFF_MIN;
    const tick = async (): Promise<void> => {
      if (this.stopped || !this.list.includes(q) || q.poisoned) return;
      if (await reserve.restore().catch(() => false)) {
        q.acceptRefusal = undefined;
        this.opts.onStorage?.({
          queue: q.dir,
          state: 'accepting',
          message: `queue ${q.dir} accepts new mail again`,
        });
        return;
      }
      delay = Math.min(2 * delay, BACKOFF_MAX);
      this.clock.setTimer(delay, () => void tick());
    };
    this.clock.setTimer(delay, () => void tick());
  }

  get recovery(): RecoveryReport[] {
    return this.list.map((q) => q.recovery!);
  }

  setDeliverer(d: Deliverer): void {
    this.deliverer = d;
    for (const q of this.list) q.setDeliverer(d);
  }

  start(): void {
    this.started = true;
    for (const q of this.list) q.start();
  }

  /**
   * Starts no more deliveries (nor timers, expiry, maintenance) from now on; those in flight go
   * on, and mail is still accepted. The first step of a stop: a delivery begun during the grace
   * would only be cut at its end.
   */
  halt(): void {
    for (const q of this.list) q.halt();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.allSettled([...this.reopening]);
    await Promise.all(this.list.map((q) => q.stop()));
  }

  /** Stops all queue I/O at once (see Queue.close). */
  async close(): Promise<void> {
    this.stopped = true;
    await Promise.allSettled([...this.reopening]);
    await Promise.all(this.list.map((q) => q.close()));
  }

  /** The queue for a new message: least pending bytes, skipping those that refuse new mail. */
  pick(): Queue {
    let best: Queue | undefined;
    for (const q of this.list) {
      if (q.poisoned || q.acceptRefusal) continue;
      if (!best || q.pendingBytes < best.pendingBytes) best = q;
    }
    return best ?? this.list[0]!;
  }

  /**
   * Why new mail cannot be taken now (every queue refuses it: a full disk, a failed fsync), or
   * undefined. The SMTP server asks at MAIL, so a client learns before it sends its data.
   */
  refusal(): MtaError | undefined {
    const q = this.pick();
    return q.acceptRefusal ?? q.poisoned;
  }

  /** A spool for a message being received, in the queue it will live in (see Queue.spool). */
  spool(msgId: number): DataSpool {
    const q = this.pick();
    const refused = q.acceptRefusal ?? q.poisoned;
    if (refused) throw refused;
    return q.spool(msgId);
  }

  accept(input: AcceptInput): Promise<AcceptResult> {
    if (input.data instanceof DataSpool) {
      const spool = input.data;
      const q = this.list.find((x) => spool.writesTo(internals(x).core));
      if (q) return q.accept(input);
    }
    return this.pick().accept(input);
  }

  find(msgId: number): Queue | undefined {
    return this.list.find((q) => q.view.has(msgId));
  }

  heldCount(domain: string): number {
    let n = 0;
    for (const q of this.list) n += q.heldCount(domain);
    return n;
  }

  heldDomains(): string[] {
    return [...new Set(this.list.flatMap((q) => q.heldDomains()))];
  }

  async flushHeld(domain: string, opts: { reachableSince?: number } = {}): Promise<number> {
    const counts = await Promise.all(this.list.map((q) => q.flushHeld(domain, opts)));
    return counts.reduce((a, b) => a + b, 0);
  }

  flushRetries(): number {
    return this.list.reduce((n, q) => n + q.flushRetries(), 0);
  }

  async claimHeld(domains: readonly string[]): Promise<DeliveryJob[]> {
    return (await Promise.all(this.list.map((q) => q.claimHeld(domains)))).flat();
  }

  /** The held lanes of `domains` in every queue, one message at a time (Queue.openHeld). */
  openHeld(domains: readonly string[]): HeldCursor {
    const cursors = this.list.map((q) => q.openHeld(domains));
    let i = 0;
    return {
      next: async () => {
        for (; i < cursors.length; i++) {
          const g = await cursors[i]!.next();
          if (g) return g;
        }
        return undefined;
      },
    };
  }

  // ------------------------------------------------------------------ operator actions

  /** Runs an operator action on the message in whichever directory holds it (nothing if none). */
  private async onMessage(msgId: number, act: (q: Queue) => Promise<ActionOutcome>): Promise<ActionOutcome> {
    const q = this.find(msgId);
    return q ? act(q) : { pieces: 0, busy: 0 };
  }

  /** Administrative hold (Queue.hold). */
  hold(msgId: number): Promise<ActionOutcome> {
    return this.onMessage(msgId, (q) => q.hold(msgId));
  }

  /** Releases held pieces for an immediate attempt (Queue.release). */
  release(msgId: number): Promise<ActionOutcome> {
    return this.onMessage(msgId, (q) => q.release(msgId));
  }

  /** Deletes a message without any report (Queue.remove). */
  remove(msgId: number): Promise<ActionOutcome> {
    return this.onMessage(msgId, (q) => q.remove(msgId));
  }

  /** Ends a message now with a failure report (Queue.bounce). */
  bounce(msgId: number): Promise<ActionOutcome> {
    return this.onMessage(msgId, (q) => q.bounce(msgId));
  }

  /** Attempts a message's retry-ladder pieces now (Queue.flushMessage). */
  flushMessage(msgId: number): Promise<ActionOutcome> {
    return this.onMessage(msgId, (q) => q.flushMessage(msgId));
  }

  // ------------------------------------------------------------------ read model (view/)

  private get views() {
    return this.list.map((q) => q.view);
  }

  /** Whether the message is queued in any directory. */
  has(msgId: number): boolean {
    return this.find(msgId) !== undefined;
  }

  /** Live messages over every directory. */
  messageCount(): number {
    return this.list.reduce((n, q) => n + q.view.messageCount, 0);
  }

  /** Live pieces per lane (not `data`), summed over the directories, in lane order. */
  laneDepths(): LaneDepth[] {
    return across.laneDepths(this.views);
  }

  /** The held lanes (ETRN/ODMR domains) with their counts and oldest ages, most mail first. */
  heldSummary(now: number): HeldDomain[] {
    return across.heldSummary(this.views, now);
  }

  /** The `n` longest-queued messages, oldest first. */
  oldest(n: number): OldMessage[] {
    return across.oldest(this.views, n);
  }

  /** The group-commit writer of each directory. */
  writerStats(): WriterStats[] {
    return this.list.map((q) => q.view.writerStats());
  }

  /** What recovery found in each directory at the last (re)open. */
  recoveries(): Array<{ dir: string; report: RecoveryReport }> {
    return this.list.flatMap((q) => (q.recovery ? [{ dir: q.dir, report: q.recovery }] : []));
  }

  /** Whether some directory refuses writes (a failed fsync, or a full disk being ridden out). */
  get poisoned(): boolean {
    return this.list.some((q) => q.poisoned !== undefined);
  }

  /** Live messages matching the filter, oldest first, with only their matching pieces. */
  listPieces(filter: Filter, now: number, limit?: number): Promise<MessageView[]> {
    return across.listPieces(this.views, filter, now, limit);
  }

  /** Ids of the live messages matching the filter, oldest first, from the index alone. */
  matchIds(filter: Filter, now: number): Promise<number[]> {
    return across.matchIds(this.views, filter, now);
  }

  /** The summary (qshape) of the live messages matching the filter, from the index alone. */
  summary(filter: Filter, now: number): Promise<Summary> {
    return across.summary(this.views, filter, now);
  }

  /** One message with every live piece (and its data if asked), or undefined when it is not queued. */
  async describe(
    msgId: number,
    opts: { data?: boolean } = {},
  ): Promise<(MessageView & { data?: Buffer }) | undefined> {
    for (const [qi, q] of this.list.entries()) {
      if (!q.view.has(msgId)) continue;
      return q.view.describe(msgId, qi, opts.data === true);
    }
    return undefined;
  }

  /** Told of every group commit of every directory, reopened ones included; returns the unsubscribe. */
  onBatch(listener: BatchListener): () => void {
    this.batchListeners.add(listener);
    return () => this.batchListeners.delete(listener);
  }

  /** Told of every queue event of every directory, reopened ones included; returns the unsubscribe. */
  onEvent(listener: (ev: QueueEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }
}
