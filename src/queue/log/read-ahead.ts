// Read-ahead for recovery: segment files are read whole, one after the other, and the main
// thread would sit idle during each read. Given the order in which the files will be wanted,
// this keeps the next one being read while the current one is scanned.
// Invariant: at most one file is read ahead (memory: the segment being scanned plus the next);
// every file is read at most once unless asked for again after it was handed out; a read-ahead
// that fails rejects only when its file is asked for (never as an unhandled rejection).
// Fails: get() rejects with whatever `read` rejected with.

export class ReadAhead {
  private readonly index = new Map<string, number>();
  private readonly handedOut = new Set<string>();
  private ahead: { path: string; buf: Promise<Buffer> } | undefined;

  constructor(
    private readonly order: readonly string[],
    private readonly read: (path: string) => Promise<Buffer>,
  ) {
    for (let i = 0; i < order.length; i++) this.index.set(order[i]!, i);
  }

  /** The bytes of `path`; starts reading the next file of the order that is still wanted. */
  get(path: string): Promise<Buffer> {
    let buf: Promise<Buffer>;
    if (this.ahead?.path === path) {
      buf = this.ahead.buf;
      this.ahead = undefined;
    } else {
      buf = this.read(path);
    }
    this.handedOut.add(path);
    const i = this.index.get(path);
    if (this.ahead === undefined && i !== undefined) {
      for (let j = i + 1; j < this.order.length; j++) {
        const next = this.order[j]!;
        if (this.handedOut.has(next)) continue;
        const p = this.read(next);
        p.catch(() => {});
        this.ahead = { path: next, buf: p };
        break;
      }
    }
    return buf;
  }
}
