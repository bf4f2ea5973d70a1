// Helpers for the queue's tests (never shipped): a sample message, a scripted deliverer, and
// CrashFs, a MemQueueFs wrapper that "loses power" at a chosen file operation and then freezes
// the old process (its pending operations never complete), so a test can recover from exactly
// the state a crash at that point leaves. The fake clock is test/support/clock.ts, waiting is
// test/support/wait.ts.
// Invariant: after the crash, nothing the frozen queue does can reach the file system that
// recovery sees.
import type { QueueFile, QueueFs } from '../../src/queue/log/fs.js';
import { internals, type Queue } from '../../src/queue/queue.js';
import { F_INFLIGHT } from '../../src/queue/state/tables.js';
import type { DeliveryJob, RcptOutcome, ReportHooks } from '../../src/queue/types.js';
import { mayWantDelay, wantsReport } from '../../src/delivery/reports.js';
import type { FakeClock } from './clock.js';
import { MemQueueFs } from './memfs.js';
import { tick, waitFor } from './wait.js';

export const msg = (n: number | string) => [Buffer.from(`Subject: test ${n}\r\n\r\nbody ${n}\r\n`)];

/** A deliverer that answers from a function and records the jobs it saw. */
export function scripted(answer: (job: DeliveryJob, rcpt: string) => RcptOutcome['status'] | RcptOutcome) {
  const seen: Array<{ id: string; rcpts: string[]; lane: string }> = [];
  const deliver = async (job: DeliveryJob) => {
    seen.push({
      id: job.id,
      rcpts: job.pending.map((i) => job.envelope.info.recipients[i]!.address),
      lane: job.lane,
    });
    const outs = job.pending.map((i) => {
      const a = answer(job, job.envelope.info.recipients[i]!.address);
      return typeof a === 'string'
        ? { rcpt: i, status: a, code: a === 'delivered' ? 250 : a === 'failed' ? 550 : 451, text: 'scripted' }
        : { ...a, rcpt: i };
    });
    await job.finish(outs);
  };
  return { seen, deliver };
}

/** @deprecated a wall-clock sleep: wait for a condition (waitFor, quiet) instead. */
/**
 * Report hooks that build no report but note each one asked for, as
 * "kind:address enhanced,..." (a delivery-status request per line), into `into`.
 */
export function recordReports(into: string[]): ReportHooks {
  return {
    wants: wantsReport,
    mayWantDelay,
    build: (req) => {
      into.push(
        `${req.kind}:${req.recipients.map((r) => `${r.info.address} ${r.outcome.enhanced}`).join(',')}`,
      );
      return null;
    },
  };
}

export const settle = (ms = 2) => new Promise((r) => setTimeout(r, ms));

/** Turns of the event loop the queue must stay idle for quiet() to count it quiet. */
const QUIET_TICKS = 5;

/**
 * Resolves once the queue has done all it can until the fake clock moves: no piece in flight,
 * nothing appended that is not durable, no timer due now — and so for a few turns of the event
 * loop in a row (a job that ends starts promise chains: its outcomes, the next pump). For
 * checks of absence ("not attempted yet", "attempted once only"); a test waiting for something
 * to happen waits for that (waitFor). Never a wall-clock sleep: under load it is slower, not
 * wrong. `unless`: stop waiting as soon as it holds (a crash froze the queue). `inflight:
 * 'ignore'`: pieces may stay in flight (a test holds their attempt, a read, an ATRN claim open)
 * — everything else that can run has run.
 */
export async function quiet(
  q: Queue,
  clock: FakeClock = q.clock as FakeClock,
  what = 'the queue to go quiet',
  opts: { unless?: () => boolean; inflight?: 'ignore' } = {},
): Promise<void> {
  const busy = () => {
    if (q.pendingBytes > 0 || clock.nextDue() === 0) return true;
    if (opts.inflight === 'ignore') return false;
    const flags = internals(q).core.pieces.flags;
    for (let s = 0; s < flags.length; s++) if ((flags[s]! & F_INFLIGHT) !== 0) return true;
    return false;
  };
  let calm = 0;
  await waitFor(async () => {
    await tick();
    if (opts.unless?.()) return true;
    calm = busy() ? 0 : calm + 1;
    return calm >= QUIET_TICKS;
  }, what);
}

