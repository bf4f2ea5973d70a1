// One process per queue directory. Two daemons appending to the same lanes would interleave
// records and break every invariant, so a daemon holds an exclusive flock(2) on
// `<queue dir>/owner.pid` for as long as it uses the directory.
// Invariant: the lock is taken atomically by the kernel (no read-check-write window: two starts
// at the same moment cannot both win) and dies with the process that holds it (a crash or
// SIGKILL frees it, nothing stale is left to take over). The file also carries the holder's
// process id, for the operator's message only; it is written after the lock is held and may be
// left unwritten on a full disk — the lock does not depend on it.
// Fails: QUEUE_LOCKED (permanent) when another process holds the lock, naming it; an error to
// open the file (permissions) is thrown as it is.
// queueInUse asks the same question read-only (for `log verify`): a shared lock, tried and at
// once given back, opening the file read-only and never creating it.
// flock comes from fs-ext (a small native module; Node has no flock). Locks are per open file
// description: the same process taking the directory twice without releasing is refused too.
import { closeSync, constants, ftruncateSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { MtaError } from '../errors.js';

type Flock = (fd: number, flags: 'exnb' | 'shnb' | 'un') => void;
let flock: Flock | undefined;
/**
 * fs-ext, loaded at the first lock: it is not safe to load in a worker thread (its init fails a
 * V8 check there), and the SMTP session thread imports the queue's index without ever locking.
 */
function flockSync(fd: number, flags: 'exnb' | 'shnb' | 'un'): void {
  flock ??= (createRequire(import.meta.url)('fs-ext') as { flockSync: Flock }).flockSync;
  flock(fd, flags);
}

export interface QueueLock {
  readonly file: string;
  /**
   * Says in the lock file that the holder is stopping, so that a daemon started meanwhile (an
   * upgrade: stop, start at once) waits for the lock instead of giving up (lockQueueDirWaiting).
   */
  markStopping(): void;
  /** Frees the lock (the daemon has stopped using the directory). Idempotent. */
  release(): void;
}

/** Claims `dir` for this process, or throws QUEUE_LOCKED if another process holds it. */
export function lockQueueDir(dir: string): QueueLock {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, 'owner.pid');
  const fd = openSync(file, constants.O_RDWR | constants.O_CREAT, 0o600);
  try {
    flockSync(fd, 'exnb');
  } catch (e) {
    closeSync(fd);
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK') throw e;
    let owner = '';
    try {
      const pid = Number.parseInt(readFileSync(file, 'utf8'), 10);
      if (Number.isInteger(pid) && pid > 0) owner = ` by process ${pid}`;
    } catch {
      // unreadable: the message says less
    }
    throw new MtaError(
      'QUEUE_LOCKED',
      'permanent',
      `queue directory ${dir} is in use${owner} (it holds a lock on ${file})`,
    );
  }
  try {
    ftruncateSync(fd, 0);
    writeSync(fd, `${process.pid}\n`, 0);
  } catch {
    // A full disk: the lock holds all the same; only the operator's hint is missing.
  }
  let held = true;
  return {
    file,
    markStopping() {
      if (!held) return;
      try {
        writeSync(fd, `${process.pid} stopping\n`, 0);
      } catch {
        // A full disk: a daemon started meanwhile waits for an answer on the control socket instead.
      }
    },
    release() {
      if (!held) return;
      held = false;
      closeSync(fd); // closing the only descriptor of the open file frees the flock
    },
  };
}

export interface LockWait {
  /** Longest wait for the holder to let go (default 30 s: its stop grace and more). */
  timeoutMs?: number;
  /** Whether the holder answers as a running daemon does (on its control socket). */
  holderAnswers: () => Promise<boolean>;
  /** How long a holder that answers and does not say it stops is given before it counts as running (default 1 s). */
  answeringMs?: number;
  /** Told once, when the wait begins: the holder's pid (if known). */
  onWait: (pid: number | undefined) => void;
}

/** The holder's pid and whether it has said it stops (markStopping), from the lock file. */
function holderOf(file: string): { pid: number | undefined; stopping: boolean } {
  try {
    const text = readFileSync(file, 'utf8');
    const pid = Number.parseInt(text, 10);
    return { pid: Number.isInteger(pid) && pid > 0 ? pid : undefined, stopping: /\bstopping\b/.test(text) };
  } catch {
    return { pid: undefined, stopping: false };
  }
}

/**
 * lockQueueDir, but a holder that is on its way out is waited for: one that has said it stops,
 * or one that does not answer on its control socket (stopping, or still starting). A holder
 * that goes on answering without saying it stops is a running daemon: QUEUE_LOCKED after
 * `answeringMs`, as from lockQueueDir. QUEUE_LOCKED as well when the lock is not free within
 * `timeoutMs`.
 */
export async function lockQueueDirWaiting(dir: string, w: LockWait): Promise<QueueLock> {
  const start = Date.now();
  let answeringSince: number | undefined;
  let told = false;
  for (;;) {
    try {
      return lockQueueDir(dir);
    } catch (e) {
      if (!(e instanceof MtaError) || e.code !== 'QUEUE_LOCKED') throw e;
      const now = Date.now();
      if (now - start >= (w.timeoutMs ?? 30_000)) throw e;
      const holder = holderOf(join(dir, 'owner.pid'));
      if (!holder.stopping && (await w.holderAnswers())) {
        answeringSince ??= now;
        if (now - answeringSince >= (w.answeringMs ?? 1_000)) throw e;
      } else {
        answeringSince = undefined;
        if (!told) {
          told = true;
          w.onWait(holder.pid);
        }
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

/**
 * Whether a process (a running daemon) holds the lock of `dir`, and its pid when the file names
 * one. Read-only: the lock file is opened for reading and never created. The shared lock it
 * tries is given back at once; a daemon starting in that same instant is refused, as it would be
 * by any holder.
 */
export function queueInUse(dir: string): { pid: number | undefined } | undefined {
  const file = join(dir, 'owner.pid');
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY);
  } catch {
    return undefined; // no lock file: no daemon ever used it, or not readable (verify says more)
  }
  try {
    flockSync(fd, 'shnb');
    flockSync(fd, 'un');
    return undefined;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK') throw e;
    let pid: number | undefined;
    try {
      pid = Number.parseInt(readFileSync(file, 'utf8'), 10);
    } catch {
      // unreadable: in use all the same
    }
    return { pid: pid !== undefined && Number.isInteger(pid) && pid > 0 ? pid : undefined };
  } finally {
    closeSync(fd);
  }
}
