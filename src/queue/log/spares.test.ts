// Spare segments (spares.ts): reclaimed segment files kept, zeroed and reused by the writer, on
// the in-memory file system that models power loss. What a user of the queue must never see:
// a record of a reused file's former life, a message lost or delivered twice because its
// segment's file was recycled, or a file with two names after a crash.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { internals, Queue } from '../queue.js';
import { scanSegment } from './reader.js';
import { SparePool } from './spares.js';
import { FakeClock } from '../../../test/support/clock.js';
import { MemQueueFs } from '../../../test/support/memfs.js';
import { CrashFs, msg, quiet, scripted } from '../../../test/support/queue.js';
import { ticks, waitFor } from '../../../test/support/wait.js';

const SEG = 4096;

const spareFiles = (fs: MemQueueFs) => fs.paths().filter((p) => p.startsWith('/q/spare/'));
const isZeros = (b: Buffer) => b.every((x) => x === 0);

/** Accepts `n` messages one after another and waits until the deliverer has seen them all. */
async function acceptAll(q: Queue, from: number, n: number, delivered: () => number): Promise<void> {
  for (let i = from; i < from + n; i++)
    await q.accept({ data: msg(i), sender: 'a@x.test', recipients: [{ address: `b${i}@y.test` }] });
  await waitFor(() => delivered() >= from + n, `${from + n} messages delivered`);
}

test('segments of delivered mail come back as zeroed spares and the writer reuses them', async () => {
  const fs = new MemQueueFs();
  const clock = new FakeClock();
  let q = await Queue.open({ dir: '/q', fs, clock, segmentSize: SEG, spareSegments: 3 });
  const freed: boolean[] = [];
  q.onEvent((ev) => ev.type === 'segment-unlinked' && freed.push(ev.spare));
  const d = scripted(() => 'delivered');
  q.setDeliverer(d.deliver);
  q.start();
  await acceptAll(q, 0, 200, () => d.seen.length);
  await quiet(q, clock);
  const st = internals(q).spares.stats;
  // The event of each freed segment says whether its file was kept: as many as the pool kept.
  assert.equal(freed.filter((x) => x).length, st.kept);
  assert.ok(st.kept > 5, `segments kept as spares: ${st.kept}`);
  assert.ok(st.taken > 5, `spares reused: ${st.taken}`);
  assert.ok(spareFiles(fs).length <= 3, `at most three spares: ${spareFiles(fs)}`);
  await waitFor(() => spareFiles(fs).every((p) => p.endsWith('.zero')), 'the spares zeroed');
  for (const p of spareFiles(fs)) assert.ok(isZeros(fs.peek(p)), `${p} holds only zeros`);
  // A reused segment reads as its header, its new records, then zeros: no record of before.
  for (const p of fs.paths().filter((x) => x.startsWith('/q/lanes/new/'))) {
    const scan = scanSegment(fs.peek(p), true, () => {});
    assert.equal(scan.corruption, undefined, `${p}: ${JSON.stringify(scan.corruption)}`);
  }
  await q.stop();
  // Restart: the pool is found again and used; every message still delivered exactly once.
  q = await Queue.open({ dir: '/q', fs, clock, segmentSize: SEG, spareSegments: 3 });
  assert.equal(q.recovery!.repaired, 0);
  assert.deepEqual(q.recovery!.corruptions, []);
  q.setDeliverer(d.deliver);
  q.start();
  await acceptAll(q, 200, 100, () => d.seen.length);
  await quiet(q, clock);
  assert.ok(internals(q).spares.stats.taken > 0, 'spares from the last run reused');
  const ids = d.seen.map((j) => j.rcpts[0]!);
  assert.equal(new Set(ids).size, 300, 'each of the 300 messages delivered once');
  assert.equal(ids.length, 300);
  await q.stop();
});

