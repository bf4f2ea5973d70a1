// Message ids: milliseconds since the epoch times 1024 plus a counter, so ids are unique
// across restarts and across the queues of one process, sort by arrival, and fit in a double.
// One IdSource is shared by every queue of a daemon.

export class IdSource {
  private last = 0;

  constructor(private readonly now: () => number = Date.now) {}

  next(): number {
    let id = Math.floor(this.now()) * 1024;
    if (id <= this.last) id = this.last + 1;
    this.last = id;
    return id;
  }

  /** Makes sure later ids are above one seen in the queue (clock stepped back). */
  observe(id: number): void {
    if (id > this.last) this.last = id;
  }
}