const never = <T>() => new Promise<T>(() => {});

/**
 * A QueueFs over a MemQueueFs that can crash at the n-th mutating operation (write, datasync,
 * create, truncate, unlink, rename, syncDir): that operation does not happen, the MemQueueFs
 * keeps only what was durable, and every later call through this wrapper hangs forever.
 * Recovery then opens the queue on `mem` directly (or on a fresh CrashFs over it).
 */
export class CrashFs implements QueueFs {
  private left = Number.POSITIVE_INFINITY;
  dead = false;
  /** Files whose fdatasync never completes before the crash (a slow disk; syncs finish in any order). */
  stallSync: ((path: string) => boolean) | undefined;
  /** Files whose creation never completes before the crash (creations finish in any order). */
  stallCreate: ((path: string) => boolean) | undefined;
  ops = 0;
  /** Operations left hanging by stallSync or stallCreate so far. */
  stalled = 0;

  constructor(readonly mem: MemQueueFs = new MemQueueFs()) {}

  /** Crash when `n` more mutating operations have happened (0: at the very next one). */
  crashAfter(n: number): void {
    this.left = n;
  }

  /** Crash now. */
  crash(): void {
    if (this.dead) return;
    this.dead = true;
    this.mem.crash();
  }

  private gate(): boolean {
    if (this.dead) return false;
    this.ops++;
    if (this.left-- <= 0) {
      this.crash();
      return false;
    }
    return true;
  }

  private file(f: QueueFile, path: string): QueueFile {
    return {
      write: (bufs, pos) => (this.gate() ? f.write(bufs, pos) : never()),
      datasync: () => {
        if (!this.gate()) return never();
        if (this.stallSync?.(path)) {
          this.stalled++;
          return never();
        }
        return f.datasync();
      },
      close: () => (this.dead ? never() : f.close()),
    };
  }

  mkdirp(p: string) {
    return this.dead ? never<void>() : this.mem.mkdirp(p);
  }
  readdir(p: string) {
    return this.dead ? never<string[]>() : this.mem.readdir(p);
  }
  async create(p: string) {
    if (!this.gate()) return never<QueueFile>();
    if (this.stallCreate?.(p)) {
      this.stalled++;
      return never<QueueFile>();
    }
    return this.file(await this.mem.create(p), p);
  }
  async openWrite(p: string) {
    if (this.dead) return never<QueueFile>();
    return this.file(await this.mem.openWrite(p), p);
  }
  readFile(p: string) {
    return this.dead ? never<Buffer>() : this.mem.readFile(p);
  }
  read(p: string, pos: number, len: number) {
    return this.dead ? never<Buffer>() : this.mem.read(p, pos, len);
  }
  truncate(p: string, len: number) {
    return this.gate() ? this.mem.truncate(p, len) : never<void>();
  }
  unlink(p: string) {
    return this.gate() ? this.mem.unlink(p) : never<void>();
  }
  rename(a: string, b: string) {
    return this.gate() ? this.mem.rename(a, b) : never<void>();
  }
  syncDir(p: string) {
    return this.gate() ? this.mem.syncDir(p) : never<void>();
  }
  size(p: string) {
    return this.dead ? never<number>() : this.mem.size(p);
  }
  links(p: string) {
    return this.dead ? never<number>() : this.mem.links(p);
  }
}

/** Every visible file's bytes. */
export function snapshot(fs: MemQueueFs): Map<string, Buffer> {
  return new Map(fs.paths().map((p) => [p, fs.peek(p)]));
}

/** A MemQueueFs holding exactly these files, all durable. */
export async function load(files: Map<string, Buffer>): Promise<MemQueueFs> {
  const fs = new MemQueueFs();
  const dirs = new Set<string>();
  for (const [p, b] of files) {
    const dir = p.slice(0, p.lastIndexOf('/'));
    await fs.mkdirp(dir);
    dirs.add(dir);
    const f = await fs.create(p);
    if (b.length > 0) await f.write([b], 0);
    await f.datasync();
  }
  for (const d of dirs) await fs.syncDir(d);
  return fs;
}
