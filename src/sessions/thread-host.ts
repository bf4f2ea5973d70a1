// The main thread's side of the SMTP session thread (thread-main.ts): starts it, answers what
// it asks (make this message durable, look this name up, answer this ETRN), writes its log lines
// and counts, tells it when the queue refuses mail, and stops it. A thread that dies while the
// daemon runs is logged and started again (its listening ports with it); the mail it had handed
// over is the queue's as usual, a session it had cut sees a closed connection and retries.
// Invariant: an `accept` is answered with an id only once queues.accept resolved (durable).
import { EventEmitter } from 'node:events';
import { Worker } from 'node:worker_threads';
import type { EventBus } from '../admin/events.js';
import type { Config } from '../config/index.js';
import type { DnsResolver } from '../dns/types.js';
import { errorText } from '../errors.js';
import type { Logger } from '../log.js';
import type { IdSource, MemoryBudget, Queues } from '../queue/index.js';
import type { ServerHooks, SessionContext } from '../smtp/server/hooks.js';
import type { CheckCounts, ListenerRole } from './intake.js';
import { errorWire, type FromThread, type ThreadData, type ToThread } from './thread-protocol.js';
import { ThreadSpools } from './thread-spools.js';

export interface SessionThreadDeps {
  config: Config;
  queues: Queues;
  ids: IdSource;
  budget: MemoryBudget;
  /** The main thread's SMTP hooks: their `etrn` answers the thread's ETRN commands. */
  hooks: ServerHooks;
  resolver: DnsResolver;
  events: EventBus;
  counts: CheckCounts;
  log: Logger;
}

const LEVELS = ['error', 'warn', 'info', 'debug'];
const THREAD_MAIN = new URL('./thread-main.js', import.meta.url);
/** Wait before a dead thread is started again (a thread failing at once must not spin). */
const RESTART_MS = 1_000;

/**
 * Where `logmta serve` keeps its session thread across reloads (as its ListenSockets): the next
 * daemon restarts the same thread in place, so the SMTP ports it holds are never closed.
 */
export class SessionThreadSlot {
  current: SessionThread | undefined;
  /** A worker spawned ahead of need, its modules loading, waiting for its first start. */
  private idle: Worker | undefined;

  /**
   * Spawns the session thread's worker now, so that it loads its modules on another core while
   * the queue recovers (start-up is recovery); the daemon's start then only tells it what to
   * run. Does nothing when a thread is kept or a worker waits already.
   */
  prewarm(): void {
    if (this.current !== undefined || this.idle !== undefined) return;
    const w = new Worker(THREAD_MAIN, { workerData: null });
    w.on('error', () => {});
    w.once('exit', () => {
      if (this.idle === w) this.idle = undefined;
    });
    this.idle = w;
  }

  /** The worker prewarm() spawned, for the thread that starts now (undefined if none). */
  takeIdle(): Worker | undefined {
    const w = this.idle;
    this.idle = undefined;
    return w;
  }

  /**
   * The process is about to stop: the thread is kept no longer, so the daemon's stop ends it —
   * its listening sockets closed at once (new clients refused, as by the main thread's), its
   * sessions given the grace — instead of keeping its ports bound for a restart.
   */
  release(): SessionThread | undefined {
    const t = this.current;
    this.current = undefined;
    return t;
  }

  /** The process stops: the thread's sockets close (waiting connections get the 421) and it ends. */
  async close(): Promise<void> {
    void this.takeIdle()?.terminate();
    const t = this.current;
    this.current = undefined;
    await t?.end(0);
  }
}

export class SessionThread {
  bound: Array<{ role: ListenerRole; address: string; port: number }> = [];
  /** For the metrics: open sessions, and an event per accepted connection. */
  readonly sessions = { connections: { size: 0 }, server: new EventEmitter() };
  private worker: Worker | undefined;
  private stopping = false;
  private accepted = 0;
  private refusalShown: string | undefined;
  /** The messages the thread streams, in spools of the queue's. */
  private spools: ThreadSpools;

  private refusalTimer: NodeJS.Timeout | undefined;
  private starting: { resolve: () => void; reject: (e: Error) => void } | undefined;

