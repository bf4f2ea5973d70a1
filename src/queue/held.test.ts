// Held lanes as the queue keeps them (docs/queue-states.md, "Held lanes"): a held piece stays in
// its lane's order while it is attempted, so a failed flush, a cut ATRN session, the in-flight
// cap, two flushes at once or an operator action never leave it where no flush, claim or expiry
// finds it; flushes and claims go in arrival order; attempts that wrote nothing are counted;
// held mail expires at max_age with a bounce, the sweep visiting only what expired.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { internals, Queue, type QueueOptions } from './queue.js';
import { F_INFLIGHT } from './state/tables.js';
import type { DeliveryJob, RcptOutcome } from './types.js';
import { MemQueueFs } from '../../test/support/memfs.js';
import { FakeClock } from '../../test/support/clock.js';
import { msg, quiet, recordReports } from '../../test/support/queue.js';
import { tick, waitFor } from '../../test/support/wait.js';

const D = 'held.test';

/** A fresh queue on an in-memory disk with the fake clock; reports are recorded as text. */
async function open(
  extra: Partial<QueueOptions> = {},
): Promise<{ q: Queue; fs: MemQueueFs; clock: FakeClock; reports: string[] }> {
  const fs = new MemQueueFs();
  const clock = new FakeClock();
  const reports: string[] = [];
  const q = await Queue.open({
    dir: '/q',
    fs,
    clock,
    maxAge: 3_600_000,
    hooks: {
      reports: recordReports(reports),
    },
    ...extra,
  });
  return { q, fs, clock, reports };
}

/** Accepts `n` messages held for `domain`, one recipient each, u0@domain, u1@domain, ... */
async function hold(q: Queue, clock: FakeClock, n: number, domain = D, from = 0): Promise<number[]> {
  const ids: number[] = [];
  for (let i = from; i < from + n; i++) {
    const r = await q.accept({
      data: msg(i),
      sender: 'a@x.test',
      recipients: [{ address: `u${i}@${domain}` }],
      destinations: [{ kind: 'held', domain }],
    });
    ids.push(r.msgId);
    clock.advance(1_000); // distinct arrival times
  }
  return ids;
}

/** A deliverer whose answer can change between flushes; records every attempt. */
function customer(answer: () => 'delivered' | 'deferred' | 'failed') {
  const seen: string[] = [];
  let inflight = 0;
  let peak = 0;
  const perPiece = new Map<string, number>();
  let overlap = 0;
  const deliver = async (job: DeliveryJob) => {
    const key = `${job.msgId}/${job.piece}`;
    const n = (perPiece.get(key) ?? 0) + 1;
    perPiece.set(key, n);
    if (n > 1) overlap++;
    inflight++;
    peak = Math.max(peak, inflight);
    seen.push(job.envelope.info.recipients[job.pending[0]!]!.address);
    await tick(); // the customer answers on a later turn: other attempts may start meanwhile
    const a = answer();
    const outs: RcptOutcome[] = job.pending.map((r) =>
      a === 'deferred'
        ? { rcpt: r, status: 'deferred', code: 421, text: 'customer offline', hold: D }
        : { rcpt: r, status: a, code: a === 'delivered' ? 250 : 550 },
    );
    inflight--;
    perPiece.set(key, perPiece.get(key)! - 1);
    await job.finish(outs);
  };
  return {
    seen,
    deliver,
    get peak() {
      return peak;
    },
    get overlap() {
      return overlap;
    },
  };
}

const addr = (i: number, domain = D) => `u${i}@${domain}`;

/** A promise and the function that resolves it (a deliverer waits on it). */
function opening(): [Promise<void>, () => void] {
  let open!: () => void;
  const p = new Promise<void>((r) => {
    open = r;
  });
  return [p, open];
}

/** Resolves once some piece of the queue is in flight. */
const anyInFlight = (q: Queue) =>
  waitFor(() => internals(q).core.pieces.flags.some((f) => (f & F_INFLIGHT) !== 0), 'an attempt in flight');

