// Read-ahead for recovery: segment files are read whole, one after the other, and the main
// thread would sit idle during each read. Given the order in which the files will be wanted
// (and their sizes, when known), this keeps the next ones being read while the current one is
// scanned: one file ahead at least, more while they are small — a queue of a thousand lanes has
// a thousand small files, each read costing several thread-pool trips (open, fstat, read, close)
// whose latency would otherwise add up in front of the scan.
// Invariant: what is read ahead is at most `maxFiles` files and, beyond the first one, at most
// `maxBytes` bytes by the sizes given (memory: the segment being scanned plus that); every file
// is read at most once unless asked for again after it was handed out; a read-ahead that fails
// rejects only when its file is asked for (never as an unhandled rejection).
// Fails: get() rejects with whatever `read` rejected with.

export interface ReadAheadLimits {
  /** Files read ahead at most (default 1). */
  maxFiles?: number;
  /** Bytes read ahead at most beyond the first file ahead, by `sizes` (default 0). */
  maxBytes?: number;
  /** The size of each file of the order, as planned (a file without one counts as large). */
  sizes?: ReadonlyMap<string, number>;
}

export class ReadAhead {
  private readonly handedOut = new Set<string>();
  /** Reads started ahead, in the order's order. */
  private readonly ahead: Array<{ path: string; buf: Promise<Buffer> }> = [];
  /**
   * Every file of the order before this index was read ahead or handed out. A file asked for
   * out of order (recovery reads a lane's newest segment first) leaves the files before it to
   * be read ahead still.
   */
  private low = 0;
  private readonly maxFiles: number;
  private readonly maxBytes: number;

  constructor(
    private readonly order: readonly string[],
    private readonly read: (path: string) => Promise<Buffer>,
    private readonly limits: ReadAheadLimits = {},
  ) {
    this.maxFiles = Math.max(1, limits.maxFiles ?? 1);
    this.maxBytes = Math.max(0, limits.maxBytes ?? 0);
  }

  /** The bytes of `path`; starts reading the next files of the order that are still wanted. */
  get(path: string): Promise<Buffer> {
    let buf: Promise<Buffer>;
    const k = this.ahead.findIndex((a) => a.path === path);
    if (k >= 0) {
      buf = this.ahead[k]!.buf;
      this.ahead.splice(k, 1);
    } else {
      buf = this.read(path);
    }
    this.handedOut.add(path);
    this.fill();
    return buf;
  }

  private sizeOf(path: string): number {
    return this.limits.sizes?.get(path) ?? Number.POSITIVE_INFINITY;
  }

  private fill(): void {
    let bytes = 0;
    for (let n = 1; n < this.ahead.length; n++) bytes += this.sizeOf(this.ahead[n]!.path);
    let j = this.low;
    for (; j < this.order.length && this.ahead.length < this.maxFiles; j++) {
      const next = this.order[j]!;
      if (this.handedOut.has(next) || this.ahead.some((a) => a.path === next)) continue;
      if (this.ahead.length > 0) {
        const size = this.sizeOf(next);
        if (bytes + size > this.maxBytes) break;
        bytes += size;
      }
      const p = this.read(next);
      p.catch(() => {});
      this.ahead.push({ path: next, buf: p });
    }
    this.low = j;
  }
}
