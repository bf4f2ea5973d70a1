// A message's data kept in memory, as the list of Buffers it arrived in (no copy): the
// MessageSink the server uses when no openData hook streams data elsewhere, and the way other
// producers (local injection, tests) hand a message over whole. Bounded only by the server's
// maxMessageSize: the daemon streams to the queue instead (DataSpool).
import type { MessageSink } from './hooks.js';

export class BufferedData implements MessageSink {
  size = 0;
  aborted = false;

  constructor(readonly chunks: Buffer[] = []) {
    for (const c of chunks) this.size += c.length;
  }

  write(chunk: Buffer): boolean {
    if (this.aborted) return true;
    this.chunks.push(chunk);
    this.size += chunk.length;
    return true;
  }

  drained(): Promise<void> {
    return Promise.resolve();
  }

  async *read(): AsyncGenerator<Buffer> {
    for (const c of this.chunks.slice()) yield c;
  }

  abort(): void {
    this.aborted = true;
    this.chunks.length = 0;
  }
}

/** Every chunk of `data` in memory: its own list when it is BufferedData, else read back. */
export async function collectData(data: { read(): AsyncIterable<Buffer> }): Promise<Buffer[]> {
  if (data instanceof BufferedData) return data.chunks;
  const out: Buffer[] = [];
  for await (const c of data.read()) out.push(c);
  return out;
}

/** The chunks of data kept in memory (tests, and hooks that know the server buffered it). */
export function chunksOf(data: unknown): Buffer[] {
  if (!(data instanceof BufferedData)) throw new TypeError('message data is not held in memory');
  return data.chunks;
}
