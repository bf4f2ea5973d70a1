// The in-memory index of one queue, kept as columns of typed arrays so a million queued
// messages cost a few dozen bytes each (docs/queue-format.md, "memory"). Rows are slots that
// are reused; `gen` changes whenever a piece row changes identity or location, so references
// kept elsewhere (lane FIFOs) can tell they are stale without a search.
// This file holds no queue logic: it only stores and grows.

export const NO_SLOT = -1;
export const UNPLACED = 0xffffffff;

function grow<T extends Float64Array | Uint32Array | Int32Array | Uint16Array | Uint8Array>(
  a: T,
  n: number,
): T {
  const b = new (a.constructor as new (n: number) => T)(n);
  b.set(a);
  return b;
}

/**
 * Message id → slot, for a MessageTable: an open-addressing hash table of slot numbers (4 bytes
 * a bucket, at most half full) that compares keys through the table's `id` column, instead of a
 * Map whose million 52-bit keys are each a boxed number on the V8 heap (about 45 bytes an entry
 * and most of recovery's garbage collection). Linear probing, backward-shift deletion (no
 * tombstones). Iteration is in slot order and reads the columns, so it tolerates the table being
 * changed meanwhile (callers that release while iterating copy first, as they did with the Map).
 */
export class IdIndex {
  private buckets = new Int32Array(0);
  private mask = -1;
  size = 0;

  constructor(private readonly table: MessageTable) {}

  /** The bucket hash of an id (public for tests that build collisions). */
  static hash(id: number): number {
    const lo = id >>> 0;
    const hi = (id / 4294967296) >>> 0;
    let h = Math.imul(lo ^ Math.imul(hi, 0x9e3779b1), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    return (h ^ (h >>> 16)) >>> 0;
  }

  get(id: number): number | undefined {
    if (this.size === 0) return undefined;
    const b = this.buckets;
    const ids = this.table.id;
    for (let i = IdIndex.hash(id) & this.mask; ; i = (i + 1) & this.mask) {
      const s = b[i]!;
      if (s === NO_SLOT) return undefined;
      if (ids[s] === id) return s;
    }
  }

  has(id: number): boolean {
    return this.get(id) !== undefined;
  }

  /** Adds `slot`, whose id column already holds `id` (an id already present is replaced). */
  set(id: number, slot: number): void {
    if ((this.size + 1) * 2 > this.buckets.length) this.rehash(Math.max(1024, this.buckets.length * 2));
    const b = this.buckets;
    const ids = this.table.id;
    for (let i = IdIndex.hash(id) & this.mask; ; i = (i + 1) & this.mask) {
      const s = b[i]!;
      if (s === NO_SLOT) {
        b[i] = slot;
        this.size++;
        return;
      }
      if (ids[s] === id) {
        b[i] = slot;
        return;
      }
    }
  }

  /**
   * The bucket that holds `id`, or the empty one where it would go (the index grows first if
   * one more entry would make it more than half full): with at() and fill(), one probe serves
   * both the lookup and the insert (recovery meets a million ids, most of them new).
   */
  probe(id: number): number {
    if ((this.size + 1) * 2 > this.buckets.length) this.rehash(Math.max(1024, this.buckets.length * 2));
    const b = this.buckets;
    const ids = this.table.id;
    for (let i = IdIndex.hash(id) & this.mask; ; i = (i + 1) & this.mask) {
      const s = b[i]!;
      if (s === NO_SLOT || ids[s] === id) return i;
    }
  }

  /** The slot in bucket `i` of a probe (NO_SLOT: the id is not in the index). */
  at(i: number): number {
    return this.buckets[i]!;
  }

  /** Puts `slot` in the empty bucket `i` that a probe just returned (no other change between). */
  fill(i: number, slot: number): void {
    this.buckets[i] = slot;
    this.size++;
  }

  /** Makes room for `n` entries without a rehash. */
  reserve(n: number): void {
    let want = Math.max(1024, this.buckets.length);
    while (n * 2 > want) want *= 2;
    if (want > this.buckets.length) this.rehash(want);
  }

  /** Removes `id` (read before the slot's id column is cleared). */
  delete(id: number): boolean {
    if (this.size === 0) return false;
    const b = this.buckets;
    const ids = this.table.id;
    const mask = this.mask;
    let i = IdIndex.hash(id) & mask;
    for (; ; i = (i + 1) & mask) {
      const s = b[i]!;
      if (s === NO_SLOT) return false;
      if (ids[s] === id) break;
    }
    // Backward shift: move later entries of the probe run into the hole where they belong.
    let hole = i;
    for (let j = (i + 1) & mask; ; j = (j + 1) & mask) {
      const s = b[j]!;
      if (s === NO_SLOT) break;
      const home = IdIndex.hash(ids[s]!) & mask;
      // Entry at j may fill the hole unless its home lies cyclically in (hole, j].
      if ((j > hole && (home <= hole || home > j)) || (j < hole && home <= hole && home > j)) {
        b[hole] = s;
        hole = j;
      }
    }
    b[hole] = NO_SLOT;
    this.size--;
    return true;
  }

  private rehash(n: number): void {
    const old = this.buckets;
    this.buckets = new Int32Array(n).fill(NO_SLOT);
    this.mask = n - 1;
    const ids = this.table.id;
    for (const s of old) {
      if (s === NO_SLOT) continue;
      let i = IdIndex.hash(ids[s]!) & this.mask;
      while (this.buckets[i] !== NO_SLOT) i = (i + 1) & this.mask;
      this.buckets[i] = s;
    }
  }

  *entries(): IterableIterator<[number, number]> {
    const t = this.table;
    for (let s = 0; s < t.rows; s++) {
      const id = t.id[s]!;
      if (id >= 0) yield [id, s];
    }
  }

  [Symbol.iterator](): IterableIterator<[number, number]> {
    return this.entries();
  }

  *keys(): IterableIterator<number> {
    for (const [id] of this.entries()) yield id;
  }

  *values(): IterableIterator<number> {
    for (const [, s] of this.entries()) yield s;
  }

  bytes(): number {
    return this.buckets.length * 4;
  }
}

/** One row per message: its data location, reference count and pieces. */
export class MessageTable {
  cap = 0;
  id = new Float64Array(0);
  arrival = new Float64Array(0);
  dataLane = new Uint16Array(0);
  dataSeq = new Uint32Array(0);
  dataOff = new Uint32Array(0);
  dataLen = new Uint32Array(0);
  refs = new Uint16Array(0);
  head = new Int32Array(0);
  nextPieceNo = new Uint16Array(0);
  readonly byId = new IdIndex(this);
  private free: number[] = [];
  private top = 0;
  count = 0;

