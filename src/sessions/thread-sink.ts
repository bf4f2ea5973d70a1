// A message's data as the SMTP session thread receives it (thread-main.ts). Most mail ends
// within its first megabyte and crosses to the main thread whole, in one transferred buffer, at
// the end of data. A bigger message streams: each megabyte (64 KiB while the shared memory
// budget is exceeded) crosses as soon as it is complete, into a queue spool the main thread
// opened for it (thread-spools.ts), so a 50 MiB message costs the thread one chunk of memory, as
// on the main thread (queue/data/spool.ts).
// Invariants: chunks cross in order, one at a time, and a chunk's buffer comes back once the main
// thread wrote it to the log, to be filled again; bytes held here count in the shared budget
// until they cross. An abort after a chunk crossed tells the main thread to drop its spool.
// Back-pressure: write() returns false while a chunk is crossing and another is complete;
// drained() resolves when writing may go on (it never rejects).
// Fails: a chunk the main thread could not spool (a refusing queue) is kept in `failed`; later
// bytes are dropped and take() rejects with it, so the client gets the queue's 451/452.
import { CHUNK_SIZE, MIN_CHUNK } from '../queue/index.js';
import type { MessageSink } from '../smtp/server/hooks.js';

/** The main thread's side of a streamed message, as the thread reaches it. */
export interface SpoolDoor {
  readonly budget: { readonly over: boolean; add(n: number): void; sub(n: number): void };
  /**
   * Appends to the message's spool (opened by the first chunk); resolves once it is written,
   * with the chunk's buffer given back for reuse (or undefined).
   */
  chunk(msgId: number, data: Uint8Array): Promise<Uint8Array | undefined>;
  /** The next piece of what crossed so far, read back from the spool; undefined at its end. */
  read(msgId: number, reader: number): Promise<Uint8Array | undefined>;
  /** The message will not be accepted: its spool is dropped. */
  drop(msgId: number): void;
}

let readers = 0;

/** Chunk buffers given back by the main thread, filled again (no garbage per megabyte). */
const pool: ArrayBuffer[] = [];
const POOLED = CHUNK_SIZE + 256 * 1024;
const POOL_MAX = 8;

/** The chunks in one buffer of its own (not a slice of Node's pool), so it can be transferred. */
function concat(chunks: readonly Buffer[], n: number, pooled: boolean): Uint8Array {
  const ab = pooled && n <= POOLED ? (pool.pop() ?? new ArrayBuffer(POOLED)) : new ArrayBuffer(n);
  const out = Buffer.from(ab, 0, n);
  let at = 0;
  for (const c of chunks) at += c.copy(out, at);
  return out;
}

/** Whole data (local injection, stages) in one buffer of its own, to be transferred. */
export function oneBuffer(chunks: readonly Buffer[]): Uint8Array {
  return concat(
    chunks,
    chunks.reduce((s, c) => s + c.length, 0),
    false,
  );
}

function giveBack(b: Uint8Array | undefined): void {
  if (b && b.buffer.byteLength === POOLED && pool.length < POOL_MAX) pool.push(b.buffer as ArrayBuffer);
}

export class ThreadSink implements MessageSink {
  size = 0;
  failed: Error | undefined;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private open = true;
  /** Whether a chunk crossed: the rest joins a spool on the main thread. */
  private crossed = false;
  private sending: Promise<void> | undefined;
  private waiters: Array<() => void> = [];

  constructor(
    private readonly door: SpoolDoor,
    readonly msgId: number,
    private readonly chunkSize = CHUNK_SIZE,
  ) {}

  write(chunk: Buffer): boolean {
    if (!this.open || this.failed || chunk.length === 0) return true;
    this.chunks.push(chunk);
    this.size += chunk.length;
    this.buffered += chunk.length;
    this.door.budget.add(chunk.length);
    this.maybeSend();
    return !this.full;
  }

  drained(): Promise<void> {
    if (!this.full) return Promise.resolve();
    return new Promise((r) => this.waiters.push(r));
  }

  private get full(): boolean {
    return this.sending !== undefined && this.buffered >= this.chunkSize;
  }

  private maybeSend(): void {
    if (this.sending || this.failed || !this.open) return;
    if (this.buffered < (this.door.budget.over ? MIN_CHUNK : this.chunkSize)) return;
    const data = concat(this.chunks, this.buffered, true);
    this.door.budget.sub(this.buffered);
    this.chunks = [];
    this.buffered = 0;
    this.crossed = true;
    this.sending = this.door
      .chunk(this.msgId, data)
      .then(giveBack)
      .catch((e: unknown) => {
        this.failed ??= e instanceof Error ? e : new Error(String(e));
      })
      .finally(() => {
        this.sending = undefined;
        this.maybeSend();
        if (!this.full) for (const w of this.waiters.splice(0)) w();
      });
  }

  private async settled(): Promise<void> {
    while (this.sending) await this.sending;
  }

  /** Everything written so far, from the start (for the stages: milters, DKIM signing). */
  async *read(): AsyncGenerator<Buffer> {
    await this.settled();
    if (this.failed) throw this.failed;
    if (this.crossed) {
      const reader = ++readers;
      for (;;) {
        const piece = await this.door.read(this.msgId, reader);
        if (piece === undefined) break;
        yield Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
      }
    }
    for (const c of this.chunks.slice()) yield c;
  }

  /**
   * Hands the data over for the queue: what is still here, in one buffer of its own, and
   * whether it is the tail of a spool on the main thread (`spooled`) or the whole message.
   */
  async take(): Promise<{ data: Uint8Array; spooled: boolean }> {
    this.open = false;
    await this.settled();
    if (this.failed) {
      this.release();
      throw this.failed;
    }
    const data = concat(this.chunks, this.buffered, false);
    this.door.budget.sub(this.buffered);
    this.chunks = [];
    this.buffered = 0;
    return { data, spooled: this.crossed };
  }

  abort(): void {
    const wasOpen = this.open;
    this.open = false;
    this.release();
    // A chunk still crossing is ordered before the drop on the same port.
    if (wasOpen && this.crossed) this.door.drop(this.msgId);
    for (const w of this.waiters.splice(0)) w();
  }

  private release(): void {
    this.door.budget.sub(this.buffered);
    this.chunks = [];
    this.buffered = 0;
  }
}