  private constructor(
    private d: SessionThreadDeps,
    private readonly slot: SessionThreadSlot | undefined,
  ) {
    this.spools = new ThreadSpools(d.queues);
  }

  /** Starts the sessions: in the slot's thread when it has one (a reload), else in a new thread. */
  static async start(d: SessionThreadDeps, slot?: SessionThreadSlot): Promise<SessionThread> {
    const kept = slot?.current;
    if (kept?.worker) {
      kept.d = d;
      kept.spools.dropAll();
      kept.spools = new ThreadSpools(d.queues);
      kept.stopping = false;
      await kept.begin(() =>
        kept.worker!.postMessage({ t: 'start', data: kept.threadData() } satisfies ToThread),
      );
      return kept;
    }
    const t = new SessionThread(d, slot);
    await t.begin(() => t.spawn());
    if (slot) slot.current = t;
    return t;
  }

  /** Runs `go` and waits for the thread's `ready` (its listeners bound) or its failure. */
  private async begin(go: () => void): Promise<void> {
    const ready = new Promise<void>((resolve, reject) => {
      this.starting = { resolve, reject };
    });
    go();
    try {
      await ready;
    } catch (e) {
      // A thread in a slot that failed to start again is ended: the next start makes a new one.
      if (this.slot?.current === this) this.slot.current = undefined;
      await this.end(0);
      throw e;
    }
    // The queue's refusal (full disk, failed fsync) as the thread's MAIL must give it.
    clearInterval(this.refusalTimer);
    this.refusalShown = undefined;
    this.tellRefusal();
    this.refusalTimer = setInterval(() => this.tellRefusal(), 250);
    this.refusalTimer.unref();
  }

  private threadData(): ThreadData {
    const d = this.d;
    return {
      config: d.config,
      ids: d.ids.buffer!,
      budget: d.budget.buffer!,
      budgetLimit: d.budget.limit,
      levels: LEVELS.filter((l) => d.log.isLevelEnabled(l)),
      etrn: d.config.etrn.length > 0,
    };
  }

  private spawn(): void {
    const idle = this.slot?.takeIdle();
    const w = idle ?? new Worker(THREAD_MAIN, { workerData: this.threadData() });
    if (idle) idle.postMessage({ t: 'start', data: this.threadData() } satisfies ToThread);
    this.worker = w;
    this.accepted = 0;
    w.on('message', (m: FromThread) => {
      if (m.t === 'ready') {
        this.bound = m.bound;
        this.accepted = 0;
        this.d.log.info({ thread: w.threadId, listeners: m.bound.length }, 'session thread started');
        this.starting?.resolve();
        this.starting = undefined;
      } else if (m.t === 'failed') {
        this.starting?.reject(Object.assign(new Error(m.error.message), m.error));
        this.starting = undefined;
      } else this.handle(w, m);
    });
    w.on('error', (e) => {
      this.d.log.error({ err: errorText(e), thread: w.threadId }, 'session thread failed');
      this.starting?.reject(e);
      this.starting = undefined;
    });
    w.on('exit', (code) => {
      this.sessions.connections.size = 0;
      this.spools.dropAll();
      if (this.worker === w) this.worker = undefined;
      if (this.starting) {
        this.starting.reject(new Error(`session thread exited (${code}) before it listened`));
        this.starting = undefined;
        return;
      }
      if (this.stopping || this.ended) return;
      this.d.log.error({ code, thread: w.threadId }, 'session thread exited; starting it again');
      setTimeout(() => {
        if (this.stopping || this.ended) return;
        this.begin(() => this.spawn()).catch((e) =>
          this.d.log.error({ err: errorText(e) }, 'session thread did not start again'),
        );
      }, RESTART_MS).unref();
    });
  }

  private answer(w: Worker, n: number, p: Promise<unknown>): void {
    p.then(
      // A chunk given back to the thread is transferred, not copied.
      (value) =>
        w.postMessage(
          { t: 'answer', n, value } satisfies ToThread,
          value instanceof Uint8Array ? [value.buffer as ArrayBuffer] : [],
        ),
      (e: unknown) => w.postMessage({ t: 'answer', n, error: errorWire(e) } satisfies ToThread),
    );
  }

