// The main thread's spools for the messages the SMTP session thread streams (thread-sink.ts):
// the first chunk of a message opens a queue spool for it, later chunks append to it, the
// thread's accept queues it with its tail, a drop (or the thread's death) aborts it, and the
// stages' read-back reads it from the start, a piece per request.
// Invariants: a chunk is answered only once it is written to the queue's log (so the thread holds
// at most the chunk it is filling and one crossing, and its back-pressure reaches the client);
// its buffer is then given back to be filled again, unless the spool still holds it. A spool
// that failed is aborted and forgotten at once.
import type { DataSpool, Queues } from '../queue/index.js';

export class ThreadSpools {
  private readonly open = new Map<number, DataSpool>();
  private readonly readers = new Map<number, { msgId: number; gen: AsyncGenerator<Buffer> }>();

  constructor(private readonly queues: Pick<Queues, 'spool'>) {}

  /**
   * Appends a chunk to the message's spool (opening it); resolves once it is written, with the
   * chunk to be reused, or undefined when the spool keeps it (not yet written out).
   */
  async chunk(msgId: number, data: Uint8Array): Promise<Uint8Array | undefined> {
    let s = this.open.get(msgId);
    if (!s) {
      s = this.queues.spool(msgId); // throws the queue's refusal
      this.open.set(msgId, s);
    }
    s.write(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    await s.drained();
    await s.settled();
    if (s.failed) {
      this.drop(msgId);
      throw s.failed;
    }
    return s.unflushed === 0 ? data : undefined;
  }

  /** The next piece of the message's spool for `reader` (read from the start); undefined at the end. */
  async read(msgId: number, reader: number): Promise<Uint8Array | undefined> {
    let r = this.readers.get(reader);
    if (!r) {
      const s = this.open.get(msgId);
      if (!s) throw new Error(`no spool for message ${msgId}`);
      r = { msgId, gen: s.read() };
      this.readers.set(reader, r);
    }
    try {
      const next = await r.gen.next();
      if (next.done) this.readers.delete(reader);
      return next.done ? undefined : next.value;
    } catch (e) {
      this.readers.delete(reader);
      throw e;
    }
  }

  /** Hands the spool over for Queue.accept, its tail written; undefined when it is gone. */
  take(msgId: number, tail: Buffer): DataSpool | undefined {
    const s = this.open.get(msgId);
    this.forget(msgId);
    if (s && tail.length > 0) s.write(tail);
    return s;
  }

  drop(msgId: number): void {
    this.open.get(msgId)?.abort();
    this.forget(msgId);
  }

  private forget(msgId: number): void {
    this.open.delete(msgId);
    for (const [k, r] of this.readers) if (r.msgId === msgId) this.readers.delete(k);
  }

  /** The thread is gone: every message it was streaming is dropped. */
  dropAll(): void {
    for (const s of this.open.values()) s.abort();
    this.open.clear();
    this.readers.clear();
  }
}
