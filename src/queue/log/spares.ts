// Spare segments: files of reclaimed segments kept in `<queue dir>/spare/` and zeroed in the
// background, so that a busy lane's next segment overwrites blocks the file system has already
// allocated instead of extending a new file. On ext4 an O_DSYNC write that extends a file must
// commit the block allocation and the new size through the journal; one over allocated, written
// blocks commits nothing but the data (measured in docs/performance.md). Postgres recycles its
// WAL segments for the same reason.
// Life of a spare: a segment the writer would unlink is renamed to `spare/<n>.dirty` instead
// (when the pool has room and the file is big enough to be worth it); the zeroer overwrites the
// whole file with zeros, makes that durable (fdatasync) and renames it `<n>.zero`; the writer
// takes a `.zero` file and renames it into a lane as a new segment, then writes its header.
// Invariants:
// - a file under a `.zero` name holds only zeros, durably: its data was synced before the rename
//   that gave it the name. Readers take zeros as the end of a segment (record/frame.ts), so a
//   reused file never shows a record of its former life.
// - every rename into or out of spare/ is made durable in both directories before the file is
//   used in its new role. A crash between those two directory syncs may leave the file under
//   both names — a lane's segment and a spare — on a file system that does not commit a rename
//   atomically; zeroing that spare would wipe the segment. So a spare with more than one name
//   at the start is never zeroed or taken: its spare name is unlinked, the segment keeps its.
// - recovery is the start: whatever is in spare/ under another name (a zeroing cut short) is
//   zeroed again; files beyond the pool's size are unlinked.
// Fails: nothing here poisons the queue. A spare that cannot be zeroed or renamed is unlinked
// (and, failing that, left for the next start); take() answering false sends the writer to
// create a new file as before.
import { type QueueFs, writeZeros } from './fs.js';

/** Spare segments a queue keeps by default (each up to the segment size, 64 MiB by default). */
export const DEFAULT_SPARE_SEGMENTS = 4;

export interface SpareStats {
  /** Segments renamed into spare/ instead of being unlinked. */
  kept: number;
  /** Spares zeroed and ready. */
  zeroed: number;
  /** Spares handed to the writer as new segments. */
  taken: number;
  /** Files found at the start under a spare name and a lane's (a crash mid-rename): their spare name dropped. */
  shared: number;
}

export class SparePool {
  private readonly ready: string[] = [];
  private readonly dirty: string[] = [];
  private next = 1;
  private zeroing: Promise<void> | undefined;
  private closed = false;
  readonly stats: SpareStats = { kept: 0, zeroed: 0, taken: 0, shared: 0 };

  constructor(
    private readonly fs: QueueFs,
    private readonly queueDir: string,
    /** Files larger than this are never kept; smaller than half of it are not worth keeping. */
    private readonly segmentSize: number,
    /** Spares kept at most, ready and dirty together; 0 turns the pool off. */
    readonly max: number,
  ) {}

  private get dir(): string {
    return `${this.queueDir}/spare`;
  }

  /**
   * Lists what the last run left in spare/: `.zero` files are ready, anything else is zeroed
   * again (in the background); files beyond `max`, or all of them when the disk is short of
   * space, are unlinked. Call once, before recovery. Resolves to the number of files kept.
   */
  async open(): Promise<number> {
    const names = await this.fs.readdir(this.dir);
    const low = await this.lowOnSpace();
    for (const name of names.sort()) {
      const n = Number.parseInt(name, 10);
      if (Number.isFinite(n)) this.next = Math.max(this.next, n + 1);
      const path = `${this.dir}/${name}`;
      // Also a lane's segment (a crash between a rename's two directory syncs): drop this name.
      const names = (await this.fs.links?.(path).catch(() => 1)) ?? 1;
      if (names > 1) {
        this.stats.shared++;
        await this.drop(path);
      } else if (low || this.ready.length + this.dirty.length >= this.max) await this.drop(path);
      else if (/^\d+\.zero$/.test(name)) this.ready.push(path);
      else this.dirty.push(path);
    }
    this.kick();
    return this.ready.length + this.dirty.length;
  }