  private handle(w: Worker, m: FromThread): void {
    const d = this.d;
    switch (m.t) {
      case 'accept': {
        const data = Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength);
        const accept = () => {
          if (m.spool === undefined)
            return d.queues.accept({ ...m.input, data: [data] }).then((r) => ({ id: r.id }));
          const spool = this.spools.take(m.spool, data);
          if (!spool) return Promise.reject(new Error('the streamed message is gone'));
          return d.queues.accept({ ...m.input, data: spool }).then(
            (r) => ({ id: r.id }),
            (e: unknown) => {
              spool.abort();
              throw e;
            },
          );
        };
        this.answer(
          w,
          m.n,
          m.facts ? d.events.withClient(m.facts.id, m.facts.sender, m.facts.client, accept) : accept(),
        );
        return;
      }
      case 'chunk':
        this.answer(
          w,
          m.n,
          this.spools.chunk(m.msgId, Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength)),
        );
        return;
      case 'read':
        this.answer(w, m.n, this.spools.read(m.msgId, m.reader));
        return;
      case 'drop':
        this.spools.drop(m.msgId);
        return;
      case 'dns': {
        const f = (d.resolver as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[m.method];
        this.answer(
          w,
          m.n,
          f ? f.apply(d.resolver, m.args) : Promise.reject(new Error(`no lookup ${m.method}`)),
        );
        return;
      }
      case 'etrn': {
        const ctx: SessionContext = {
          ...m.ctx,
          sender: undefined,
          recipientCount: 0,
          messageId: undefined,
        };
        const etrn = d.hooks.etrn;
        this.answer(
          w,
          m.n,
          etrn
            ? Promise.resolve(etrn.call(d.hooks, m.node, ctx))
            : Promise.reject(new Error('ETRN is not served')),
        );
        return;
      }
      case 'log':
        d.log[m.level](m.fields, m.msg);
        return;
      case 'count':
        (d.counts[m.what] as (...a: string[]) => void)(...m.args);
        return;
      case 'stats':
        this.sessions.connections.size = m.open;
        for (; this.accepted < m.accepted; this.accepted++) this.sessions.server.emit('connection');
        return;
      case 'stopped':
        return;
    }
  }

  private tellRefusal(): void {
    const r = this.d.queues.refusal();
    const key = r?.smtp ? `${r.code}|${r.message}` : undefined;
    if (key === this.refusalShown) return;
    this.refusalShown = key;
    this.worker?.postMessage({
      t: 'refusal',
      smtp: r?.smtp,
      ...(r ? { message: r.message, code: r.code } : {}),
    } satisfies ToThread);
  }

  private ended = false;

  /**
   * Stops the sessions (the grace as SmtpListener.stop's). A thread in a slot stays, its ports
   * bound, for the next daemon's start; any other ends.
   */
  async stop(graceMs: number): Promise<void> {
    if (this.slot?.current !== this) return this.end(graceMs);
    this.stopping = true;
    clearInterval(this.refusalTimer);
    const w = this.worker;
    if (!w) return;
    await new Promise<void>((resolve) => {
      const onMessage = (m: FromThread): void => {
        if (m.t !== 'stopped') return;
        w.off('message', onMessage);
        resolve();
      };
      w.on('message', onMessage);
      w.once('exit', () => resolve());
      w.postMessage({ t: 'stop', graceMs, keep: true } satisfies ToThread);
      // Crash-only: a thread that does not stop within the grace (and a moment) is ended.
      setTimeout(() => {
        w.off('message', onMessage);
        resolve();
      }, graceMs + 2_000).unref();
    });
  }

  /** Stops the sessions and ends the thread (its sockets close). */
  async end(graceMs: number): Promise<void> {
    this.stopping = true;
    this.ended = true;
    clearInterval(this.refusalTimer);
    const w = this.worker;
    if (!w) return;
    await new Promise<void>((resolve) => {
      w.once('exit', () => resolve());
      w.on('message', (m: FromThread) => {
        if (m.t === 'stopped') void w.terminate();
      });
      w.postMessage({ t: 'stop', graceMs, keep: false } satisfies ToThread);
      // Crash-only: a thread that does not stop within the grace (and a moment) is ended.
      setTimeout(() => void w.terminate(), graceMs + 2_000).unref();
    });
  }
}
