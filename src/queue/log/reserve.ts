// The queue's reserve: a file of zeros (`<queue dir>/reserve`, really allocated, not sparse)
// kept so that a full disk still leaves room for what frees space. When a write finds the disk
// full the queue deletes the reserve and reopens (queues.ts): recovery, delivery outcomes and the
// Done records that let segments be unlinked are then written into the space it held, while new
// mail is refused with 452 4.3.1. The reserve is written again, and new mail accepted again, once
// the file system has room for it twice over (freed by delivery or by the operator).
// Invariant: the reserve is never part of the log; losing it (a crash while it is rewritten
// leaves `reserve.tmp`, which is removed) costs nothing but the margin.
// Fails: restore() returns false while the space is not there (ENOSPC, EDQUOT); other errors
// are thrown.
import { type QueueFs, writeZeros } from './fs.js';

function isFull(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

export class Reserve {
  constructor(
    private readonly fs: QueueFs,
    private readonly dir: string,
    readonly size: number,
  ) {}

  private get path(): string {
    return `${this.dir}/reserve`;
  }

  /** Whether the reserve is in place, whole. */
  async present(): Promise<boolean> {
    return this.size === 0 || (await this.fs.size(this.path).catch(() => -1)) >= this.size;
  }

  /** Whether the file system has less room left than the reserve (free bytes, where known). */
  async low(): Promise<boolean> {
    if (this.size === 0 || !this.fs.freeBytes) return false;
    const free = await this.fs.freeBytes(this.dir).catch(() => undefined);
    return free !== undefined && free < this.size;
  }

  /** Deletes the reserve, making its space available to the queue. */
  async release(): Promise<void> {
    if (this.size === 0) return;
    await this.fs.unlink(this.path).catch(() => {});
    await this.fs.syncDir(this.dir).catch(() => {});
  }

  /**
   * Writes the reserve again if the room is there (twice its size free, where free space is
   * known; for quotas, which statfs does not show, the write itself is the test). True when the
   * reserve is in place afterwards.
   */
  async restore(): Promise<boolean> {
    if (await this.present()) return true;
    const free = await this.fs.freeBytes?.(this.dir).catch(() => undefined);
    if (free !== undefined && free < 2 * this.size) return false;
    const tmp = `${this.path}.tmp`;
    await this.fs.unlink(tmp).catch(() => {});
    try {
      const f = await this.fs.create(tmp);
      try {
        await writeZeros(f, this.size);
      } finally {
        await f.close();
      }
      await this.fs.rename(tmp, this.path);
      await this.fs.syncDir(this.dir);
      return true;
    } catch (e) {
      await this.fs.unlink(tmp).catch(() => {});
      if (isFull(e)) return false;
      throw e;
    }
  }
}
