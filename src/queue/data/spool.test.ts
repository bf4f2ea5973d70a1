// Streaming message data into the queue (spool.ts) and back out (Queue.dataStream): chunk records
// while the data arrives, the hand-over at accept, aborts, crashes mid-stream and right after,
// compaction of chunked data (with a power cut at every file operation of it), the memory budget.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { scanSegment } from '../log/reader.js';
import { parseSegmentName, segmentName } from '../log/segment.js';
import { Queue, type QueueOptions, internals } from '../queue.js';
import { decodeChunkHead, RT_CHUNK, RT_DATA } from '../record/records.js';
import type { DeliveryJob } from '../types.js';
import { MemoryBudget } from './budget.js';
import type { DataSpool } from './spool.js';
import { MemQueueFs } from '../../../test/support/memfs.js';
import { CrashFs, quiet, scripted } from '../../../test/support/queue.js';
import { ticks, waitFor } from '../../../test/support/wait.js';
import { FakeClock } from '../../../test/support/clock.js';

const CHUNK = 1000;

function open(fs: MemQueueFs | CrashFs, extra: Partial<QueueOptions> = {}): Promise<Queue> {
  return Queue.open({ dir: '/q', fs, clock: new FakeClock(), segmentSize: 8192, chunkSize: CHUNK, ...extra });
}

/** Deterministic message bytes of `size` octets. */
function bytes(size: number, seed = 1): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = 32 + ((i * 7 + seed) % 90);
  return b;
}

/** Writes `data` into a spool in pieces of `step`, waiting whenever it asks to. */
async function fill(spool: DataSpool, data: Buffer, step: number): Promise<void> {
  for (let at = 0; at < data.length; at += step) {
    if (!spool.write(data.subarray(at, at + step))) await spool.drained();
  }
}

async function readAll(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of it) parts.push(b);
  return Buffer.concat(parts);
}

/** Record types (and chunk heads) of every segment of a lane. */
type Rec = { seq: number; type: number; offset?: number; last?: boolean; len?: number };
function records(fs: MemQueueFs, lane: string): Rec[] {
  const out: Rec[] = [];
  for (const p of fs
    .paths()
    .filter((x) => x.startsWith(`/q/lanes/${lane}/`))
    .sort()) {
    const seq = parseSegmentName(p.slice(p.lastIndexOf('/') + 1))!;
    scanSegment(fs.peek(p), true, (r) => {
      if (r.type === RT_CHUNK) {
        const h = decodeChunkHead(r.body);
        out.push({ seq, type: r.type, offset: h.offset, last: h.last, len: r.body.length - 17 });
      } else out.push({ seq, type: r.type });
    });
  }
  return out;
}

/** A deliverer that keeps what each job's data stream yields. */
function reading() {
  const got = new Map<number, Buffer>();
  const deliver = async (job: DeliveryJob) => {
    got.set(job.msgId, await readAll(job.stream()));
    await job.finish(job.pending.map((r) => ({ rcpt: r, status: 'delivered' as const })));
  };
  return { got, deliver };
}

const rcpt = [{ address: 'b@y.test' }];

