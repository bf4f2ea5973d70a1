// Mail written while the clock was far ahead: its due times lie further ahead than any retry
// delay once the clock is put right. It must go out at once, not wait for the wrong clock.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { internals, Queue } from './queue.js';
import { MemQueueFs } from '../../test/support/memfs.js';
import { FakeClock } from '../../test/support/clock.js';
import { msg, quiet, scripted } from '../../test/support/queue.js';
import { waitFor } from '../../test/support/wait.js';

const DAY = 86_400_000;
const T = 1_700_000_000_000;

describe('clock steps', () => {
  test('a deferral written under a clock 40 days ahead is attempted at once after the clock steps back', async () => {
    const fs = new MemQueueFs();
    const ahead = new FakeClock(T + 40 * DAY);
    const q = await Queue.open({ dir: '/q', fs, clock: ahead, retry: [3_600_000] });
    const defer = scripted(() => 'deferred');
    q.setDeliverer(defer.deliver);
    q.start();
    for (let i = 0; i < 3; i++)
      await q.accept({ data: msg(i), sender: 'a@x.test', recipients: [{ address: `b${i}@y.test` }] });
    await waitFor(
      () => internals(q).core.findLane('retry-3600s')?.live === 3,
      'the three deferrals in retry-3600s',
    );
    await q.stop();

    // The clock is put right (40 days back) and the daemon restarted.
    const right = new FakeClock(T);
    const q2 = await Queue.open({ dir: '/q', fs, clock: right, retry: [3_600_000] });
    const deliver = scripted(() => 'delivered');
    q2.setDeliverer(deliver.deliver);
    q2.start();
    // At once: the clock does not move.
    await waitFor(() => deliver.seen.length === 3, 'the three attempted');
    assert.deepEqual(deliver.seen.map((s) => s.rcpts[0]).sort(), ['b0@y.test', 'b1@y.test', 'b2@y.test']);
    await q2.stop();
  });

  test('a due time within the longest retry delay is still waited for', async () => {
    const fs = new MemQueueFs();
    const clock = new FakeClock(T);
    const q = await Queue.open({ dir: '/q', fs, clock, retry: [60_000, 3_600_000] });
    let first = true;
    const d = scripted(() => {
      const r = first ? 'deferred' : 'delivered';
      first = false;
      return r;
    });
    q.setDeliverer(d.deliver);
    q.start();
    await q.accept({ data: msg(1), sender: 'a@x.test', recipients: [{ address: 'b@y.test' }] });
    await waitFor(() => internals(q).core.findLane('retry-60s')?.live === 1, 'the deferral in retry-60s');
    await quiet(q, clock);
    assert.equal(d.seen.length, 1, 'attempted again before its due time');
    clock.advance(60_000);
    await waitFor(() => d.seen.length === 2, 'the retry attempted');
    assert.equal(d.seen.length, 2);
    await q.stop();
  });
});
