import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MemQueueFs } from '../queue/log/memfs.js';
import { Queues } from '../queue/queues.js';
import { manualClock } from '../queue/testkit.js';
import { ageBucket, bucketLabels, type MessageView, showMessage, summarize } from './inspect.js';

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
    const queues = await Queues.open(['/q'], { fs: new MemQueueFs(), clock: manualClock() });
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
    const view = await showMessage(queues, r.msgId, false);
    assert.deepEqual(
      view?.pieces[0]?.recipients.map((x) => `${x.address} ${x.state}`),
      ['ok@y.test delivered', 'no@y.test failed', 'later@y.test pending'],
    );
  });
});
