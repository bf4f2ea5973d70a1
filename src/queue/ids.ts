// Message ids: milliseconds since the epoch times 1024 plus a counter, so ids are unique
// across restarts and across the queues of one process, sort by arrival, and fit in a double.
// One IdSource is shared by every queue of a daemon — and, built over a SharedArrayBuffer
// (`IdSource.shared`, then `new IdSource(now, buffer)` in the other thread), by the SMTP session
// thread too: the last id given is one atomic cell, so no two threads ever give the same id.

export class IdSource {
  private last = 0;
  private readonly cell: BigInt64Array | undefined;

  constructor(
    private readonly now: () => number = Date.now,
    shared?: SharedArrayBuffer,
  ) {
    this.cell = shared ? new BigInt64Array(shared, 0, 1) : undefined;
  }

  /** A source whose ids another thread's IdSource over `buffer` never repeats. */
  static shared(now: () => number = Date.now): IdSource {
    return new IdSource(now, new SharedArrayBuffer(8));
  }

  /** The shared cell's memory (undefined for a source of one thread). */
  get buffer(): SharedArrayBuffer | undefined {
    return this.cell?.buffer as SharedArrayBuffer | undefined;
  }

  next(): number {
    const base = Math.floor(this.now()) * 1024;
    if (!this.cell) {
      const id = base <= this.last ? this.last + 1 : base;
      this.last = id;
      return id;
    }
    for (;;) {
      const last = Atomics.load(this.cell, 0);
      const id = base <= Number(last) ? Number(last) + 1 : base;
      if (Atomics.compareExchange(this.cell, 0, last, BigInt(id)) === last) return id;
    }
  }

  /** Makes sure later ids are above one seen in the queue (clock stepped back). */
  observe(id: number): void {
    if (!this.cell) {
      if (id > this.last) this.last = id;
      return;
    }
    for (;;) {
      const last = Atomics.load(this.cell, 0);
      if (Number(last) >= id) return;
      if (Atomics.compareExchange(this.cell, 0, last, BigInt(id)) === last) return;
    }
  }
}
