// When held mail gives up: a min-heap of (deadline, piece slot, generation) over every piece
// that entered a held lane (an ETRN/ODMR domain) or the operator's hold lane. The deadline is
// the piece's arrival plus its lane's max_age, fixed when the piece enters the lane, so the
// expiry sweep pops exactly the pieces whose time is up: its cost is O(expired · log n), never a
// walk over a lane.
// Invariant: every live piece of a held or hold lane has an entry with its current generation
// (entries of pieces that moved on or ended are stale and are dropped when they surface, or by
// compact() once they outnumber the live ones). Pure data structure: it never touches the queue.
// Fails: never throws.

export class ExpiryHeap {
  private deadline = new Float64Array(64);
  private slot = new Int32Array(64);
  private gen = new Uint32Array(64);
  private n = 0;

  get size(): number {
    return this.n;
  }

  /** The earliest deadline, or +Infinity when empty. */
  peek(): number {
    return this.n === 0 ? Number.POSITIVE_INFINITY : this.deadline[0]!;
  }

  push(deadline: number, slot: number, gen: number): void {
    if (this.n === this.deadline.length) this.grow(this.n * 2);
    let i = this.n++;
    while (i > 0) {
      const up = (i - 1) >> 1;
      if (this.deadline[up]! <= deadline) break;
      this.move(up, i);
      i = up;
    }
    this.deadline[i] = deadline;
    this.slot[i] = slot;
    this.gen[i] = gen;
  }

  /** Removes the earliest entry; undefined when empty. */
  pop(): { deadline: number; slot: number; gen: number } | undefined {
    if (this.n === 0) return undefined;
    const top = { deadline: this.deadline[0]!, slot: this.slot[0]!, gen: this.gen[0]! };
    this.n--;
    if (this.n > 0) {
      this.move(this.n, 0);
      this.siftDown(0);
    }
    return top;
  }

  /** Keeps only the entries `keep` accepts (O(n)); returns how many were dropped. */
  compact(keep: (slot: number, gen: number) => boolean): number {
    let w = 0;
    for (let r = 0; r < this.n; r++) {
      if (!keep(this.slot[r]!, this.gen[r]!)) continue;
      this.deadline[w] = this.deadline[r]!;
      this.slot[w] = this.slot[r]!;
      this.gen[w] = this.gen[r]!;
      w++;
    }
    const dropped = this.n - w;
    this.n = w;
    // Floyd's heap construction over what is left.
    for (let i = (this.n >> 1) - 1; i >= 0; i--) this.siftDown(i);
    return dropped;
  }

  /** Every entry, in no particular order (tests and inspection). */
  forEach(fn: (deadline: number, slot: number, gen: number) => void): void {
    for (let i = 0; i < this.n; i++) fn(this.deadline[i]!, this.slot[i]!, this.gen[i]!);
  }

  bytes(): number {
    return this.deadline.length * 16;
  }

  private siftDown(i: number): void {
    const d = this.deadline[i]!;
    const s = this.slot[i]!;
    const g = this.gen[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= this.n) break;
      const r = l + 1;
      const c = r < this.n && this.deadline[r]! < this.deadline[l]! ? r : l;
      if (this.deadline[c]! >= d) break;
      this.move(c, i);
      i = c;
    }
    this.deadline[i] = d;
    this.slot[i] = s;
    this.gen[i] = g;
  }

  private move(from: number, to: number): void {
    this.deadline[to] = this.deadline[from]!;
    this.slot[to] = this.slot[from]!;
    this.gen[to] = this.gen[from]!;
  }

  private grow(n: number): void {
    const d = new Float64Array(n);
    d.set(this.deadline);
    this.deadline = d;
    const s = new Int32Array(n);
    s.set(this.slot);
    this.slot = s;
    const g = new Uint32Array(n);
    g.set(this.gen);
    this.gen = g;
  }
}
