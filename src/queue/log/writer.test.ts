// Group-commit writer failure modes, one test per mode: fdatasync error, write error, segment
// creation error, directory sync error (each poisons), plus the two-phase ordering, group
// commit cost, segment rollover and a tail closed by recovery.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { MtaError } from '../../errors.js';
import { RT_DONE } from '../record/records.js';
import { scanSegment } from './reader.js';
import type { QueueFile } from './fs.js';
import { GroupWriter } from './writer.js';
import { CrashFs } from '../../../test/support/queue.js';
import { MemQueueFs } from '../../../test/support/memfs.js';

/** A memory fs whose fdatasyncs can be held until released, to put two batches in flight. */
class HeldSyncFs extends MemQueueFs {
  holding = false;
  readonly held: Array<{ path: string; release: () => void }> = [];
  readonly log: string[] = [];
  private wrap(path: string, f: QueueFile): QueueFile {
    return {
      write: async (bufs, pos) => {
        this.log.push(`write ${path.split('/').at(-2)} ${bufs.length}`);
        await f.write(bufs, pos);
      },
      datasync: async () => {
        if (this.holding) await new Promise<void>((release) => this.held.push({ path, release }));
        this.log.push(`sync ${path.split('/').at(-2)}`);
        await f.datasync();
      },
      close: () => f.close(),
    };
  }
  override async create(path: string): Promise<QueueFile> {
    return this.wrap(path, await super.create(path));
  }
  override async openWrite(path: string): Promise<QueueFile> {
    return this.wrap(path, await super.openWrite(path));
  }
}

const until = async (cond: () => boolean, what: string): Promise<void> => {
  for (let i = 0; i < 2000 && !cond(); i++) await new Promise((r) => setImmediate(r));
  assert.ok(cond(), what);
};

function writer(fs: MemQueueFs | CrashFs, segmentSize = 64 * 1024) {
  return new GroupWriter({ fs, dir: '/q', segmentSize, sync: true, now: () => 0 });
}

const rec = (n: number) => [Buffer.alloc(15, n)];

function bodies(fs: MemQueueFs, path: string): number[] {
  const out: number[] = [];
  scanSegment(fs.peek(path), true, (r) => out.push(r.body[0]!));
  return out;
}

describe('two batches in flight', () => {
  test('records appended while a batch syncs are written and synced before it returns, and acknowledged after it', async () => {
    const fs = new HeldSyncFs();
    const w = writer(fs);
    w.append('new', RT_DONE, rec(0));
    await w.commit();
    fs.holding = true;
    const order: string[] = [];
    w.append('new', RT_DONE, rec(1));
    const first = w.commit().then(() => order.push('first'));
    await until(() => fs.held.length === 1, 'the first batch reaches its fdatasync');
    w.append('new', RT_DONE, rec(2));
    const second = w.commit().then(() => order.push('second'));
    await until(() => fs.held.length === 2, 'the second batch is written and syncing while the first syncs');
    // Release the newer sync first: its waiters must still wait for the older batch.
    fs.held[1]!.release();
    await until(() => fs.log.filter((l) => l === 'sync new').length >= 2, 'the second sync returned');
    assert.deepEqual(order, [], 'nothing acknowledged before the first batch is durable');
    fs.held[0]!.release();
    fs.holding = false;
    await Promise.all([first, second]);
    assert.deepEqual(order, ['first', 'second']);
    assert.deepEqual(bodies(fs, '/q/lanes/new/0000000001.seg'), [0, 1, 2]);
    assert.equal(w.durableBatch, w.stats.batches);
  });

  test('when the older batch fails, the newer one in flight is refused too and the cut covers both', async () => {
    const fs = new HeldSyncFs();
    const w = writer(fs);
    w.append('new', RT_DONE, rec(0));
    await w.commit();
    const start = fs.peek('/q/lanes/new/0000000001.seg').length;
    const durable = w.durableBatch;
    fs.holding = true;
    w.append('new', RT_DONE, rec(1));
    const first = w.commit();
    await until(() => fs.held.length === 1, 'the first batch syncs');
    w.append('new', RT_DONE, rec(2));
    const second = w.commit();
    await until(() => fs.held.length === 2, 'the second batch syncs');
    fs.injectFault('datasync', 'EIO', 0, '/lanes/new/');
    fs.holding = false;
    fs.held[0]!.release();
    fs.held[1]!.release();
    await assert.rejects(first, { code: 'QUEUE_POISONED' });
    await assert.rejects(second, { code: 'QUEUE_POISONED' });
    assert.equal(w.durableBatch, durable, 'neither batch counts as durable');
    assert.deepEqual(w.failedCut, [{ path: '/q/lanes/new/0000000001.seg', length: start }]);
  });

  test('a batch that starts a new segment waits until the batch before it is durable', async () => {
    const fs = new HeldSyncFs();
    const w = writer(fs, 200);
    w.append('new', RT_DONE, rec(0));
    await w.commit();
    fs.holding = true;
    w.append('new', RT_DONE, rec(1));
    const first = w.commit();
    await until(() => fs.held.length === 1, 'the first batch syncs');
    // Too big for what is left of segment 1: this one rolls over to segment 2.
    w.append('new', RT_DONE, [Buffer.alloc(150, 2)]);
    const second = w.commit();
    for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
    assert.equal(fs.held.length, 1, 'no second sync while the first is pending');
    assert.ok(
      !fs.log.some((l) => l.startsWith('write') && fs.log.indexOf(l) > fs.log.lastIndexOf('write new 2')),
      fs.log.join(', '),
    );
    fs.holding = false;
    fs.held[0]!.release();
    await Promise.all([first, second]);
    assert.deepEqual(bodies(fs, '/q/lanes/new/0000000002.seg'), [2]);
  });

  test('a batch with phase-2 records waits until the batch before it is durable', async () => {
    const fs = new HeldSyncFs();
    const w = writer(fs);
    w.append('a', RT_DONE, rec(0));
    await w.commit();
    fs.holding = true;
    w.append('a', RT_DONE, rec(1));
    const first = w.commit();
    await until(() => fs.held.length === 1, 'the first batch syncs');
    w.append('a', RT_DONE, rec(2), 2);
    const second = w.commit();
    for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
    assert.equal(fs.held.length, 1, 'the phased batch is not written meanwhile');
    fs.holding = false;
    fs.held[0]!.release();
    await Promise.all([first, second]);
    assert.deepEqual(bodies(fs, '/q/lanes/a/0000000001.seg'), [0, 1, 2]);
  });
});

