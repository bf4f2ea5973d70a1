// Reading many small records (envelopes) with few reads: the wanted byte ranges are sorted by
// file and offset, and neighbours less than `gap` apart share one read of at most `max` bytes.
// Used where inspection needs the envelopes of many pieces at once (Queue.readEnvelopes):
// mostly sequential reads of the segments instead of one random read per piece.
// Fails: never rejects for a range it cannot read (a segment unlinked meanwhile: its pieces
// moved on): those records are simply not handed over; the caller looks at what is missing.
import type { QueueFs } from './fs.js';

export interface WantedRange {
  key: number;
  path: string;
  off: number;
  len: number;
}

export interface BatchReadOptions {
  /** Largest hole between two ranges read together (default 64 KiB). */
  gap?: number;
  /** Largest single read (default 4 MiB); a range longer than that is read alone. */
  max?: number;
}

/** Reads every wanted range; `got` receives each one's bytes (a view into a larger read). */
export async function readRanges(
  fs: QueueFs,
  wanted: WantedRange[],
  got: (key: number, bytes: Buffer) => void,
  o: BatchReadOptions = {},
): Promise<void> {
  const gap = o.gap ?? 64 * 1024;
  const max = o.max ?? 4 * 1024 * 1024;
  wanted.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : a.off - b.off));
  for (let i = 0; i < wanted.length; ) {
    const first = wanted[i]!;
    let end = first.off + first.len;
    let j = i + 1;
    while (j < wanted.length) {
      const w = wanted[j]!;
      if (w.path !== first.path || w.off - end > gap || w.off + w.len - first.off > max) break;
      end = Math.max(end, w.off + w.len);
      j++;
    }
    const buf = await fs.read(first.path, first.off, end - first.off).catch(() => undefined);
    for (let k = i; buf && k < j; k++) {
      const w = wanted[k]!;
      got(w.key, buf.subarray(w.off - first.off, w.off - first.off + w.len));
    }
    i = j;
  }
}