test('power cuts at every file operation of a recycling run lose no acknowledged message and show no old record', async () => {
  // One run with a spare pool rolls 4 KiB segments over many times, delivering as it goes; it
  // is cut at its n-th mutating file operation (some 300 cuts spread over the run), recovered
  // and delivered again.
  const N = 150;
  const probe = new CrashFs();
  const full = await recyclingRun(probe, N);
  assert.ok(full.taken > 3, `the uncut run reuses spares (${full.taken})`);
  const total = probe.ops;
  const step = Math.max(1, Math.floor(total / 300));
  for (let n = 0; n < total; n += step) {
    const fs = new CrashFs();
    fs.crashAfter(n);
    const first = await recyclingRun(fs, N);
    fs.crash();
    const clock = new FakeClock();
    const q = await Queue.open({ dir: '/q', fs: fs.mem, clock, segmentSize: SEG, spareSegments: 2 });
    // A reused file whose old records showed through would read as corruption (and be set aside).
    assert.deepEqual(q.recovery!.corruptions, [], `cut at ${n}: corruption found`);
    assert.deepEqual(q.recovery!.missingSegments, [], `cut at ${n}: segments missing`);
    const again = new Set<number>();
    const wrong: string[] = [];
    q.setDeliverer(async (job) => {
      const i = numberOf(job.envelope.info.recipients[0]!.address);
      const data = Buffer.concat(await job.data());
      if (!data.equals(Buffer.concat(msg(i)))) wrong.push(`${i}: ${JSON.stringify(data.toString())}`);
      await job.finish(job.pending.map((rcpt) => ({ rcpt, status: 'delivered', code: 250, text: 'ok' })));
      again.add(i);
    });
    q.start();
    await quiet(q, clock);
    assert.deepEqual(wrong, [], `cut at ${n}: data read back differs`);
    for (const i of first.acked)
      assert.ok(first.finished.has(i) || again.has(i), `cut at ${n}: acknowledged message ${i} lost`);
    for (const i of first.finished)
      assert.ok(!again.has(i), `cut at ${n}: finished message ${i} delivered again`);
    for (const p of fs.mem.paths().filter((x) => x.startsWith('/q/lanes/'))) {
      const scan = scanSegment(fs.mem.peek(p), true, () => {});
      assert.equal(scan.corruption, undefined, `cut at ${n}: ${p} ${JSON.stringify(scan.corruption)}`);
    }
    await q.stop();
  }
});

/** `p`, or `otherwise` once the file system has crashed (its pending operations never end). */
async function untilDead<T, U>(fs: CrashFs, p: Promise<T>, otherwise: U): Promise<T | U> {
  let timer: NodeJS.Timeout | undefined;
  const dead = new Promise<U>((resolve) => {
    timer = setInterval(() => fs.dead && resolve(otherwise), 1);
  });
  try {
    return await Promise.race([p, dead]);
  } finally {
    clearInterval(timer);
  }
}

const numberOf = (address: string) => Number(/^b(\d+)@/.exec(address)![1]);

/**
 * Accepts `n` messages one by one, each delivered at once; stops at the first failure (the
 * crash). Returns the accepts acknowledged, the deliveries whose outcome was durable (finish()
 * resolved), and how many spares the writer took.
 */
async function recyclingRun(
  fs: CrashFs,
  n: number,
): Promise<{ acked: Set<number>; finished: Set<number>; taken: number }> {
  const acked = new Set<number>();
  const finished = new Set<number>();
  const clock = new FakeClock();
  const opened = await untilDead(
    fs,
    Queue.open({ dir: '/q', fs, clock, segmentSize: SEG, spareSegments: 2 }).catch(() => undefined),
    undefined,
  );
  if (!opened) return { acked, finished, taken: 0 };
  const q = opened;
  q.setDeliverer(async (job) => {
    await job.finish(job.pending.map((rcpt) => ({ rcpt, status: 'delivered', code: 250, text: 'ok' })));
    finished.add(numberOf(job.envelope.info.recipients[0]!.address));
  });
  q.start();
  for (let i = 0; i < n && !fs.dead; i++) {
    const ok = await untilDead(
      fs,
      q.accept({ data: msg(i), sender: 'a@x.test', recipients: [{ address: `b${i}@y.test` }] }).then(
        () => true,
        () => false,
      ),
      false,
    );
    if (!ok) break;
    acked.add(i);
    await ticks(3);
  }
  if (!fs.dead) await ticks(20);
  return { acked, finished, taken: internals(q).spares.stats.taken };
}

test('a zeroing cut short is done again at the next start; extra and unreadable spares are unlinked', async () => {
  const fs = new MemQueueFs();
  await fs.mkdirp('/q/spare');
  const put = async (name: string, bytes: Buffer) => {
    const f = await fs.create(`/q/spare/${name}`);
    await f.write([bytes], 0);
    await f.datasync();
    await f.close();
  };
  await put('1.dirty', Buffer.alloc(SEG, 7)); // kept, zeroing never finished
  await put('2.zero', Buffer.alloc(SEG));
  await put('3.dirty', Buffer.alloc(SEG * 2, 7)); // larger than a segment: not a spare
  await put('4.dirty', Buffer.alloc(SEG, 7)); // beyond the pool's size
  await fs.syncDir('/q/spare');
  const pool = new SparePool(fs, '/q', SEG, 3);
  await pool.open();
  await waitFor(() => pool.readyCount === 2 && spareFiles(fs).length === 2, 'two spares ready');
  assert.deepEqual(spareFiles(fs), ['/q/spare/1.zero', '/q/spare/2.zero']);
  for (const p of spareFiles(fs)) assert.ok(isZeros(fs.peek(p)), `${p} zeroed`);
  // Taken: renamed into place, durably in both directories.
  await fs.mkdirp('/q/lanes/new');
  assert.equal(await pool.take('/q/lanes/new/0000000009.seg', '/q/lanes/new'), true);
  fs.crash();
  assert.ok(fs.paths().includes('/q/lanes/new/0000000009.seg'));
  assert.equal(spareFiles(fs).length, 1, 'the taken spare has one name only');
  await pool.close();
});