describe('more than two batches in flight', () => {
  const deep = (fs: MemQueueFs, sealBytes: number) =>
    new GroupWriter({
      fs,
      dir: '/q',
      segmentSize: 1 << 20,
      sync: true,
      now: () => 0,
      sealBytes,
      maxInFlight: 3,
    });
  const big = (n: number) => [Buffer.alloc(1000, n)];

  test('a batch that has grown to sealBytes is written while two sync, and all are acknowledged in order', async () => {
    const fs = new HeldSyncFs();
    const w = deep(fs, 2000);
    w.append('new', RT_DONE, rec(0));
    await w.commit();
    fs.holding = true;
    const order: number[] = [];
    const commits: Promise<unknown>[] = [];
    for (const n of [1, 2]) {
      w.append('new', RT_DONE, big(n));
      commits.push(w.commit().then(() => order.push(n)));
      await until(() => fs.held.length === n, `batch ${n} reaches its fdatasync`);
    }
    // Two in flight: a small third batch waits and grows...
    w.append('new', RT_DONE, big(3));
    commits.push(w.commit().then(() => order.push(3)));
    for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
    assert.equal(fs.held.length, 2, 'below sealBytes the third batch is not sealed yet');
    // ... and is sealed once it reaches sealBytes, within the commit that made it so.
    w.append('new', RT_DONE, big(4));
    commits.push(w.commit().then(() => order.push(4)));
    await until(() => fs.held.length === 3, 'the grown batch syncs beside the other two');
    // A fourth would exceed maxInFlight: it waits however big it is.
    w.append('new', RT_DONE, big(5));
    w.append('new', RT_DONE, big(6));
    w.append('new', RT_DONE, big(7));
    commits.push(w.commit().then(() => order.push(5)));
    for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
    assert.equal(fs.held.length, 3, 'no more than maxInFlight batches at once');
    // Newest first: nothing is acknowledged until the oldest is durable.
    fs.held[2]!.release();
    fs.held[1]!.release();
    for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
    assert.deepEqual(order, []);
    fs.holding = false;
    fs.held[0]!.release();
    await Promise.all(commits);
    assert.deepEqual(order, [1, 2, 3, 4, 5]);
    assert.deepEqual(bodies(fs, '/q/lanes/new/0000000001.seg'), [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.equal(w.durableBatch, w.stats.batches);
  });

  test('when the oldest of three fails, the two after it are refused and the cut covers all three', async () => {
    const fs = new HeldSyncFs();
    const w = deep(fs, 1000);
    w.append('new', RT_DONE, rec(0));
    await w.commit();
    const start = fs.peek('/q/lanes/new/0000000001.seg').length;
    const durable = w.durableBatch;
    fs.holding = true;
    const commits: Promise<void>[] = [];
    for (const n of [1, 2, 3]) {
      w.append('new', RT_DONE, big(n));
      commits.push(w.commit());
      await until(() => fs.held.length === n, `batch ${n} syncs`);
    }
    fs.injectFault('datasync', 'EIO', 0, '/lanes/new/');
    fs.holding = false;
    for (const h of fs.held) h.release();
    for (const c of commits) await assert.rejects(c, { code: 'QUEUE_POISONED' });
    assert.equal(w.durableBatch, durable, 'none of the three counts as durable');
    assert.deepEqual(w.failedCut, [{ path: '/q/lanes/new/0000000001.seg', length: start }]);
  });
});

describe('group writer', () => {
  test('one batch costs one fdatasync per touched file, however many records it holds', async () => {
    const fs = new MemQueueFs();
    const w = writer(fs);
    w.append('new', RT_DONE, rec(0));
    w.append('data', RT_DONE, rec(0));
    await w.commit();
    const before = fs.stats.datasyncs;
    for (let i = 1; i <= 100; i++) w.append(i % 10 === 0 ? 'data' : 'new', RT_DONE, rec(i));
    await w.commit();
    assert.equal(fs.stats.datasyncs - before, 2);
    assert.equal(w.stats.lastBatchRecords, 100);
    assert.equal(bodies(fs, '/q/lanes/new/0000000001.seg').length, 91);
  });

  test('a file whose writes are durable (O_DSYNC) gets no separate fdatasync; one per batch otherwise', async () => {
    class DurableWritesFs extends MemQueueFs {
      calls = 0;
      private wrap(f: QueueFile, durable: boolean | undefined): QueueFile {
        return {
          writesDurable: durable === true,
          write: (bufs, pos) => f.write(bufs, pos),
          datasync: () => {
            this.calls++;
            return f.datasync();
          },
          close: () => f.close(),
        };
      }
      override async create(path: string, durable?: boolean): Promise<QueueFile> {
        return this.wrap(await super.create(path), durable);
      }
      override async openWrite(path: string, durable?: boolean): Promise<QueueFile> {
        return this.wrap(await super.openWrite(path), durable);
      }
    }
    for (const sync of [true, false]) {
      const fs = new DurableWritesFs();
      const w = new GroupWriter({ fs, dir: '/q', segmentSize: 1 << 20, sync, now: () => 0 });
      for (let i = 0; i < 3; i++) {
        w.append('new', RT_DONE, rec(i));
        await w.commit();
      }
      // With sync on the files are asked for durable writes and need no fdatasync call; with
      // sync off (the benchmark switch) they are opened plainly and nothing syncs either.
      assert.equal(fs.calls, 0, `sync=${sync}`);
      assert.equal(w.stats.datasyncs, sync ? 3 : 0, 'each durable batch still counts as one sync');
      assert.deepEqual(bodies(fs, '/q/lanes/new/0000000001.seg'), [0, 1, 2]);
    }
  });

  test('commits that arrive while a batch is being synced share the next batch', async () => {
    const fs = new MemQueueFs();
    const w = writer(fs);
    w.append('new', RT_DONE, rec(0));
    await w.commit();
    const batches = w.stats.batches;
    const commits: Promise<void>[] = [];
    for (let i = 1; i <= 100; i++) {
      w.append('new', RT_DONE, rec(i));
      commits.push(w.commit());
    }
    await Promise.all(commits);
    assert.ok(w.stats.batches - batches <= 2, `${w.stats.batches - batches} batches for 100 commits`);
  });

  test('a failed fdatasync poisons: the batch and every later commit reject, appends throw', async () => {
    const fs = new MemQueueFs();
    const w = writer(fs);
    w.append('new', RT_DONE, rec(1));
    await w.commit();
    fs.injectFault('datasync', 'EIO');
    w.append('new', RT_DONE, rec(2));
    const err = await w.commit().then(
      () => assert.fail('committed'),
      (e: MtaError) => e,
    );
    assert.equal(err.code, 'QUEUE_POISONED');
    assert.deepEqual(err.smtp, {
      code: 451,
      enhanced: '4.3.0',
      text: 'Local error in processing, try again later',
    });
    // The log gets what the operator must do; the client's reply text names no path.
    assert.match(err.message, /fdatasync\/fsync failed \(EIO\).*Check the disk.*then restart logmta/);
    fs.clearFaults();
    assert.throws(() => w.append('new', RT_DONE, rec(3)), { code: 'QUEUE_POISONED' });
    await assert.rejects(w.commit(), { code: 'QUEUE_POISONED' });
    assert.equal(w.poisoned?.code, 'QUEUE_POISONED');
    fs.crash();
    assert.deepEqual(bodies(fs, '/q/lanes/new/0000000001.seg'), [1], 'only the acknowledged record survives');
  });

  test('a write that finds the disk full refuses its batch with 452 4.3.1 and says what to cut', async () => {
    const fs = new MemQueueFs();
    const w = writer(fs);
    w.append('new', RT_DONE, rec(1));
    await w.commit();
    const before = fs.peek('/q/lanes/new/0000000001.seg').length;
    fs.injectFault('write', 'ENOSPC');
    w.append('new', RT_DONE, rec(2));
    w.append('data', RT_DONE, rec(3));
    const err = await w.commit().then(
      () => assert.fail('committed'),
      (e: MtaError) => e,
    );
    assert.equal(err.code, 'QUEUE_FULL');
    assert.deepEqual(err.smtp, {
      code: 452,
      enhanced: '4.3.1',
      text: 'Insufficient system storage, try again later',
    });
    fs.clearFaults();
    await assert.rejects(w.commit(), { code: 'QUEUE_FULL' });
    const cut = new Map(w.failedCut!.map((c) => [c.path, c.length]));
    assert.equal(
      cut.get('/q/lanes/new/0000000001.seg'),
      before,
      'the old segment is cut where the batch began',
    );
    assert.ok(cut.has('/q/lanes/data/0000000001.seg'), 'the segment the batch created is listed');
  });

  test('a failed write for another reason (EIO) poisons', async () => {
    const fs = new MemQueueFs();
    const w = writer(fs);
    fs.injectFault('write', 'EIO');
    w.append('new', RT_DONE, rec(1));
    await assert.rejects(w.commit(), { code: 'QUEUE_POISONED' });
  });

  test('ENOSPC from fdatasync still poisons (rule 4)', async () => {
    const fs = new MemQueueFs();
    const w = writer(fs);
    fs.injectFault('datasync', 'ENOSPC');
    w.append('new', RT_DONE, rec(1));
    await assert.rejects(w.commit(), { code: 'QUEUE_POISONED' });
  });

  test('a failed segment creation poisons the writer', async () => {
    const fs = new MemQueueFs();
    const w = writer(fs);
    fs.injectFault('create', 'EMFILE');
    w.append('new', RT_DONE, rec(1));
    await assert.rejects(w.commit(), { code: 'QUEUE_POISONED' });
    assert.deepEqual(fs.paths(), []);
  });

  test('a failed creation at rollover poisons the writer and keeps the full segment intact', async () => {
    const fs = new MemQueueFs();
    const w = writer(fs, 512);
    fs.injectFault('create', 'EIO', 1); // the first segment is created, the second is not
    let acked = 0;
    let err: unknown;
    for (let i = 0; i < 40 && !err; i++) {
      w.append('new', RT_DONE, rec(i));
      await w.commit().then(
        () => acked++,
        (e) => (err = e),
      );
    }
    assert.equal((err as { code?: string }).code, 'QUEUE_POISONED');
    fs.crash();
    assert.equal(bodies(fs, '/q/lanes/new/0000000001.seg').length, acked);
  });

  test('a failed directory sync after creating a segment poisons the writer', async () => {
    const fs = new MemQueueFs();
    const w = writer(fs);
    fs.injectFault('syncDir', 'EIO', 0, '/q/lanes/new');
    w.append('new', RT_DONE, rec(1));
    await assert.rejects(w.commit(), { code: 'QUEUE_POISONED' });
  });

  test('phase-2 records are written only once every phase-1 file is durable', async () => {
    const fs = new MemQueueFs();
    const w = writer(fs);
    w.append('a', RT_DONE, rec(0));
    w.append('b', RT_DONE, rec(0));
    await w.commit();
    fs.injectFault('datasync', 'EIO', 0, '/lanes/a/');
    w.append('a', RT_DONE, rec(1), 1);
    w.append('b', RT_DONE, rec(2), 2);
    w.append('b', RT_DONE, rec(3), 1);
    await assert.rejects(w.commit());
    // Lane b got its phase-1 record, never its phase-2 one, even though it was appended earlier.
    assert.deepEqual(bodies(fs, '/q/lanes/b/0000000001.seg'), [0, 3]);
  });

  test('a crash between the phases keeps phase 1 and loses only phase 2', async () => {
    const fs = new CrashFs();
    const w = writer(fs);
    w.append('a', RT_DONE, rec(0));
    w.append('b', RT_DONE, rec(0));
    await w.commit();
    fs.crashAfter(4); // the two phase-1 writes and their two syncs happen; the phase-2 write does not
    w.append('a', RT_DONE, rec(1), 1);
    w.append('b', RT_DONE, rec(2), 1);
    w.append('a', RT_DONE, rec(9), 2);
    void w.commit();
    // Wait for the crash point (bounded), not a fixed delay: under load 5 ms is not enough.
    for (let i = 0; i < 400 && !fs.dead; i++) await new Promise((r) => setTimeout(r, 5));
    assert.ok(fs.dead);
    assert.deepEqual(bodies(fs.mem, '/q/lanes/a/0000000001.seg'), [0, 1]);
    assert.deepEqual(bodies(fs.mem, '/q/lanes/b/0000000001.seg'), [0, 2]);
  });

  test('a record that does not fit starts the next segment; an oversize one gets a segment alone', async () => {
    const fs = new MemQueueFs();
    const w = writer(fs, 200);
    for (let i = 0; i < 6; i++) w.append('new', RT_DONE, rec(i));
    w.append('new', RT_DONE, [Buffer.alloc(500, 7)]);
    w.append('new', RT_DONE, rec(8));
    await w.commit();
    const segs = fs.paths();
    const all = segs.map((p) => bodies(fs, p));
    assert.deepEqual(all.flat(), [0, 1, 2, 3, 4, 5, 7, 8]);
    for (const p of segs) assert.ok(fs.peek(p).length <= 200 || bodies(fs, p).length === 1, p);
    assert.ok(segs.length >= 3);
  });

  test('onPlaced runs at sealing, before any I/O, and sees its own batch as nextBatch', async () => {
    const fs = new MemQueueFs();
    const w = writer(fs);
    const seen: Array<[number, number, number, number]> = [];
    w.append('new', RT_DONE, rec(1), 1, (seq, off) => seen.push([seq, off, w.nextBatch, fs.stats.writes]));
    const p = w.commit();
    await p;
    assert.equal(seen.length, 1);
    const [seq, off, batch, writes] = seen[0]!;
    assert.equal(seq, 1);
    assert.ok(off > 0);
    assert.equal(batch, 1);
    assert.equal(writes, 0);
    assert.equal(w.nextBatch, 2);
  });

  test('a tail closed by recovery is never appended to: the next record starts a new segment', async () => {
    const fs = new MemQueueFs();
    const w1 = writer(fs);
    w1.append('new', RT_DONE, rec(1));
    await w1.commit();
    const w = writer(fs);
    w.setTail('new', 1, fs.peek('/q/lanes/new/0000000001.seg').length, true);
    w.append('new', RT_DONE, rec(2));
    await w.commit();
    assert.deepEqual(bodies(fs, '/q/lanes/new/0000000001.seg'), [1]);
    assert.deepEqual(bodies(fs, '/q/lanes/new/0000000002.seg'), [2]);
  });
});

describe('segment creation order', () => {
  test('a batch spanning several new segments creates them in order, so a crash leaves no gap', async () => {
    for (let n = 0; n < 150; n += 5) {
      const fs = new CrashFs();
      const w = writer(fs, 256);
      fs.crashAfter(n);
      // The creation of segment 2 is slow: segment 3 must wait for it.
      fs.stallCreate = (p) => p.endsWith('/0000000002.seg');
      for (let i = 0; i < 20; i++) w.append('new', RT_DONE, [Buffer.alloc(100, i)]);
      void w.commit().catch(() => {});
      await new Promise((r) => setTimeout(r, 2));
      fs.crash();
      const seqs = (await fs.mem.readdir('/q/lanes/new'))
        .map((p) => Number(p.slice(0, 10)))
        .sort((a, b) => a - b);
      for (const [i, s] of seqs.entries())
        assert.equal(s, i + 1, `crash after ${n} operations: segments ${seqs}`);
    }
  });

  test('a batch that rolls over past three quarters of the new segment does not prepare its successor first', async () => {
    // Preparing segment N+1 ahead of need must wait until segment N itself is being created:
    // sealing can roll over into N (created only during the batch's I/O) and fill it past 75%.
    const fs = new MemQueueFs();
    const order: string[] = [];
    const create = fs.create.bind(fs);
    fs.create = async (path: string) => {
      order.push(path.slice(-14));
      return create(path);
    };
    const w = writer(fs, 1024);
    // One batch: fills segment 1, rolls into 2 and fills it past 75%.
    for (let i = 0; i < 24; i++) w.append('new', RT_DONE, [Buffer.alloc(60, i)]);
    await w.commit();
    await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(order, [...order].sort(), `segments created out of order: ${order}`);
  });
});
