// Recovery's CRC checks in a second thread. Recovery reads every segment whole and checks the
// CRC of each of its frames; with a million small messages that is two million native calls on
// the thread that also rebuilds the index. A FrameChecker hands each segment's bytes to a
// worker thread (frame-check-thread.ts: the memory is transferred, not copied, and transferred
// back), which finds how far the frames are whole with matching CRCs; recovery's scan then skips
// the CRC of those frames (scanSegment's checkedTo) and checks everything else as before, so
// torn tails and corruption are found by the same code, in the same thread, either way.
// Invariants: the bytes handed back are the bytes handed over; a buffer that does not own its
// memory whole (a slice of a pool) is not transferred and comes back unchecked (checkedTo 0);
// checks are answered in the order asked.
// Fails: never. If the worker cannot start or dies, every check still waiting, and every later
// one, is answered with the file read again (`reread`) and checkedTo 0 — the scan checks the
// CRCs itself — and the failure is told once through `onFailure`.
import { Worker } from 'node:worker_threads';
import type { CheckAnswer, CheckRequest } from './frame-check-thread.js';

export interface Checked {
  buf: Buffer;
  /** Frames ending at or before this offset have matching CRCs. */
  checkedTo: number;
}

interface Waiting {
  offset: number;
  length: number;
  reread: () => Promise<Buffer>;
  resolve: (c: Checked) => void;
  reject: (e: unknown) => void;
}

export class FrameChecker {
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly waiting = new Map<number, Waiting>();
  private broken = false;

  constructor(private readonly onFailure: (e: unknown) => void = () => {}) {
    try {
      this.worker = new Worker(new URL('./frame-check-thread.js', import.meta.url));
    } catch (e) {
      this.fail(e);
      return;
    }
    this.worker.unref(); // never what keeps a process alive
    this.worker.on('message', (a: CheckAnswer) => {
      const w = this.waiting.get(a.id);
      if (w === undefined) return;
      this.waiting.delete(a.id);
      w.resolve({ buf: Buffer.from(a.memory, w.offset, w.length), checkedTo: a.checkedTo });
    });
    this.worker.on('error', (e) => this.fail(e));
    this.worker.on('exit', (code) => {
      if (this.worker !== undefined) this.fail(new Error(`frame check thread exited (${code})`));
    });
  }

  /** `buf`'s bytes with how far their CRCs are checked; `reread` reads them again if needed. */
  check(buf: Buffer, reread: () => Promise<Buffer>): Promise<Checked> {
    const owned = buf.byteOffset === 0 && buf.buffer.byteLength === buf.length && buf.length > 0;
    if (this.broken || this.worker === undefined || !owned) return Promise.resolve({ buf, checkedTo: 0 });
    const id = this.nextId++;
    const memory = buf.buffer as ArrayBuffer;
    return new Promise<Checked>((resolve, reject) => {
      this.waiting.set(id, { offset: 0, length: buf.length, reread, resolve, reject });
      const req: CheckRequest = { id, memory, offset: 0, length: buf.length };
      this.worker!.postMessage(req, [memory]);
    });
  }

  /** Ends the worker; checks still waiting are answered by reading their files again. */
  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    this.broken = true;
    this.answerWaitingByRereading();
    if (w !== undefined) await w.terminate();
  }

  private fail(e: unknown): void {
    if (this.broken) return;
    this.broken = true;
    this.worker = undefined;
    this.onFailure(e);
    this.answerWaitingByRereading();
  }

  private answerWaitingByRereading(): void {
    for (const w of this.waiting.values())
      w.reread().then((buf) => w.resolve({ buf, checkedTo: 0 }), w.reject);
    this.waiting.clear();
  }
}