test('a spare that a crash left also named as a lane segment is dropped, never zeroed or reused', async () => {
  for (const name of ['1.dirty', '2.zero']) {
    const fs = new MemQueueFs();
    await fs.mkdirp('/q/spare');
    await fs.mkdirp('/q/lanes/data');
    const spare = `/q/spare/${name}`;
    const f = await fs.create(spare);
    await f.write([Buffer.alloc(SEG)], 0);
    await f.datasync();
    await f.close();
    await fs.syncDir('/q/spare');
    // take(): renamed into the lane, the lane's directory synced, then the power went before
    // spare/ was: after the crash the file has both names.
    const seg = '/q/lanes/data/0000000003.seg';
    await fs.rename(spare, seg);
    await fs.syncDir('/q/lanes/data');
    fs.crash();
    assert.equal(await fs.links(seg), 2, 'the crash left two names');
    // The segment's records, written under its lane name.
    const w = await fs.openWrite(seg);
    const records = Buffer.from('records of a live segment');
    await w.write([records], 0);
    await w.datasync();
    await w.close();
    const pool = new SparePool(fs, '/q', SEG, 4);
    assert.equal(await pool.open(), 0, `${name}: not kept as a spare`);
    await pool.close();
    assert.equal(pool.stats.shared, 1);
    assert.deepEqual(spareFiles(fs), []);
    assert.ok(
      fs.peek(seg).subarray(0, records.length).equals(records),
      `${name}: the segment's bytes are intact`,
    );
    assert.equal(await fs.links(seg), 1);
  }
});

test('the pool keeps nothing when off, full, low on space, or offered a small file', async () => {
  const fs = new MemQueueFs();
  await fs.mkdirp('/q/lanes/new');
  const seg = async (name: string, size: number) => {
    const f = await fs.create(`/q/lanes/new/${name}`);
    await f.write([Buffer.alloc(size, 1)], 0);
    await f.close();
    return `/q/lanes/new/${name}`;
  };
  const off = new SparePool(fs, '/q', SEG, 0);
  await off.open();
  assert.equal(await off.keep(await seg('a', SEG), '/q/lanes/new'), false, 'off');
  const pool = new SparePool(fs, '/q', SEG, 1);
  await pool.open();
  assert.equal(await pool.keep(await seg('b', SEG / 4), '/q/lanes/new'), false, 'a quarter-full segment');
  assert.equal(await pool.keep(await seg('c', SEG), '/q/lanes/new'), true, 'a full one');
  assert.equal(await pool.keep(await seg('d', SEG), '/q/lanes/new'), false, 'the pool is full');
  await waitFor(() => pool.readyCount === 1, 'the kept file zeroed');
  assert.equal(await pool.take('/q/lanes/new/x', '/q/lanes/new'), true);
  assert.equal(await pool.take('/q/lanes/new/y', '/q/lanes/new'), false, 'none left');
  await pool.close();
  // A disk with less room than twice the pool: no spare kept, and the ones there are unlinked.
  fs.freeBytes = async () => SEG;
  const low = new SparePool(fs, '/q', SEG, 1);
  await low.open();
  assert.deepEqual(spareFiles(fs), [], 'spares unlinked on a full disk');
  assert.equal(await low.keep(await seg('e', SEG), '/q/lanes/new'), false, 'low on space');
  await low.close();
});

test('a spare whose zeroing fails is unlinked and the writer creates new segments as before', async () => {
  const fs = new MemQueueFs();
  const clock = new FakeClock();
  const q = await Queue.open({ dir: '/q', fs, clock, segmentSize: SEG, spareSegments: 2 });
  fs.injectFault('write', 'EIO', 0, '/q/spare/');
  const d = scripted(() => 'delivered');
  q.setDeliverer(d.deliver);
  q.start();
  await acceptAll(q, 0, 100, () => d.seen.length);
  await quiet(q, clock);
  const st = internals(q).spares.stats;
  assert.ok(st.kept > 0, 'segments were offered');
  assert.equal(st.zeroed, 0);
  assert.equal(st.taken, 0);
  assert.deepEqual(spareFiles(fs), [], 'failed spares unlinked');
  assert.equal(q.poisoned, undefined, 'the queue still writes');
  await q.stop();
});
