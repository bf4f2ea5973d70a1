// Which segments of a lane count as the newest (laneSegments): the same answer whether the
// last segments are peeked at (their first bytes) or read whole, for the shapes a crash leaves
// behind — a record, a header alone, a torn header, a first record too large to peek at — and
// each file is read whole once, in log order, when peeking.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { encodeFrame } from '../record/frame.js';
import { encodeHeader, RT_DATA, RT_DONE, RT_HEADER } from '../record/records.js';
import { laneSegments, PEEK_BYTES } from './lane-scan.js';

const header = Buffer.concat(encodeFrame(RT_HEADER, [encodeHeader({ format: 1 } as never)]));
const done = Buffer.concat(encodeFrame(RT_DONE, [Buffer.alloc(15, 7)]));
const big = Buffer.concat(encodeFrame(RT_DATA, [Buffer.alloc(PEEK_BYTES + 100, 1)]));
const shapes: Record<string, Buffer> = {
  record: Buffer.concat([header, done]),
  big: Buffer.concat([header, big]),
  headerOnly: header,
  tornHeader: header.subarray(0, 5),
  tornRecord: Buffer.concat([header, done.subarray(0, 10)]),
};

async function newestFlags(files: Buffer[], peekToo: boolean): Promise<{ flags: boolean[]; reads: number[] }> {
  const reads: number[] = [];
  const read = async (seq: number): Promise<Buffer> => {
    reads.push(seq);
    return files[seq - 1]!;
  };
  const peek = async (seq: number): Promise<Buffer> => files[seq - 1]!.subarray(0, PEEK_BYTES);
  const flags: boolean[] = [];
  const seqs = files.map((_, i) => i + 1);
  for await (const s of laneSegments(seqs, read, peekToo ? peek : undefined)) flags.push(s.newest);
  return { flags, reads };
}

describe('newest segments of a lane', () => {
  for (const a of Object.keys(shapes))
    for (const b of Object.keys(shapes))
      test(`${a} then ${b} after a segment with a record`, async () => {
        const files = [shapes.record!, shapes[a]!, shapes[b]!];
        const whole = await newestFlags(files, false);
        const peeked = await newestFlags(files, true);
        assert.deepEqual(peeked.flags, whole.flags);
        if (b === 'record') {
          assert.deepEqual(peeked.flags, [false, false, true]);
          assert.deepEqual(peeked.reads, [1, 2, 3], 'read in log order, each once');
        }
      });
});
