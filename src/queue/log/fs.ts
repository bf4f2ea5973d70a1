// The file-system operations the queue uses, behind an interface so that tests can run the
// queue on a fault-injecting, crash-simulating file system (test/support/memfs.ts). Only this
// file and read-handles.ts (its descriptor cache) touch node:fs for queue files. Every method rejects with the Node error it got;
// callers decide what poisons the writer.
import * as fs from 'node:fs';
import { promisify } from 'node:util';
import { ReadHandles } from './read-handles.js';

export interface QueueFile {
  /**
   * Writes the buffers at `position`, in order, completely. When `writesDurable`, what it wrote
   * survives power loss once it resolves, and a failure may be one of the sync (treat as such).
   */
  write(bufs: readonly Buffer[], position: number): Promise<void>;
  /** Opened with O_DSYNC: every write is a write and an fdatasync in one system call. */
  readonly writesDurable?: boolean;
  /** fdatasync: data written so far survives power loss when this resolves. */
  datasync(): Promise<void>;
  close(): Promise<void>;
}

export interface QueueFs {
  mkdirp(path: string): Promise<void>;
  /** Names in a directory; [] when it does not exist. */
  readdir(path: string): Promise<string[]>;
  /**
   * Creates a new empty file (fails if it exists). The directory entry is not yet durable.
   * `durable`: each write should be durable when it returns (O_DSYNC), if the fs can do that.
   */
  create(path: string, durable?: boolean): Promise<QueueFile>;
  /** Opens an existing file for positional writes; `durable` as for create(). */
  openWrite(path: string, durable?: boolean): Promise<QueueFile>;
  readFile(path: string): Promise<Buffer>;
  /** Reads `length` bytes at `position`; short reads are errors. */
  read(path: string, position: number, length: number): Promise<Buffer>;
  /** Cuts the file to `length` and makes that durable. */
  truncate(path: string, length: number): Promise<void>;
  unlink(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  /** fsync of a directory: makes creations, renames and unlinks in it durable. */
  syncDir(path: string): Promise<void>;
  size(path: string): Promise<number>;
  /**
   * How many names the file has (st_nlink). Optional: a file system that cannot say is taken to
   * give every file one. The spare pool uses it to find a file a crash left under two names.
   */
  links?(path: string): Promise<number>;
  /** Closes descriptors kept for reads (the queue is stopping). Optional: memfs keeps none. */
  closeHandles?(): void;
  /** Bytes an unprivileged writer may still use on the file system holding `path` (statfs); undefined when it does not say. */
  freeBytes?(path: string): Promise<number | undefined>;
}

const ZERO_CHUNK = 1024 * 1024;
let zeroChunk: Buffer | undefined;

/**
 * Writes zeros over the first `length` bytes of `f`, 1 MiB a call, and fdatasyncs them. Stops
 * early, without the sync, and answers false once `stop` says so; true when all are durable.
 * (The queue's reserve and its spare segments are such files.)
 */
export async function writeZeros(
  f: QueueFile,
  length: number,
  stop: () => boolean = () => false,
): Promise<boolean> {
  zeroChunk ??= Buffer.alloc(ZERO_CHUNK);
  for (let at = 0; at < length; at += ZERO_CHUNK) {
    if (stop()) return false;
    await f.write([zeroChunk.subarray(0, Math.min(ZERO_CHUNK, length - at))], at);
  }
  await f.datasync();
  return true;
}

const open = promisify(fs.open);
const close = promisify(fs.close);
function writev(fd: number, bufs: Buffer[], pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.writev(fd, bufs, pos, (err, n) => (err ? reject(err) : resolve(n)));
  });
}
const fdatasync = promisify(fs.fdatasync);
const fsync = promisify(fs.fsync);
const read = promisify(fs.read);
const fstat = promisify(fs.fstat);

class NodeFile implements QueueFile {
  constructor(
    private readonly fd: number,
    readonly writesDurable: boolean,
  ) {}