describe('held lanes', () => {
  test('a piece a failed flush deferred back into its lane is flushed again by the next flush', async () => {
    const { q, fs, clock } = await open();
    await hold(q, clock, 5);
    let state: 'deferred' | 'delivered' = 'deferred';
    const c = customer(() => state);
    q.setDeliverer(c.deliver);
    q.start();
    const bytes = fs.stats.bytesWritten;
    assert.equal(await q.flushHeld(D), 5);
    assert.equal(fs.stats.bytesWritten, bytes, 'a deferral back into the held lane writes nothing');
    assert.equal(q.heldCount(D), 5);
    // The next flush (ETRN, probe) finds every piece again, without a restart.
    assert.equal(await q.flushHeld(D), 5);
    state = 'delivered';
    assert.equal(await q.flushHeld(D), 5);
    assert.equal(q.heldCount(D), 0);
    assert.deepEqual(
      c.seen.slice(10),
      [0, 1, 2, 3, 4].map((i) => addr(i)),
    );
    assert.equal(internals(q).core.msgs.count, 0);
    await q.stop();
  });

  test('a flush offers the lane in arrival order, mail that came during a failed flush after the older mail', async () => {
    const { q, clock } = await open();
    await hold(q, clock, 3);
    let state: 'deferred' | 'delivered' = 'deferred';
    let arrived = false;
    const c = customer(() => state);
    q.setDeliverer(async (job) => {
      if (!arrived) {
        arrived = true;
        await hold(q, clock, 2, D, 3); // new mail for the domain while the flush runs
      }
      await c.deliver(job);
    });
    q.start();
    assert.equal(await q.flushHeld(D), 3);
    assert.equal(q.heldCount(D), 5);
    state = 'delivered';
    assert.equal(await q.flushHeld(D), 5);
    assert.deepEqual(
      c.seen.slice(3),
      [0, 1, 2, 3, 4].map((i) => addr(i)),
    );
    await q.stop();
  });

  test('a flush cut short by the in-flight cap resumes and attempts every piece once', async () => {
    const { q, clock } = await open({ maxInflight: 2, flushConcurrency: 3 });
    await hold(q, clock, 12);
    const c = customer(() => 'delivered');
    q.setDeliverer(c.deliver);
    q.start();
    assert.equal(await q.flushHeld(D), 12);
    assert.equal(c.seen.length, 12);
    assert.equal(new Set(c.seen).size, 12);
    assert.ok(c.peak <= 2, `at most the in-flight cap at once (${c.peak})`);
    assert.equal(q.heldCount(D), 0);
    await q.stop();
  });

  test('a flush takes at most flushConcurrency of the in-flight slots', async () => {
    const { q, clock } = await open({ flushConcurrency: 3 });
    await hold(q, clock, 10);
    const c = customer(() => 'delivered');
    q.setDeliverer(c.deliver);
    q.start();
    assert.equal(await q.flushHeld(D), 10);
    assert.equal(c.peak, 3);
    await q.stop();
  });

  test('two flushes of one lane at once (a probe and an ETRN) never attempt a piece twice at the same time', async () => {
    const { q, clock } = await open();
    await hold(q, clock, 8);
    let state: 'deferred' | 'delivered' = 'deferred';
    const c = customer(() => state);
    q.setDeliverer(c.deliver);
    q.start();
    const [a, b] = await Promise.all([q.flushHeld(D), q.flushHeld(D)]);
    assert.equal(a, 8);
    assert.ok(b <= 8);
    assert.equal(c.overlap, 0, 'no piece in two deliveries at once');
    assert.equal(q.heldCount(D), 8, 'every deferred piece is still held');
    state = 'delivered';
    await Promise.all([q.flushHeld(D), q.flushHeld(D), q.flushHeld(D)]);
    assert.equal(c.overlap, 0);
    assert.equal(q.heldCount(D), 0);
    assert.equal(internals(q).core.msgs.count, 0);
    await q.stop();
  });

  test('an ATRN session cut off after some messages leaves the rest claimable, in arrival order', async () => {
    const { q, fs, clock } = await open();
    await hold(q, clock, 6);
    q.start();
    const first = await q.claimHeld([D]);
    assert.deepEqual(
      first.map((j) => j.envelope.info.recipients[0]!.address),
      [0, 1, 2, 3, 4, 5].map((i) => addr(i)),
    );
    // While claimed, nothing else takes them: not a flush, not a second claim.
    assert.equal((await q.claimHeld([D])).length, 0);
    for (const j of first.slice(0, 2)) await j.finish([{ rcpt: 0, status: 'delivered', code: 250 }]);
    // The customer is gone: the rest finish with nothing delivered, writing nothing.
    const bytes = fs.stats.bytesWritten;
    for (const j of first.slice(2)) await j.finish([]);
    assert.equal(fs.stats.bytesWritten, bytes);
    assert.equal(q.heldCount(D), 4);
    const again = await q.claimHeld([D]);
    assert.deepEqual(
      again.map((j) => j.envelope.info.recipients[0]!.address),
      [2, 3, 4, 5].map((i) => addr(i)),
    );
    // A 4xx from the customer for one of them keeps it held for the next session.
    await again[0]!.finish([{ rcpt: 0, status: 'deferred', code: 450, text: 'mailbox busy' }]);
    for (const j of again.slice(1)) await j.finish([{ rcpt: 0, status: 'delivered', code: 250 }]);
    const last = await q.claimHeld([D]);
    assert.deepEqual(
      last.map((j) => j.envelope.info.recipients[0]!.address),
      [addr(2)],
    );
    assert.equal(last[0]!.attempts, 1, 'the 4xx counts as an attempt');
    await last[0]!.finish([{ rcpt: 0, status: 'delivered', code: 250 }]);
    assert.equal(internals(q).core.msgs.count, 0);
    await q.stop();
  });

  test('attempts that wrote nothing are counted until the envelope is written again', async () => {
    const { q, clock } = await open();
    const [id] = await hold(q, clock, 1);
    const c = customer(() => 'deferred');
    q.setDeliverer(c.deliver);
    q.start();
    for (let i = 0; i < 3; i++) await q.flushHeld(D);
    const pslot = internals(q).core.piecesOf(internals(q).core.msgs.byId.get(id!)!)[0]!;
    const env = await q.readEnvelope(pslot);
    assert.equal(env.info.attempts, 0, 'nothing was written');
    assert.equal(q.attemptsOf(pslot, env), 3);
    assert.equal(internals(q).core.unwritten.get(pslot)?.last, '421 customer offline');
    // A new version (here an operator hold) folds the count into the envelope.
    await q.hold(id!);
    const held = internals(q).core.piecesOf(internals(q).core.msgs.byId.get(id!)!)[0]!;
    const env2 = await q.readEnvelope(held);
    assert.equal(env2.info.attempts, 3);
    assert.equal(q.attemptsOf(held, env2), 3);
    await q.stop();
  });

  test('held mail that went through failed flushes bounces at max_age when the expiry timer fires', async () => {
    const { q, clock, reports } = await open({ maxAge: 60_000 });
    await hold(q, clock, 2);
    const c = customer(() => 'deferred');
    q.setDeliverer(c.deliver);
    q.start();
    await q.flushHeld(D);
    await hold(q, clock, 1, D, 2); // never touched by a flush
    assert.deepEqual(reports, []);
    clock.advance(57_000); // u0 is 60 s old now, u1 59 s, u2 57 s
    await waitFor(() => reports.length === 1, 'the first bounce');
    assert.deepEqual(reports, [`failure:${addr(0)} 4.4.7`]);
    clock.advance(3_000);
    await waitFor(() => reports.length === 3, 'the other bounces');
    assert.equal(q.heldCount(D), 0);
    assert.equal(internals(q).core.msgs.count, 0);
    await q.stop();
  });

  test('an expiry sweep visits only the expired pieces, not the lane (O(expired))', async () => {
    const { q, clock, reports } = await open({ maxAge: 60_000 });
    await hold(q, clock, 3); // arrive at 0, 1 and 2 s
    clock.advance(30_000);
    // 2,000 younger pieces in the same lane, all arriving at once.
    await Promise.all(
      Array.from({ length: 2_000 }, (_, i) =>
        q.accept({
          data: msg(100 + i),
          sender: 'a@x.test',
          recipients: [{ address: `y${i}@${D}` }],
          destinations: [{ kind: 'held', domain: D }],
        }),
      ),
    );
    q.start();
    const heap = q.expiry;
    let visited = 0;
    const pop = heap.pop.bind(heap);
    heap.pop = () => {
      visited++;
      return pop();
    };
    clock.advance(32_000); // the first three are past 60 s, the 2,000 are 32 s old
    await waitFor(() => reports.length === 3, 'the three bounces');
    assert.deepEqual(reports.sort(), [addr(0), addr(1), addr(2)].map((a) => `failure:${a} 4.4.7`).sort());
    assert.equal(visited, 3, `the sweep visited ${visited} entries for 3 expired pieces`);
    assert.equal(q.heldCount(D), 2_000);
    assert.equal(heap.size, 2_000, 'the younger pieces keep their entries');
    await q.stop();
  });

  test('a held piece in flight at its deadline bounces when the attempt ends', async () => {
    const { q, clock, reports } = await open({ maxAge: 60_000 });
    await hold(q, clock, 1);
    const [gate, release] = opening();
    q.setDeliverer(async (job) => {
      await gate;
      await job.finish([{ rcpt: 0, status: 'deferred', code: 421, hold: D }]);
    });
    q.start();
    const flush = q.flushHeld(D);
    await anyInFlight(q);
    clock.advance(120_000);
    await quiet(q, clock, 'the expiry sweep done', { inflight: 'ignore' });
    assert.deepEqual(reports, [], 'not bounced while in flight');
    release();
    await flush;
    assert.deepEqual(reports, [`failure:${addr(0)} 4.4.7`]);
    assert.equal(internals(q).core.msgs.count, 0);
    await q.stop();
  });

  test('a piece being expired is not delivered by a flush that starts meanwhile (no bounce and delivery both)', async () => {
    const { q, fs, clock, reports } = await open({ maxAge: 60_000 });
    await hold(q, clock, 1);
    const seen: string[] = [];
    const [slowCustomer, answer] = opening();
    q.setDeliverer(async (job) => {
      seen.push(job.id);
      await slowCustomer;
      await job.finish([{ rcpt: 0, status: 'delivered', code: 250 }]);
    });
    q.start();
    clock.advance(60_000);
    // The sweep's read of the envelope is slow; a flush (an ETRN) comes in the meantime.
    const [slowRead, go] = opening();
    const read = fs.read.bind(fs);
    let first = true;
    let stalled = false;
    fs.read = async (path, off, len) => {
      if (first) {
        first = false;
        stalled = true;
        await slowRead;
      }
      return read(path, off, len);
    };
    const sweep = q.expireHeld();
    await waitFor(() => stalled, "the sweep reading the piece's envelope");
    const flush = q.flushHeld(D);
    await quiet(q, clock, 'the flush as far as it goes', { inflight: 'ignore' });
    go();
    assert.equal(await sweep, 1);
    answer();
    await flush;
    assert.deepEqual(reports, [`failure:${addr(0)} 4.4.7`]);
    assert.deepEqual(seen, [], 'not handed to the customer as well');
    await q.stop();
  });

  test('an operator bounce and a flush at once: either the bounce or the delivery, never both', async () => {
    const { q, fs, clock, reports } = await open();
    const [id] = await hold(q, clock, 1);
    const c = customer(() => 'delivered');
    q.setDeliverer(c.deliver);
    q.start();
    const [slow, go] = opening();
    const read = fs.read.bind(fs);
    let stalled = 0;
    fs.read = async (path, off, len) => {
      stalled++;
      await slow;
      return read(path, off, len);
    };
    const bounce = q.bounce(id!);
    await waitFor(() => stalled > 0, 'the bounce reading the envelope');
    const flush = q.flushHeld(D);
    await quiet(q, clock, 'the flush as far as it goes', { inflight: 'ignore' });
    go();
    assert.deepEqual(await bounce, { pieces: 1, busy: 0 });
    await flush;
    assert.equal(reports.length + c.seen.length, 1, `one outcome only (${reports} / ${c.seen})`);
    await q.stop();
  });

  test('an operator action waits for the attempt in flight, then acts', async () => {
    const { q, clock } = await open();
    const [id] = await hold(q, clock, 1);
    const [gate, release] = opening();
    q.setDeliverer(async (job) => {
      await gate;
      await job.finish([{ rcpt: 0, status: 'deferred', code: 421, hold: D }]);
    });
    q.start();
    const flush = q.flushHeld(D);
    await anyInFlight(q);
    const held = q.hold(id!);
    await quiet(q, clock, 'the hold waiting for the attempt', { inflight: 'ignore' });
    release();
    assert.deepEqual(await held, { pieces: 1, busy: 0 });
    await flush;
    assert.equal(internals(q).core.findLane('hold')!.live, 1);
    assert.equal(q.heldCount(D), 0);
    await q.stop();
  });

  test('an operator action on a piece an ATRN session holds past the wait says it is busy', async () => {
    const { q, clock } = await open({ settleTimeoutMs: 5_000 });
    const [id] = await hold(q, clock, 1);
    q.start();
    const [job] = await q.claimHeld([D]);
    const r = q.remove(id!);
    await quiet(q, clock, 'the delete waiting for the session', { inflight: 'ignore' });
    clock.advance(5_000);
    assert.deepEqual(await r, { pieces: 0, busy: 1 });
    assert.equal(q.heldCount(D), 1, 'left alone');
    // Once the session is done with it, the action works.
    const r2 = q.release(id!);
    await quiet(q, clock, 'the release waiting for the session', { inflight: 'ignore' });
    await job!.finish([]);
    assert.deepEqual(await r2, { pieces: 1, busy: 0 });
    assert.equal(q.heldCount(D), 0);
    await q.stop();
  });

  test('a piece whose attempt ended without any record (a read failed) is tried again, not lost until restart', async () => {
    const { q, fs, clock } = await open({ limboRetryMs: 10_000 });
    let fail = true;
    const seen: string[] = [];
    q.setDeliverer(async (job) => {
      seen.push(job.lane);
      await job.finish([{ rcpt: 0, status: fail ? 'deferred' : 'delivered', code: fail ? 451 : 250 }]);
    });
    q.start();
    await q.accept({ data: msg(1), sender: 'a@x.test', recipients: [{ address: 'b@y.test' }] });
    await waitFor(() => internals(q).core.findLane('retry-300s')?.live === 1, 'deferred to the retry ladder');
    fail = false;
    // The retry attempt cannot read the envelope once.
    const read = fs.read.bind(fs);
    let broken = 1;
    fs.read = async (path, off, len) => {
      if (broken > 0 && path.includes('retry-300s')) {
        broken--;
        throw Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' });
      }
      return read(path, off, len);
    };
    clock.advance(300_000);
    await waitFor(() => broken === 0, 'the failed read');
    await quiet(q, clock, 'the attempt ended');
    assert.equal(internals(q).core.msgs.count, 1, 'still queued');
    clock.advance(10_000);
    await waitFor(() => internals(q).core.msgs.count === 0, 'delivered on the next try');
    assert.deepEqual(seen, ['new', 'retry-300s']);
    await q.stop();
  });
});
