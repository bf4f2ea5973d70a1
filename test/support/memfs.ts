// An in-memory QueueFs that models what survives power loss: file bytes become durable only
// at datasync, and directory entries (creations, renames, unlinks) only at syncDir of their
// directory. `crash()` throws away everything that was not durable, as a power cut would.
// Faults can be injected per operation (ENOSPC, EIO) to test the writer's poisoning.
// A test double (never shipped): it implements the queue's file interface, src/queue/log/fs.ts.
import type { QueueFile, QueueFs } from '../../src/queue/log/fs.js';

interface Inode {
  data: Buffer;
  len: number;
  durable: Buffer;
}

export type FaultOp = 'write' | 'datasync' | 'create' | 'syncDir';

function errno(code: string, what: string): Error {
  return Object.assign(new Error(`${code}: ${what}`), { code });
}

function parentOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

export class MemQueueFs implements QueueFs {
  /** Current namespace: path -> inode. */
  private live = new Map<string, Inode>();
  /** Namespace as of the last syncDir of each directory. */
  private durable = new Map<string, Inode>();
  private dirs = new Set<string>(['/']);
  /** Counts of operations, for assertions ("a failed probe writes nothing"). */
  readonly stats = { writes: 0, bytesWritten: 0, datasyncs: 0 };
  private faults: Array<{ op: FaultOp; code: string; after: number; path?: string }> = [];
  /** Free space as statfs would report it; unset, the file system does not say (as for quotas). */
  freeBytes?: (path: string) => Promise<number | undefined>;

  /** The next `op` (after `after` more successful ones) fails with `code`, and every one after it too. */
  injectFault(op: FaultOp, code: string, after = 0, path?: string): void {
    this.faults.push(path === undefined ? { op, code, after } : { op, code, after, path });
  }

  clearFaults(): void {
    this.faults = [];
  }

  private check(op: FaultOp, path: string): void {
    for (const f of this.faults) {
      if (f.op !== op || (f.path !== undefined && !path.includes(f.path))) continue;
      if (f.after > 0) {
        f.after--;
        continue;
      }
      throw errno(f.code, `${op} ${path}`);
    }
  }

  /** Power loss: keep only durable directory entries and durable bytes. */
  crash(): void {
    const next = new Map<string, Inode>();
    for (const [p, ino] of this.durable) {
      const copy = Buffer.from(ino.durable);
      const fresh: Inode = { data: copy, len: copy.length, durable: ino.durable };
      next.set(p, fresh);
    }
    // Inodes shared between paths stay shared.
    const byOld = new Map<Inode, Inode>();
    for (const [p, ino] of this.durable) {
      const n = next.get(p)!;
      const seen = byOld.get(ino);
      if (seen) next.set(p, seen);
      else byOld.set(ino, n);
    }
    this.live = new Map(next);
    this.durable = new Map(next);
    this.faults = [];
  }

  async mkdirp(path: string): Promise<void> {
    let p = '';
    for (const part of path.split('/').filter(Boolean)) {
      p += `/${part}`;
      this.dirs.add(p);
    }
  }

  async readdir(path: string): Promise<string[]> {
    const prefix = path.endsWith('/') ? path : `${path}/`;
    const out = new Set<string>();
    for (const p of [...this.live.keys(), ...this.dirs]) {
      if (p.startsWith(prefix)) {
        const rest = p.slice(prefix.length);
        if (rest) out.add(rest.split('/')[0]!);
      }
    }
    return [...out];
  }

  private file(path: string): Inode {
    const ino = this.live.get(path);
    if (!ino) throw errno('ENOENT', path);
    return ino;
  }

  private handle(path: string): QueueFile {
    return {
      write: async (bufs, position) => {
        this.check('write', path);
        const ino = this.file(path);
        let pos = position;
        for (const b of bufs) {
          const end = pos + b.length;
          if (end > ino.data.length) {
            const grown = Buffer.alloc(Math.max(end, ino.data.length * 2, 4096));
            ino.data.copy(grown, 0, 0, ino.len);
            ino.data = grown;
          }
          b.copy(ino.data, pos);
          pos = end;
          if (pos > ino.len) ino.len = pos;
          this.stats.bytesWritten += b.length;
        }
        this.stats.writes++;
      },
      datasync: async () => {
        this.check('datasync', path);
        const ino = this.file(path);
        ino.durable = Buffer.from(ino.data.subarray(0, ino.len));
        this.stats.datasyncs++;
      },
      close: async () => {},
    };
  }

  async create(path: string): Promise<QueueFile> {
    this.check('create', path);
    if (this.live.has(path)) throw errno('EEXIST', path);
    if (!this.dirs.has(parentOf(path))) throw errno('ENOENT', path);
    this.live.set(path, { data: Buffer.alloc(0), len: 0, durable: Buffer.alloc(0) });
    return this.handle(path);
  }

  async openWrite(path: string): Promise<QueueFile> {
    this.file(path);
    return this.handle(path);
  }

  async readFile(path: string): Promise<Buffer> {
    const ino = this.file(path);
    return Buffer.from(ino.data.subarray(0, ino.len));
  }

  async read(path: string, position: number, length: number): Promise<Buffer> {
    const ino = this.file(path);
    if (position + length > ino.len) throw errno('EIO', `short read of ${path}`);
    return Buffer.from(ino.data.subarray(position, position + length));
  }

  async truncate(path: string, length: number): Promise<void> {
    const ino = this.file(path);
    ino.len = Math.min(ino.len, length);
    ino.durable = Buffer.from(ino.data.subarray(0, ino.len));
  }

  async unlink(path: string): Promise<void> {
    this.file(path);
    this.live.delete(path);
  }

  async rename(from: string, to: string): Promise<void> {
    const ino = this.file(from);
    this.live.delete(from);
    this.live.set(to, ino);
  }

  async syncDir(path: string): Promise<void> {
    this.check('syncDir', path);
    const prefix = path.endsWith('/') ? path : `${path}/`;
    const direct = (p: string) => p.startsWith(prefix) && !p.slice(prefix.length).includes('/');
    for (const p of [...this.durable.keys()]) if (direct(p) && !this.live.has(p)) this.durable.delete(p);
    for (const [p, ino] of this.live) if (direct(p)) this.durable.set(p, ino);
  }

  async size(path: string): Promise<number> {
    return this.file(path).len;
  }

  /** Names of the file (a rename whose two directories were not both synced may leave two). */
  async links(path: string): Promise<number> {
    const ino = this.file(path);
    let n = 0;
    for (const other of this.live.values()) if (other === ino) n++;
    return n;
  }

  /** Test helper: raw bytes of a file as currently visible. */
  peek(path: string): Buffer {
    return Buffer.from(this.file(path).data.subarray(0, this.file(path).len));
  }

  /** Test helper: overwrite bytes in place (both visible and durable), to simulate bit rot. */
  corrupt(path: string, offset: number, bytes: Buffer): void {
    const ino = this.file(path);
    bytes.copy(ino.data, offset);
    if (offset < ino.durable.length)
      bytes.copy(ino.durable, offset, 0, Math.min(bytes.length, ino.durable.length - offset));
  }

  /** Test helper: the visible files holding bytes that a power loss would lose (not yet fdatasync'd). */
  unsynced(): string[] {
    return this.paths().filter((p) => this.file(p).len !== this.file(p).durable.length);
  }

  /** Test helper: all file paths currently visible. */
  paths(): string[] {
    return [...this.live.keys()].sort();
  }
}