  async write(bufs: readonly Buffer[], position: number): Promise<void> {
    let pos = position;
    // writev takes at most IOV_MAX (1024) buffers per call on Linux.
    for (let i = 0; i < bufs.length; i += 1000) {
      const part = bufs.slice(i, i + 1000);
      let want = 0;
      for (const b of part) want += b.length;
      let done = await writev(this.fd, part as Buffer[], pos);
      if (done !== want) {
        // Short write: finish it one buffer at a time.
        let skip = done;
        for (const b of part) {
          if (skip >= b.length) {
            skip -= b.length;
            continue;
          }
          const rest = b.subarray(skip);
          skip = 0;
          let off = 0;
          while (off < rest.length) {
            const n = await writev(this.fd, [rest.subarray(off)], pos + done);
            if (n <= 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' });
            off += n;
            done += n;
          }
        }
      }
      pos += want;
    }
  }

  datasync(): Promise<void> {
    return fdatasync(this.fd);
  }

  close(): Promise<void> {
    return close(this.fd);
  }
}

/**
 * The real file system. Positional reads go through a bounded cache of read descriptors
 * (read-handles.ts): one open per file at a time, closed when the file is unlinked or renamed.
 */
export class NodeQueueFs implements QueueFs {
  readonly readHandles: ReadHandles;

  constructor(opts: { maxReadHandles?: number } = {}) {
    this.readHandles = new ReadHandles(opts.maxReadHandles ?? 64);
  }

  async mkdirp(path: string): Promise<void> {
    await fs.promises.mkdir(path, { recursive: true });
  }

  async readdir(path: string): Promise<string[]> {
    try {
      return await fs.promises.readdir(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
  }

  // O_DSYNC makes a batch's write and its fdatasync one trip through the thread pool instead of
  // two: the same guarantee (data, and the metadata needed to read it back, on stable storage when
  // the write returns) for about a quarter less CPU per batch (docs/performance.md).
  async create(path: string, durable = false): Promise<QueueFile> {
    const flags = fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL;
    return new NodeFile(await open(path, flags | (durable ? fs.constants.O_DSYNC : 0), 0o600), durable);
  }

  async openWrite(path: string, durable = false): Promise<QueueFile> {
    return new NodeFile(
      await open(path, fs.constants.O_RDWR | (durable ? fs.constants.O_DSYNC : 0)),
      durable,
    );
  }

  async readFile(path: string): Promise<Buffer> {
    // One read of the whole file, not fs.readFile's 512 KiB chunks: a 64 MiB segment costs four
    // trips through the thread pool (open, fstat, read, close) instead of 130. A file that grows
    // meanwhile is read up to the size it had; one that shrinks, up to where it ends.
    const fd = await open(path, fs.constants.O_RDONLY);
    try {
      const { size } = await fstat(fd);
      const buf = Buffer.allocUnsafe(size);
      let got = 0;
      while (got < size) {
        const { bytesRead } = await read(fd, buf, got, size - got, got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      return got === size ? buf : buf.subarray(0, got);
    } finally {
      await close(fd);
    }
  }

  read(path: string, position: number, length: number): Promise<Buffer> {
    return this.readHandles.use(path, async (fd) => {
      const buf = Buffer.allocUnsafe(length);
      let got = 0;
      while (got < length) {
        const { bytesRead } = await read(fd, buf, got, length - got, position + got);
        if (bytesRead === 0)
          throw Object.assign(new Error(`short read of ${path} at ${position}`), { code: 'EIO' });
        got += bytesRead;
      }
      return buf;
    });
  }

  async truncate(path: string, length: number): Promise<void> {
    const fd = await open(path, fs.constants.O_RDWR);
    try {
      await promisify(fs.ftruncate)(fd, length);
      await fsync(fd);
    } finally {
      await close(fd);
    }
  }

  async unlink(path: string): Promise<void> {
    this.readHandles.forget(path);
    await fs.promises.unlink(path);
  }

  async rename(from: string, to: string): Promise<void> {
    this.readHandles.forget(from);
    await fs.promises.rename(from, to);
  }

  async syncDir(path: string): Promise<void> {
    const fd = await open(path, fs.constants.O_RDONLY);
    try {
      await fsync(fd);
    } finally {
      await close(fd);
    }
  }

  async size(path: string): Promise<number> {
    return (await fs.promises.stat(path)).size;
  }

  async links(path: string): Promise<number> {
    return (await fs.promises.stat(path)).nlink;
  }

  closeHandles(): void {
    this.readHandles.closeAll();
  }

  async freeBytes(path: string): Promise<number | undefined> {
    const st = await fs.promises.statfs(path);
    // A file system that reports no size at all (FUSE ones without statfs, e.g. LazyFS) says
    // nothing about its free space.
    return st.blocks === 0 ? undefined : st.bavail * st.bsize;
  }
}