  /** Spares ready to be taken. */
  get readyCount(): number {
    return this.ready.length;
  }

  /**
   * Takes the file of a segment that is to be unlinked (its records are all garbage, and the
   * caller has closed its handle). True when it is now a spare; false when the caller should
   * unlink it as before (pool full or off, file too small or too large, stopping).
   */
  async keep(from: string, fromDir: string): Promise<boolean> {
    if (this.closed || this.ready.length + this.dirty.length >= this.max) return false;
    const size = await this.fs.size(from).catch(() => -1);
    if (size < this.segmentSize / 2 || size > this.segmentSize || (await this.lowOnSpace())) return false;
    if (this.dirty.length === 0 && this.ready.length === 0) await this.fs.mkdirp(this.dir);
    const to = `${this.dir}/${this.next++}.dirty`;
    await this.fs.rename(from, to);
    // Gone from the lane durably (as an unlink would be), and nowhere else but here.
    await this.fs.syncDir(fromDir);
    await this.fs.syncDir(this.dir);
    this.stats.kept++;
    this.dirty.push(to);
    this.kick();
    return true;
  }

  /**
   * Renames a ready spare to `to` (a new segment's path in `toDir`) and makes that durable.
   * True when `to` now exists and holds only zeros; false when no spare is ready.
   */
  async take(to: string, toDir: string): Promise<boolean> {
    const from = this.closed ? undefined : this.ready.shift();
    if (from === undefined) return false;
    try {
      await this.fs.rename(from, to);
    } catch {
      await this.drop(from);
      return false;
    }
    await this.fs.syncDir(toDir);
    await this.fs.syncDir(this.dir);
    this.stats.taken++;
    return true;
  }

  /** Stops zeroing; resolves when the pool does no more I/O. What is left is redone at the next start. */
  async close(): Promise<void> {
    this.closed = true;
    await this.zeroing;
  }

  /**
   * Whether the file system is too full to keep spares: less free than twice the pool's whole
   * size. Spares are the first space a filling disk gets back (they are unlinked at the next
   * start, and no more are kept), well before the queue's reserve (reserve.ts) is needed.
   */
  private async lowOnSpace(): Promise<boolean> {
    if (this.max === 0) return true;
    const free = await this.fs.freeBytes?.(this.queueDir).catch(() => undefined);
    return free !== undefined && free < 2 * this.max * this.segmentSize;
  }

  private kick(): void {
    if (this.zeroing || this.closed || this.dirty.length === 0) return;
    this.zeroing = (async () => {
      try {
        // A file stays in `dirty` while it is zeroed, so that it counts against the pool's size.
        while (this.dirty.length > 0 && !this.closed) {
          const path = this.dirty[0]!;
          const ready = await this.zero(path);
          if (ready === undefined && this.closed) break; // zeroed again at the next start
          this.dirty.shift();
          if (ready !== undefined) this.ready.push(ready);
        }
      } finally {
        this.zeroing = undefined;
      }
    })();
  }

  /** Zeroes one spare and renames it `.zero`: its new path, or undefined (stopped, or failed and unlinked). */
  private async zero(path: string): Promise<string | undefined> {
    try {
      const size = await this.fs.size(path);
      if (size > this.segmentSize) throw new RangeError('larger than a segment');
      const f = await this.fs.openWrite(path);
      try {
        if (!(await writeZeros(f, size, () => this.closed))) return undefined;
      } finally {
        await f.close();
      }
      const ready = path.replace(/\.[^./]*$/, '.zero');
      await this.fs.rename(path, ready);
      this.stats.zeroed++;
      return ready;
    } catch {
      await this.drop(path);
      return undefined;
    }
  }

  private async drop(path: string): Promise<void> {
    await this.fs.unlink(path).catch(() => {});
  }
}
