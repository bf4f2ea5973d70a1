import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
// The queue's read model (view/): summary buckets, show, and list/summary/match answered from
// the index exactly as reading every envelope would.
import { internals } from '../queue.js';
import { Queues } from '../queues.js';
import { formatId } from '../record/records.js';
import { domainOf } from '../../util/domain.js';
import { ageBucket, bucketLabels, summarize } from './summary.js';
import type { Filter, MessageView } from './types.js';
import { FakeClock } from '../../../test/support/clock.js';
import { MemQueueFs } from '../../../test/support/memfs.js';
import { prng } from '../../../test/support/prng.js';
import { quiet } from '../../../test/support/queue.js';

function msg(id: string, ageMin: number, rcpts: string[], now: number): MessageView {
  return {
    id,
    queue: 0,
    arrival: now - ageMin * 60_000,
    size: 10,
    sender: 's@x',
    pieces: [
      {
        piece: 0,
        version: 1,
        lane: 'retry-300s',
        laneKind: 'retry',
        due: now,
        active: false,
        attempts: 1,
        recipients: rcpts.map((a) => ({ address: a, state: a.startsWith('done') ? 'done' : 'pending' })),
        history: [],
      },
    ],
  };
}

describe('queue summary (qshape)', () => {
  test('age buckets follow qshape: 0-5m, 5-10m, 10-20m, ... 160m+', () => {
    assert.deepEqual(bucketLabels(), ['0-5m', '5-10m', '10-20m', '20-40m', '40-80m', '80-160m', '160m+']);
    assert.equal(ageBucket(0), 0);
    assert.equal(ageBucket(4.99 * 60_000), 0);
    assert.equal(ageBucket(5 * 60_000), 1);
    assert.equal(ageBucket(39 * 60_000), 4 - 1);
    assert.equal(ageBucket(10 * 86_400_000), 6);
  });

  test('a message counts once per pending destination domain and once in the total', () => {
    const now = 1_000_000_000;
    const s = summarize(
      [msg('1', 1, ['a@x.org', 'b@x.org', 'c@y.org'], now), msg('2', 30, ['d@y.org', 'done@z.org'], now)],
      now,
    );
    assert.deepEqual(s.total, { domain: 'TOTAL', total: 2, buckets: [1, 0, 0, 1, 0, 0, 0] });
    assert.deepEqual(s.rows, [
      { domain: 'y.org', total: 2, buckets: [1, 0, 0, 1, 0, 0, 0] },
      { domain: 'x.org', total: 1, buckets: [1, 0, 0, 0, 0, 0, 0] },
    ]);
  });
});

describe('queue show', () => {
  test('a recipient finished in the current version shows whether it was delivered or failed', async () => {
    const queues = await Queues.open(['/q'], { fs: new MemQueueFs(), clock: new FakeClock() });
    const parked = new Promise<void>((resolve) => {
      queues.setDeliverer(async (job) => {
        // Two outcomes committed now; the third recipient's attempt never ends in this test.
        await job.record([
          { rcpt: 0, status: 'delivered', code: 250 },
          { rcpt: 1, status: 'failed', code: 550 },
        ]);
        resolve();
        await new Promise(() => {});
      });
    });
    queues.start();
    const r = await queues.accept({
      data: [Buffer.from('Subject: x\r\n\r\nx\r\n')],
      sender: 's@x.test',
      recipients: [{ address: 'ok@y.test' }, { address: 'no@y.test' }, { address: 'later@y.test' }],
    });
    await parked;
    const view = await queues.describe(r.msgId);
    assert.deepEqual(
      view?.pieces[0]?.recipients.map((x) => `${x.address} ${x.state}`),
      ['ok@y.test delivered', 'no@y.test failed', 'later@y.test pending'],
    );
  });
});

/** A QueueFs over a MemQueueFs that counts reads (how much inspection costs in I/O). */
class CountingFs extends MemQueueFs {
  reads = 0;
  override read(path: string, position: number, length: number): Promise<Buffer> {
    this.reads++;
    return super.read(path, position, length);
  }
}

/**
 * A queue with `n` messages in several lanes (hold, retry, held domains), some split, some with
 * recipients already finished, from a few senders over a few hours.
 */
async function varied(fs: MemQueueFs, n: number, seed: number, paths = ['/q']) {
  const clock = new FakeClock();
  const queues = await Queues.open(paths, { fs, clock, segmentSize: 64 * 1024 });
  const rnd = prng(seed);
  const domains = ['a.test', 'B.test', 'c.test.', 'd.test', 'held.test'];
  const senders = ['s1@x.test', 'S2@Y.test', '', 's3@x.test'];
  let release!: () => void;
  const parked = new Promise<void>((r) => (release = r));
  queues.setDeliverer(async (job) => {
    if (job.pending.length > 1 && job.msgId % 3 === 0) {
      // An outcome committed for the first recipient (a Delta in the current version), the
      // attempt still going on: the piece stays in its lane with one recipient finished.
      await job.record([{ rcpt: job.pending[0]!, status: 'delivered' }]);
      await parked;
    }
    // Finish some recipients now, defer the rest into the retry ladder.
    const outs = job.pending.map((r, i) => ({
      rcpt: r,
      status: (i === 0 && job.pending.length > 1 ? 'delivered' : 'deferred') as 'delivered' | 'deferred',
    }));
    await job.finish(outs);
  });
  queues.start();
  for (let i = 0; i < n; i++) {
    const k = 1 + Math.floor(rnd() * 3);
    const recipients = Array.from({ length: k }, (_, j) => ({
      address: `u${i}.${j}@${domains[Math.floor(rnd() * domains.length)]}`,
    }));
    const where = rnd();
    await queues.accept({
      data: [Buffer.from(`Subject: ${i}\r\n\r\nx\r\n`)],
      sender: senders[i % senders.length]!,
      recipients,
      destinations: recipients.map((r) =>
        r.address.endsWith('@held.test')
          ? { kind: 'held' as const, domain: 'held.test' }
          : where < 0.4
            ? { kind: 'hold' as const }
            : { kind: 'new' as const },
      ),
      arrival: clock.now() - Math.floor(rnd() * 4 * 3_600_000),
    });
  }
  // Every first attempt has run as far as it goes: finished, or parked after its first outcome.
  for (const q of queues.list)
    await quiet(q, clock, 'the first attempts parked or done', { inflight: 'ignore' });
  return { queues, clock, release };
}