  /** Rows ever used (live or free): iteration bound for IdIndex. */
  get rows(): number {
    return this.top;
  }

  alloc(id: number, arrival: number): number {
    const s = this.take(id, arrival);
    this.byId.set(id, s);
    return s;
  }

  /** The row of message `id`, a new one (with `arrival`) if it has none: one probe of the index. */
  slotFor(id: number, arrival: number): number {
    const i = this.byId.probe(id);
    const found = this.byId.at(i);
    if (found !== NO_SLOT) return found;
    const s = this.take(id, arrival);
    this.byId.fill(i, s);
    return s;
  }

  /** Room for `n` rows (and their index entries) without growing. */
  reserve(n: number): void {
    if (n > this.cap) this.resize(n);
    this.byId.reserve(n);
  }

  /** A fresh row for `id`, not yet in the index. */
  private take(id: number, arrival: number): number {
    let s = this.free.pop();
    if (s === undefined) {
      if (this.top === this.cap) this.resize(Math.max(1024, Math.ceil(this.cap * 1.5)));
      s = this.top++;
    }
    this.id[s] = id;
    this.arrival[s] = arrival;
    this.dataSeq[s] = UNPLACED;
    this.dataLane[s] = 0;
    this.dataOff[s] = 0;
    this.dataLen[s] = 0;
    this.refs[s] = 0;
    this.head[s] = NO_SLOT;
    this.nextPieceNo[s] = 0;
    this.count++;
    return s;
  }

  release(s: number): void {
    this.byId.delete(this.id[s]!);
    this.id[s] = -1;
    this.head[s] = NO_SLOT;
    this.free.push(s);
    this.count--;
  }

  private resize(n: number): void {
    this.id = grow(this.id, n);
    this.arrival = grow(this.arrival, n);
    this.dataLane = grow(this.dataLane, n);
    this.dataSeq = grow(this.dataSeq, n);
    this.dataOff = grow(this.dataOff, n);
    this.dataLen = grow(this.dataLen, n);
    this.refs = grow(this.refs, n);
    this.head = grow(this.head, n);
    this.nextPieceNo = grow(this.nextPieceNo, n);
    this.cap = n;
  }