describe('streamed message data', () => {
  test('a message larger than a chunk is written as chunk records while it arrives and delivered byte for byte', async () => {
    const fs = new MemQueueFs();
    const q = await open(fs);
    const data = bytes(20_500);
    const spool = q.spool(1e15);
    await fill(spool, data, 333);
    await spool.settled();
    // Before accept: the chunks are on disk already, no envelope anywhere.
    const before = records(fs, 'data').filter((r) => r.type === RT_CHUNK);
    assert.ok(before.length >= 10, `${before.length} chunks written while the data arrived`);
    assert.equal(records(fs, 'new').length, 0);
    assert.deepEqual(await readAll(spool.read()), data, 'read back before the envelope commits');
    const d = reading();
    q.setDeliverer(d.deliver);
    q.start();
    const r = await q.accept({ data: spool, sender: 'a@x.test', recipients: rcpt });
    const chunks = records(fs, 'data').filter((x) => x.type === RT_CHUNK);
    assert.equal(chunks.filter((c) => c.last).length, 1, 'one last chunk');
    assert.equal(chunks.at(-1)!.last, true);
    // Offsets back to back from 0: a complete copy.
    let next = 0;
    for (const c of chunks) {
      assert.equal(c.offset, next);
      next += c.len!;
    }
    assert.equal(next, data.length);
    await waitFor(() => d.got.has(r.msgId), 'the message delivered');
    await quiet(q);
    assert.deepEqual(d.got.get(r.msgId), data);
    assert.equal(q.budget.used, 0, 'no message bytes left in memory');
  });

  test('a message that ends before its first chunk is written whole next to its envelope, as before', async () => {
    const fs = new MemQueueFs();
    const q = await open(fs);
    const spool = q.spool(2e15);
    await fill(spool, bytes(900), 100);
    assert.equal(spool.chunked, false);
    await q.accept({ data: spool, sender: 'a@x.test', recipients: rcpt });
    assert.deepEqual(
      records(fs, 'new').map((r) => r.type),
      [RT_DATA, 3],
    );
    assert.equal(records(fs, 'data').length, 0);
  });

  test('a message streamed in chunks survives a crash right after its 250 and is delivered intact', async () => {
    const fs = new MemQueueFs();
    const q = await open(fs);
    const data = bytes(30_000, 3);
    const spool = q.spool(3e15);
    await fill(spool, data, 4096);
    const r = await q.accept({ data: spool, sender: 'a@x.test', recipients: rcpt });
    fs.crash();
    const q2 = await open(fs);
    assert.equal(q2.recovery!.liveMessages, 1);
    assert.equal(q2.recovery!.missingData.length, 0);
    const d = reading();
    q2.setDeliverer(d.deliver);
    q2.start();
    await waitFor(() => d.got.has(r.msgId), 'the recovered message delivered');
    assert.deepEqual(d.got.get(r.msgId), data);
  });

  test('chunks of a message whose transaction is cut off are orphan data: a crash leaves them for recovery to reclaim', async () => {
    const fs = new MemQueueFs();
    const q = await open(fs);
    const spool = q.spool(4e15);
    await fill(spool, bytes(25_000), 1500);
    await spool.settled();
    assert.ok(records(fs, 'data').length > 10);
    fs.crash(); // SIGKILL or power cut mid-stream: no envelope was ever written
    const q2 = await open(fs);
    assert.equal(q2.recovery!.orphanData, 1);
    assert.equal(q2.recovery!.liveMessages, 0);
    q2.start();
    // Garbage from the start: every data segment but the current one goes.
    await q2.accept({ data: [bytes(10)], sender: '', recipients: rcpt });
    await quiet(q2);
    const left = fs.paths().filter((p) => p.startsWith('/q/lanes/data/'));
    const cur = internals(q2).writer.currentSeq('data');
    assert.deepEqual(
      left.filter((p) => !p.endsWith(segmentName(cur)) && !p.endsWith(segmentName(cur + 1))),
      [],
      `orphan chunk segments reclaimed (left: ${left.join(', ')})`,
    );
  });

  test('an aborted spool releases its chunks at once: their segments are reclaimed without a restart', async () => {
    const fs = new MemQueueFs();
    const q = await open(fs);
    q.start();
    const spool = q.spool(5e15);
    await fill(spool, bytes(40_000), 2000); // spans several 8 KiB data segments
    await spool.settled();
    const segs = () => fs.paths().filter((p) => p.startsWith('/q/lanes/data/')).length;
    assert.ok(segs() >= 4);
    spool.abort();
    assert.equal(q.budget.used, 0);
    // Reclaiming runs after a durable batch.
    await q.accept({ data: [bytes(10)], sender: '', recipients: rcpt });
    await quiet(q);
    assert.ok(segs() <= 2, `${segs()} data segments left`);
    await assert.rejects(q.accept({ data: spool, sender: '', recipients: rcpt }), /discarded/);
  });

  test('an envelope durable without its last chunk (crash between the syncs) is ended at recovery, unacknowledged', async () => {
    const mem = new MemQueueFs();
    const fs = new CrashFs(mem);
    const q = await open(fs);
    const spool = q.spool(6e15);
    await fill(spool, bytes(9_000), 1000);
    await spool.settled();
    // From now on the data lane's syncs never complete: the accept batch can only become durable
    // in the `new` lane (its envelope), never in `data` (its last chunk).
    fs.stallSync = (p) => p.includes('/lanes/data/');
    let acked = false;
    void q.accept({ data: spool, sender: 'a@x.test', recipients: rcpt }).then(() => (acked = true));
    // The batch is as durable as it gets: the data lane's sync hangs, every other file is synced.
    await waitFor(
      () => fs.stalled > 0 && mem.unsynced().every((p) => p.includes('/lanes/data/')),
      'the data sync stalled, the envelope synced',
    );
    await ticks(10);
    assert.equal(acked, false, 'no 250 without the last chunk on disk');
    fs.crash();
    const q2 = await open(mem);
    assert.equal(q2.recovery!.liveMessages, 0);
    assert.equal(q2.recovery!.missingData.length, 1);
  });

  test('compaction copies chunked data and frees the old segments; a power cut at any step of it loses nothing', async () => {
    // The reference run: count the file operations compaction makes.
    const build = async (fs: CrashFs) => {
      const q = await open(fs);
      const keep = q.spool(7e15);
      const data = bytes(12_000, 7);
      const others: DataSpool[] = [];
      // Interleave the kept message with others that are then aborted, so its data segments
      // become sparse.
      for (let i = 0; i < 12; i++) {
        keep.write(data.subarray(i * 1000, (i + 1) * 1000));
        const o = q.spool(7e15 + 1 + i);
        o.write(bytes(6000, i));
        others.push(o);
        await keep.settled();
        await o.settled();
      }
      await q.accept({
        data: keep,
        sender: 'a@x.test',
        recipients: [{ address: 'b@h.test' }],
        destinations: [{ kind: 'held', domain: 'h.test' }],
      });
      for (const o of others) o.abort();
      await q.accept({ data: [bytes(10)], sender: '', recipients: rcpt }); // a durable batch: reclaim
      await quiet(q);
      return { q, data };
    };
    const ref = new CrashFs();
    const { q, data } = await build(ref);
    const before = ref.ops;
    const moved = await q.compactData(0);
    assert.ok(moved >= 1, 'the kept message was copied');
    await quiet(q);
    const steps = ref.ops - before;
    assert.ok(steps > 4, `${steps} file operations`);
    const check = async (mem: MemQueueFs) => {
      const q2 = await open(mem);
      assert.equal(q2.heldCount('h.test'), 1, 'the held message survives');
      assert.equal(q2.recovery!.corruptions.length, 0);
      const d = reading();
      q2.setDeliverer(d.deliver);
      q2.start();
      await q2.flushHeld('h.test');
      assert.deepEqual(d.got.get(7e15), data);
    };
    await check(ref.mem);
    for (let n = 0; n < steps; n++) {
      const fs = new CrashFs();
      const b = await build(fs);
      fs.crashAfter(n);
      let ended = false;
      void b.q
        .compactData(0)
        .then(() => quiet(b.q, undefined, 'the compaction done', { unless: () => fs.dead }))
        .catch(() => {})
        .finally(() => {
          ended = true;
        });
      await waitFor(() => fs.dead || ended, `a crash after ${n} operations or the compaction done`);
      fs.crash();
      await check(fs.mem);
    }
  });

  test('many tiny writes are coalesced: a BDAT-like stream of 1-byte pieces arrives intact', async () => {
    const fs = new MemQueueFs();
    const q = await open(fs);
    const data = bytes(5000, 9);
    const spool = q.spool(8e15);
    await fill(spool, data, 1);
    const d = reading();
    q.setDeliverer(d.deliver);
    q.start();
    const r = await q.accept({ data: spool, sender: 'a@x.test', recipients: rcpt });
    await waitFor(() => d.got.has(r.msgId), 'the message delivered');
    assert.deepEqual(d.got.get(r.msgId), data);
  });

  test('the memory budget: exceeded, the spools holding bytes write them out (smaller chunks) and it drains', async () => {
    const fs = new MemQueueFs();
    const budget = new MemoryBudget(100 * 1024);
    const q = await open(fs, { budget, chunkSize: 1024 * 1024 });
    const a = q.spool(9e15);
    a.write(bytes(90 * 1024)); // below a chunk: kept in memory
    assert.equal(a.chunked, false);
    assert.equal(budget.over, false);
    const b = q.spool(9e15 + 1);
    b.write(bytes(20 * 1024));
    assert.equal(budget.over, true, 'new transactions would be refused now');
    // Going over makes the spool holding 64 KiB or more write it out.
    await a.settled();
    assert.equal(a.chunked, true);
    assert.equal(budget.used, 20 * 1024);
    assert.equal(budget.over, false);
    a.abort();
    b.abort();
    assert.equal(budget.used, 0);
  });

  test('just-accepted data is kept for the first attempt only within half the budget', async () => {
    const fs = new MemQueueFs();
    const budget = new MemoryBudget(10_000);
    const q = await open(fs, { budget });
    await q.accept({ data: [bytes(3000)], sender: 'a@x.test', recipients: rcpt });
    assert.equal(budget.used, 3000);
    await q.accept({ data: [bytes(3000)], sender: 'a@x.test', recipients: rcpt });
    assert.equal(budget.used, 3000, 'the second would pass half the budget: read from disk instead');
    const d = reading();
    q.setDeliverer(d.deliver);
    q.start();
    await waitFor(() => d.got.size === 2, 'both messages delivered');
    await quiet(q);
    assert.equal(budget.used, 0);
  });
});

