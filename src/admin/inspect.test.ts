import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ageBucket, bucketLabels, type MessageView, summarize } from './inspect.js';

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
