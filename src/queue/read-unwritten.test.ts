// Reads of records whose batch is sealed but not yet written (read.ts): a record's position is
// assigned when its batch is sealed, before the batch's I/O, so a read that went by the position
// alone found a short file. Here the write of the data lane is held on the disk while a copy
// made by compaction (the envelope unchanged, long durable) is read.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock } from '../../test/support/clock.js';
import { MemQueueFs } from '../../test/support/memfs.js';
import { scripted } from '../../test/support/queue.js';
import { waitFor } from '../../test/support/wait.js';
import type { QueueFile } from './log/fs.js';
import { internals, Queue } from './queue.js';

/** A message of about 1 KiB: four fill a segment, so forty span several. */
const big = (n: number) => Buffer.from(`Subject: test ${n}\r\n\r\n${`body ${n} `.repeat(100)}\r\n`);

test('data moved by compaction is read once its batch is written, not from the bare position', async () => {
  const fs = new MemQueueFs();
  const clock = new FakeClock();
  let hold: Promise<void> | undefined;
  let writing = false;
  const wrap = (f: QueueFile, path: string): QueueFile =>
    path.includes('/lanes/data/')
      ? {
          ...f,
          write: async (bufs, pos) => {
            if (hold) {
              writing = true;
              await hold;
            }
            return f.write(bufs, pos);
          },
          datasync: () => f.datasync(),
          close: () => f.close(),
        }
      : f;
  const create = fs.create.bind(fs);
  const openWrite = fs.openWrite.bind(fs);
  fs.create = async (p) => wrap(await create(p), p);
  fs.openWrite = async (p) => wrap(await openWrite(p), p);
  const q = await Queue.open({ dir: '/q', fs, clock, segmentSize: 4096, spareSegments: 0 });
  // Every message deferred: its data moves to the data lane with it.
  const d = scripted(() => 'deferred');
  q.setDeliverer(d.deliver);
  q.start();
  const ids: string[] = [];
  for (let i = 0; i < 40; i++)
    ids.push(
      (await q.accept({ data: [big(i)], sender: 'a@x.test', recipients: [{ address: `b${i}@y.test` }] })).id,
    );
  const core = internals(q).core;
  await waitFor(() => d.seen.length === 40, 'the 40 first attempts');
  await waitFor(() => core.lanes.some((l) => l.kind === 'retry' && l.live === 40), 'all 40 deferred');
  // Most of them end (deleted): the first data segment becomes sparse, and compaction copies
  // what is left in it (the first message).
  for (const id of ids.slice(1, 36)) await q.remove(Number.parseInt(id, 16));
  let release!: () => void;
  hold = new Promise<void>((r) => {
    release = r;
  });
  const compacted = q.compactData(1);
  await waitFor(() => writing, 'the copy being written');
  const last = Number.parseInt(ids[0]!, 16);
  const mslot = core.msgs.byId.get(last)!;
  const read = q.readData(mslot, last);
  release();
  hold = undefined;
  assert.ok((await compacted) > 0, 'compaction copied data');
  assert.deepEqual(await read, big(0));
  await q.stop();
});