describe('dataStream', () => {
  test('a whole record larger than a piece is read back in pieces', async () => {
    const fs = new MemQueueFs();
    const q = await open(fs);
    const data = bytes(700_000, 5);
    const r = await q.accept({ data: [data], sender: 'a@x.test', recipients: rcpt });
    fs.crash();
    const q2 = await open(fs);
    const m = internals(q2).core.msgs.byId.get(r.msgId)!;
    const sizes: number[] = [];
    const parts: Buffer[] = [];
    for await (const b of q2.dataStream(m, r.msgId)) {
      sizes.push(b.length);
      parts.push(b);
    }
    assert.deepEqual(Buffer.concat(parts), data);
    assert.ok(Math.max(...sizes) <= 256 * 1024, `pieces ${sizes.join(',')}`);
  });

  test('the stream ends with an error when the message is deleted while it is read', async () => {
    const fs = new MemQueueFs();
    const q = await open(fs);
    const spool = q.spool(1.1e15);
    await fill(spool, bytes(5000), 500);
    const r = await q.accept({ data: spool, sender: 'a@x.test', recipients: rcpt });
    const m = internals(q).core.msgs.byId.get(r.msgId)!;
    const it = q.dataStream(m, r.msgId, 100)[Symbol.asyncIterator]();
    await it.next();
    await q.remove(r.msgId);
    await assert.rejects(it.next(), /no longer queued/);
  });
});

test('scripted deliverers still see streamed messages as ordinary jobs', async () => {
  const fs = new MemQueueFs();
  const q = await open(fs);
  const d = scripted(() => 'delivered');
  q.setDeliverer(d.deliver);
  q.start();
  const spool = q.spool(1.2e15);
  await fill(spool, bytes(5000), 700);
  await q.accept({ data: spool, sender: 'a@x.test', recipients: rcpt });
  await waitFor(() => internals(q).core.msgs.count === 0, 'the message delivered');
  await quiet(q);
  assert.equal(d.seen.length, 1);
  assert.equal(internals(q).core.msgs.count, 0);
});