  bytes(): number {
    return this.cap * (8 + 8 + 2 + 4 + 4 + 4 + 2 + 4 + 2) + this.byId.bytes();
  }
}

/** A piece facet not known yet (a recovered envelope not read since); see state/facets.ts. */
export const FACET_UNKNOWN = -1;
/** The piece has several recipients: their domains are in Facets.multi. */
export const FACET_MULTI = -2;

export const F_LIVE = 1;
export const F_INFLIGHT = 2;
/**
 * A delay warning is pending for the piece (wanted, not sent): from its envelope's flag
 * (records.ts ENV_WARN_PENDING), or for an older version's envelope without one, from recovery's
 * byte test (may be wrong); cleared in memory when its deadline finds none due after all.
 */
export const F_WARN_PENDING = 4;

/** One row per envelope piece (a message has one piece unless split). */
export class PieceTable {
  cap = 0;
  msg = new Int32Array(0);
  piece = new Uint16Array(0);
  version = new Uint32Array(0);
  lane = new Uint16Array(0);
  seq = new Uint32Array(0);
  off = new Uint32Array(0);
  len = new Uint32Array(0);
  due = new Float64Array(0);
  flags = new Uint8Array(0);
  gen = new Uint32Array(0);
  next = new Int32Array(0);
  /** Batch that made the current envelope durable (0: recovered). */
  batch = new Uint32Array(0);
  /**
   * Facets of the current envelope for inspection (state/facets.ts): the interned domain of its
   * only recipient (or FACET_MULTI, or FACET_UNKNOWN until read) and its interned sender.
   */
  dom = new Int32Array(0);
  sender = new Int32Array(0);
  private free: number[] = [];
  private top = 0;
  count = 0;

  alloc(): number {
    let s = this.free.pop();
    if (s === undefined) {
      if (this.top === this.cap) this.resize(Math.max(1024, Math.ceil(this.cap * 1.5)));
      s = this.top++;
    }
    this.gen[s] = (this.gen[s]! + 1) >>> 0;
    this.flags[s] = 0;
    this.seq[s] = UNPLACED;
    this.next[s] = NO_SLOT;
    this.dom[s] = FACET_UNKNOWN;
    this.sender[s] = FACET_UNKNOWN;
    this.count++;
    return s;
  }

  /** Room for `n` rows without growing. */
  reserve(n: number): void {
    if (n > this.cap) this.resize(n);
  }

  release(s: number): void {
    this.flags[s] = 0;
    this.gen[s] = (this.gen[s]! + 1) >>> 0;
    this.free.push(s);
    this.count--;
  }

  private resize(n: number): void {
    this.msg = grow(this.msg, n);
    this.piece = grow(this.piece, n);
    this.version = grow(this.version, n);
    this.lane = grow(this.lane, n);
    this.seq = grow(this.seq, n);
    this.off = grow(this.off, n);
    this.len = grow(this.len, n);
    this.due = grow(this.due, n);
    this.flags = grow(this.flags, n);
    this.gen = grow(this.gen, n);
    this.next = grow(this.next, n);
    this.batch = grow(this.batch, n);
    this.dom = grow(this.dom, n);
    this.sender = grow(this.sender, n);
    this.cap = n;
  }

  bytes(): number {
    return this.cap * (4 + 2 + 4 + 2 + 4 + 4 + 4 + 8 + 1 + 4 + 4 + 4 + 4 + 4);
  }
}

/** A FIFO of (slot, gen) pairs in log order; stale entries are skipped by the reader. */
export class SlotFifo {
  private slots = new Int32Array(16);
  private gens = new Uint32Array(16);
  private headIdx = 0;
  private tailIdx = 0;

  get length(): number {
    return this.tailIdx - this.headIdx;
  }

  push(slot: number, gen: number): void {
    if (this.tailIdx === this.slots.length) {
      const live = this.tailIdx - this.headIdx;
      const n = live * 2 > this.slots.length ? this.slots.length * 2 : this.slots.length;
      const s = new Int32Array(n);
      const g = new Uint32Array(n);
      s.set(this.slots.subarray(this.headIdx, this.tailIdx));
      g.set(this.gens.subarray(this.headIdx, this.tailIdx));
      this.slots = s;
      this.gens = g;
      this.headIdx = 0;
      this.tailIdx = live;
    }
    this.slots[this.tailIdx] = slot;
    this.gens[this.tailIdx] = gen;
    this.tailIdx++;
  }

  /** Entry i from the head (0 = oldest). */
  slotAt(i: number): number {
    return this.slots[this.headIdx + i]!;
  }

  genAt(i: number): number {
    return this.gens[this.headIdx + i]!;
  }

  shift(): void {
    if (this.headIdx < this.tailIdx) this.headIdx++;
  }

  /** Keeps only the entries `keep` accepts, in order (O(n)). */
  compact(keep: (slot: number, gen: number) => boolean): void {
    let w = 0;
    for (let r = this.headIdx; r < this.tailIdx; r++) {
      const s = this.slots[r]!;
      const g = this.gens[r]!;
      if (!keep(s, g)) continue;
      this.slots[w] = s;
      this.gens[w] = g;
      w++;
    }
    this.headIdx = 0;
    this.tailIdx = w;
  }

  bytes(): number {
    return this.slots.length * 8;
  }
}
