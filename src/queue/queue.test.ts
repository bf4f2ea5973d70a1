import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { internals, Queue, type QueueOptions } from './queue.js';
import { wantsReport } from '../delivery/reports.js';
import { MemQueueFs } from '../../test/support/memfs.js';
import { FakeClock } from '../../test/support/clock.js';
import { msg, quiet, recordReports, scripted } from '../../test/support/queue.js';
import { waitFor } from '../../test/support/wait.js';

async function open(fs: MemQueueFs, clock: FakeClock, extra: Partial<QueueOptions> = {}) {
  return Queue.open({ dir: '/q', fs, clock, segmentSize: 4096, ...extra });
}

describe('queue', () => {
  test('an accepted message survives a crash and is delivered once after recovery', async () => {
    const fs = new MemQueueFs();
    const clock = new FakeClock();
    const q = await open(fs, clock);
    const r = await q.accept({ data: msg(1), sender: 'a@x.test', recipients: [{ address: 'b@y.test' }] });
    assert.match(r.id, /^[0-9A-F]{13}$/);
    fs.crash();
    const q2 = await open(fs, clock);
    assert.equal(q2.recovery!.liveMessages, 1);
    const d = scripted(() => 'delivered');
    let finished = 0;
    q2.setDeliverer(async (job) => {
      await d.deliver(job); // resolves once the outcome is durable
      finished++;
    });
    q2.start();
    await waitFor(() => finished === 1, 'the delivery finished');
    await quiet(q2, clock);
    assert.deepEqual(
      d.seen.map((s) => s.rcpts),
      [['b@y.test']],
    );
    fs.crash();
    const q3 = await open(fs, clock);
    assert.equal(q3.recovery!.liveMessages, 0);
  });

  test('a deferred recipient moves to the first retry rung and its data to the data lane', async () => {
    const fs = new MemQueueFs();
    const clock = new FakeClock();
    const q = await open(fs, clock);
    const d = scripted((_j, rcpt) => (rcpt.startsWith('ok') ? 'delivered' : 'deferred'));
    q.setDeliverer(d.deliver);
    q.start();
    await q.accept({
      data: msg(2),
      sender: 'a@x.test',
      recipients: [{ address: 'ok@y.test' }, { address: 'later@z.test' }],
    });
    await waitFor(
      () => internals(q).core.findLane('retry-300s')?.live === 1,
      'the deferred recipient in retry-300s',
    );
    await quiet(q, clock);
    const retry = internals(q).core.findLane('retry-300s')!;
    assert.equal(retry.live, 1);
    assert.equal(internals(q).core.newLane().live, 0);
    assert.equal(internals(q).core.findLane('data')!.segs.size, 1);
    fs.crash();
    const q2 = await open(fs, clock);
    assert.equal(internals(q2).core.findLane('retry-300s')!.live, 1);
    const d2 = scripted(() => 'delivered');
    q2.setDeliverer(d2.deliver);
    q2.start();
    await quiet(q2, clock);
    assert.equal(d2.seen.length, 0, 'not due yet');
    clock.advance(5 * 60_000);
    await waitFor(() => d2.seen.length > 0, 'the retry attempted');
    await quiet(q2, clock);
    assert.deepEqual(
      d2.seen.map((s) => s.rcpts),
      [['later@z.test']],
    );
    assert.equal(d2.seen[0]!.lane, 'retry-300s');
  });

  test('a permanent failure commits its bounce in the same batch', async () => {
    const fs = new MemQueueFs();
    const clock = new FakeClock();
    const q = await Queue.open({
      dir: '/q',
      fs,
      clock,
      hooks: {
        reports: {
          wants: wantsReport,
          build: (req) => ({
            data: [Buffer.from(`bounce for ${req.id}\r\n`)],
            sender: '',
            recipients: [{ address: req.envelope.info.sender }],
          }),
        },
      },
    });
    let bounced = 0;
    q.setDeliverer(async (job) => {
      if (job.envelope.info.report) {
        bounced++;
        await job.finish(job.pending.map((r) => ({ rcpt: r, status: 'delivered' })));
        return;
      }
      await job.finish(
        job.pending.map((r) => ({
          rcpt: r,
          status: 'failed',
          code: 550,
          enhanced: '5.1.1',
          text: 'no such user',
        })),
      );
    });
    q.start();
    await q.accept({ data: msg(3), sender: 'a@x.test', recipients: [{ address: 'nobody@y.test' }] });
    await waitFor(() => bounced === 1 && internals(q).core.msgs.count === 0, 'the bounce delivered');
  });

  test('a split message shares one data copy until the last piece is done', async () => {
    const fs = new MemQueueFs();
    const clock = new FakeClock();
    const q = await open(fs, clock);
    const d = scripted(() => 'delivered');
    q.setDeliverer(d.deliver);
    q.start();
    const r = await q.accept({
      data: msg(4),
      sender: 'a@x.test',
      recipients: [{ address: 'u@normal.test' }, { address: 'v@held.test' }, { address: 'w@held.test' }],
      destinations: [
        { kind: 'new' },
        { kind: 'held', domain: 'held.test' },
        { kind: 'held', domain: 'held.test' },
      ],
    });
    await waitFor(() => d.seen.length === 1, 'the normal piece delivered');
    await quiet(q, clock);
    const m = internals(q).core.msgs.byId.get(r.msgId)!;
    assert.equal(internals(q).core.msgs.refs[m], 1, 'only the held piece is left');
    assert.equal(q.heldCount('held.test'), 1);
    fs.crash();
    const q2 = await open(fs, clock);
    assert.equal(q2.heldCount('held.test'), 1);
    const d2 = scripted(() => 'delivered');
    q2.setDeliverer(d2.deliver);
    q2.start();
    assert.equal(await q2.flushHeld('held.test'), 1);
    assert.deepEqual(
      d2.seen.map((s) => s.rcpts),
      [['v@held.test', 'w@held.test']],
    );
    assert.equal(internals(q2).core.msgs.count, 0);
  });

  test('hold, release and delete are logged actions that survive a crash', async () => {
    const fs = new MemQueueFs();
    const clock = new FakeClock();
    const q = await open(fs, clock);
    const a = await q.accept({ data: msg(5), sender: 'a@x.test', recipients: [{ address: 'b@y.test' }] });
    const b = await q.accept({ data: msg(6), sender: 'a@x.test', recipients: [{ address: 'c@y.test' }] });
    assert.deepEqual(await q.hold(a.msgId), { pieces: 1, busy: 0 });
    assert.deepEqual(await q.remove(b.msgId), { pieces: 1, busy: 0 });
    fs.crash();
    const q2 = await open(fs, clock);
    assert.equal(internals(q2).core.findLane('hold')!.live, 1);
    assert.equal(internals(q2).core.msgs.count, 1);
    const env = await q2.readEnvelope(
      internals(q2).core.piecesOf(internals(q2).core.msgs.byId.get(a.msgId)!)[0]!,
    );
    assert.equal(env.info.history.at(-1)!.ev, 'held by operator');
    const d = scripted(() => 'delivered');
    q2.setDeliverer(d.deliver);
    q2.start();
    assert.deepEqual(await q2.release(a.msgId), { pieces: 1, busy: 0 });
    await waitFor(() => d.seen.length > 0, 'the released message attempted');
    await quiet(q2, clock);
    assert.equal(d.seen.length, 1);
  });

  test('a failed fdatasync poisons the writer: this and every later accept are refused', async () => {
    const fs = new MemQueueFs();
    const clock = new FakeClock();
    const q = await open(fs, clock);
    await q.accept({ data: msg(7), sender: 'a@x.test', recipients: [{ address: 'b@y.test' }] });
    fs.injectFault('datasync', 'EIO');
    await assert.rejects(
      q.accept({ data: msg(8), sender: 'a@x.test', recipients: [{ address: 'b@y.test' }] }),
      { code: 'QUEUE_POISONED' },
    );
    fs.clearFaults();
    await assert.rejects(
      async () => q.accept({ data: msg(9), sender: 'a@x.test', recipients: [{ address: 'b@y.test' }] }),
      { code: 'QUEUE_POISONED' },
    );
    fs.crash();
    const q2 = await open(fs, clock);
    assert.equal(q2.recovery!.liveMessages, 1, 'the acknowledged message is there');
  });

  test('ENOSPC on write poisons with a 452 status', async () => {
    const fs = new MemQueueFs();
    const q = await open(fs, new FakeClock());
    fs.injectFault('write', 'ENOSPC');
    await assert.rejects(
      q.accept({ data: msg(1), sender: '', recipients: [{ address: 'b@y.test' }] }),
      (e: { smtp?: { code: number } }) => e.smtp?.code === 452,
    );
  });

  test('segments of delivered mail are unlinked once the runner has passed them', async () => {
    const fs = new MemQueueFs();
    const clock = new FakeClock();
    const q = await open(fs, clock);
    const d = scripted(() => 'delivered');
    q.setDeliverer(d.deliver);
    q.start();
    for (let i = 0; i < 200; i++)
      await q.accept({ data: msg(i), sender: 'a@x.test', recipients: [{ address: 'b@y.test' }] });
    await waitFor(() => internals(q).core.msgs.count === 0, 'the 200 messages delivered');
    await q.accept({ data: msg(999), sender: 'a@x.test', recipients: [{ address: 'b@y.test' }] });
    await waitFor(() => internals(q).core.msgs.count === 0, 'the last message delivered');
    const segs = () => fs.paths().filter((p) => p.includes('/lanes/new/'));
    // Segments are unlinked in the background after a durable batch.
    await waitFor(() => segs().length <= 2, 'at most two segments left in lanes/new');
  });

  test('a message past max_age is bounced instead of deferred', async () => {
    const fs = new MemQueueFs();
    const clock = new FakeClock();
    const reports: string[] = [];
    const q = await Queue.open({
      dir: '/q',
      fs,
      clock,
      maxAge: 10 * 60_000,
      hooks: {
        reports: {
          wants: wantsReport,
          build: (req) => {
            reports.push(`${req.kind}:${req.recipients.map((r) => r.outcome.enhanced).join(',')}`);
            return null;
          },
        },
      },
    });
    const d = scripted(() => 'deferred');
    q.setDeliverer(d.deliver);
    q.start();
    await q.accept({ data: msg(1), sender: 'a@x.test', recipients: [{ address: 'b@y.test' }] });
    await waitFor(() => d.seen.length === 1, 'the first attempt');
    await quiet(q, clock);
    clock.advance(5 * 60_000);
    await waitFor(() => d.seen.length === 2, 'the retry after 5 minutes');
    await quiet(q, clock);
    clock.advance(15 * 60_000);
    await waitFor(() => reports.length > 0, 'the bounce at max_age');
    await quiet(q, clock);
    assert.deepEqual(reports, ['failure:4.4.7']);
    assert.equal(internals(q).core.msgs.count, 0);
  });
  test("held mail expires at its domain's max_age with a bounce, and the sweep reads only the expired", async () => {
    const fs = new MemQueueFs();
    const clock = new FakeClock();
    const reports: string[] = [];
    const q = await Queue.open({
      dir: '/q',
      fs,
      clock,
      maxAge: 60 * 60_000,
      hooks: {
        maxAgeFor: (domain) => (domain === 'short.test' ? 10 * 60_000 : 60 * 60_000),
        reports: recordReports(reports),
      },
    });
    const held = (domain: string, n: number) =>
      q.accept({
        data: msg(n),
        sender: 'a@x.test',
        recipients: [{ address: `u${n}@${domain}` }],
        destinations: [{ kind: 'held', domain }],
      });
    await held('short.test', 1);
    await held('long.test', 2);
    clock.advance(5 * 60_000);
    // Many younger pieces in the same lane: the sweep must not read (or even visit) them.
    for (let i = 0; i < 500; i++) await held('short.test', 100 + i);
    let reads = 0;
    const read = fs.read.bind(fs);
    fs.read = (path, off, len) => {
      reads++;
      return read(path, off, len);
    };
    assert.equal(await q.expireHeld(), 0);
    assert.equal(reads, 0, 'nothing expired, nothing read');
    clock.advance(6 * 60_000);
    assert.equal(await q.expireHeld(), 1, "only the piece past its domain's shorter max_age expires");
    assert.deepEqual(reports, ['failure:u1@short.test 4.4.7']);
    assert.ok(reads <= 2, `the sweep read the expired piece only (${reads} reads)`);
    assert.equal(q.heldCount('short.test'), 500);
    assert.equal(q.heldCount('long.test'), 1);
    clock.advance(50 * 60_000);
    assert.equal(await q.expireHeld(), 501);
    assert.equal(q.heldCount('short.test'), 0);
    assert.equal(q.heldCount('long.test'), 0);
  });
  test('a reused slot never serves the in-memory envelope or data of the message it held before', async () => {
    const fs = new MemQueueFs();
    const clock = new FakeClock();
    const q = await Queue.open({ dir: '/q', fs, clock, segmentSize: 4096 });
    // A is accepted but not attempted (no deliverer yet), then deleted: its slots are freed.
    const a = await q.accept({ data: msg('A'), sender: 'a@x.test', recipients: [{ address: 'a@y.test' }] });
    assert.deepEqual(await q.remove(a.msgId), { pieces: 1, busy: 0 });
    // B takes the same slots, held for a domain: its first attempt reads from disk.
    const b = await q.accept({
      data: msg('B'),
      sender: 'b@x.test',
      recipients: [{ address: 'b@held.test' }],
      destinations: [{ kind: 'held', domain: 'held.test' }],
    });
    const seen: string[] = [];
    q.setDeliverer(async (job) => {
      seen.push(`${job.envelope.info.recipients[0]!.address} ${(await job.data()).toString()}`);
      await job.finish(job.pending.map((r) => ({ rcpt: r, status: 'delivered' })));
    });
    q.start();
    assert.equal(await q.flushHeld('held.test'), 1);
    assert.deepEqual(seen, [`b@held.test ${msg('B')[0]!.toString()}`]);
    assert.equal(internals(q).core.msgs.byId.has(b.msgId), false);
  });
});
