// A bounded cache of read-only file descriptors for positional reads of queue segments.
//
// Invariants: at most one open() per path is in progress or cached at a time (concurrent reads of
// a file that is not cached share the one open); at most `max` descriptors are cached, least
// recently used closed first; a descriptor is closed only when no read is using it, so a read
// never races its own close; `forget(path)` (the segment is being unlinked or renamed) closes
// the cached descriptor as soon as its readers are done, so a deleted segment never keeps its
// disk space pinned by us. Reads beyond the cache bound still work: they open a descriptor that
// is closed when the last of its readers finishes.
// Fails: open and read errors reject the read that met them (and are not cached).
import * as fs from 'node:fs';

interface Entry {
  path: string;
  fd: Promise<number>;
  /** Reads using the descriptor now. */
  users: number;
  /** Not in the cache any more: close when `users` reaches 0. */
  evicted: boolean;
}

function openRead(path: string): Promise<number> {
  return new Promise((res, rej) => fs.open(path, fs.constants.O_RDONLY, (e, fd) => (e ? rej(e) : res(fd))));
}

function closeFd(fd: Promise<number>): void {
  fd.then(
    (n) => fs.close(n, () => {}),
    () => {},
  );
}

export class ReadHandles {
  /** Insertion order is recency order: a hit re-inserts its entry. */
  private readonly cache = new Map<string, Entry>();

  constructor(private readonly max = 64) {}

  /** Descriptors cached or in use (for tests and metrics). */
  get size(): number {
    return this.cache.size;
  }

  /** Runs `fn` with a descriptor for `path`, opening it at most once however many callers race. */
  async use<T>(path: string, fn: (fd: number) => Promise<T>): Promise<T> {
    let e = this.cache.get(path);
    if (e) {
      this.cache.delete(path);
      this.cache.set(path, e);
    } else {
      e = { path, fd: openRead(path), users: 0, evicted: false };
      this.cache.set(path, e);
      const opened = e;
      // A failed open is not cached: the next read tries again.
      e.fd.catch(() => {
        if (this.cache.get(path) === opened) this.cache.delete(path);
        opened.evicted = true;
      });
      this.trim();
    }
    e.users++;
    try {
      return await fn(await e.fd);
    } finally {
      e.users--;
      if (e.evicted && e.users === 0) closeFd(e.fd);
    }
  }

  /** The file is going away (unlink, rename): close its descriptor once no read uses it. */
  forget(path: string): void {
    const e = this.cache.get(path);
    if (!e) return;
    this.cache.delete(path);
    this.evict(e);
  }

  /** Closes every idle descriptor; those in use close when their reads finish. */
  closeAll(): void {
    for (const e of [...this.cache.values()]) this.evict(e);
    this.cache.clear();
  }

  private evict(e: Entry): void {
    if (e.evicted) return;
    e.evicted = true;
    if (e.users === 0) closeFd(e.fd);
  }

  private trim(): void {
    if (this.cache.size <= this.max) return;
    for (const e of this.cache.values()) {
      if (this.cache.size <= this.max) break;
      this.cache.delete(e.path);
      this.evict(e);
    }
  }
}