const FILTERS: Filter[] = [
  {},
  { lane: 'hold' },
  { lane: 'retry' },
  { lane: 'held-held.test' },
  { domain: 'b.test' },
  { domain: '@C.TEST.' },
  { sender: '<>' },
  { sender: 's2@y.test' },
  { sender: '@x.test' },
  { olderThanMs: 2 * 3_600_000 },
  { lane: 'retry', domain: 'a.test', sender: '@x.test', olderThanMs: 3_600_000 },
  { domain: 'nowhere.test' },
];

describe('inspection from the index', () => {
  for (const paths of [['/q'], ['/q1', '/q2']])
    test(`summary, list and match answer from the index exactly what reading every envelope would (${paths.length} queue directories)`, async () => {
      const fs = new MemQueueFs();
      let { queues, clock, release } = await varied(fs, 300, 7, paths);
      assert.ok(
        queues.list.some((q) => [...internals(q).core.deltas.values()].some((d) => d.size > 0)),
        'some pieces have a finished recipient in their current version',
      );
      for (let round = 0; round < 2; round++) {
        const now = clock.now();
        for (const f of FILTERS) {
          const listed = await queues.listPieces(f, now);
          // The reference: every envelope read, filtered as the views show them.
          const ref = await queues.listPieces({}, now).then((all) =>
            all
              .map((m) => ({
                ...m,
                pieces: m.pieces.filter(
                  (p) =>
                    (f.lane === undefined || p.lane === f.lane || p.laneKind === f.lane) &&
                    (f.domain === undefined ||
                      p.recipients.some(
                        (r) =>
                          r.state === 'pending' &&
                          domainOf(r.address) ===
                            f.domain!.toLowerCase().replace(/^@/, '').replace(/\.$/, ''),
                      )),
                ),
              }))
              .filter(
                (m) =>
                  m.pieces.length > 0 &&
                  (f.olderThanMs === undefined || now - m.arrival >= f.olderThanMs) &&
                  (f.sender === undefined ||
                    (f.sender === '<>'
                      ? m.sender === ''
                      : f.sender.startsWith('@')
                        ? domainOf(m.sender) === f.sender.slice(1).toLowerCase()
                        : m.sender.toLowerCase() === f.sender)),
              ),
          );
          assert.deepEqual(
            listed.map((m) => `${m.id}:${m.pieces.map((p) => p.piece).join(',')}`),
            ref.map((m) => `${m.id}:${m.pieces.map((p) => p.piece).join(',')}`),
            `list ${JSON.stringify(f)}`,
          );
          assert.deepEqual(
            await queues.summary(f, now),
            summarize(listed, now),
            `summary ${JSON.stringify(f)}`,
          );
          assert.deepEqual(
            (await queues.matchIds(f, now)).map(formatId),
            listed.map((m) => m.id),
            `match ${JSON.stringify(f)}`,
          );
        }
        // Then again after a restart: the index is rebuilt from envelopes recovery found.
        release();
        release = () => {};
        await queues.stop();
        fs.crash();
        queues = await Queues.open(paths, { fs, clock, segmentSize: 64 * 1024 });
        assert.ok(queues.recovery.reduce((n, r) => n + r.liveMessages, 0) > 200);
      }
      assert.ok((await queues.summary({}, clock.now())).rows.length >= 4);
    });

  test('summary reads no envelope once the index knows them; after a restart, a few batched reads', async () => {
    const fs = new CountingFs();
    const { queues, clock, release } = await varied(fs, 3000, 11);
    release();
    for (const q of queues.list) await quiet(q, clock, 'the parked attempts finished');
    const now = clock.now();
    fs.reads = 0;
    const s = await queues.summary({}, now);
    assert.equal(fs.reads, 0, 'the running queue knows every piece');
    assert.equal(s.total.total, queues.messageCount());
    await queues.stop();
    fs.crash();
    const again = await Queues.open(['/q'], { fs, clock, segmentSize: 64 * 1024 });
    fs.reads = 0;
    assert.deepEqual(await again.summary({}, now), s);
    const first = fs.reads;
    assert.ok(first > 0 && first < 100, `${first} reads for ${s.total.total} messages`);
    fs.reads = 0;
    await again.summary({ domain: 'a.test' }, now);
    await again.matchIds({ sender: '@x.test' }, now);
    assert.equal(fs.reads, 0);
    // A list with a filter reads only what it shows.
    const shown = await again.listPieces({ domain: 'd.test', lane: 'hold' }, now);
    assert.ok(shown.length > 0);
    assert.ok(fs.reads <= shown.length, `${fs.reads} reads for ${shown.length} messages shown`);
  });
});
