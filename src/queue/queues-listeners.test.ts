// Queues, the facade over several directories: its subscriptions and read model outlive a queue
// that a full disk reopened (the queue object is replaced; what listens to it must not be lost).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Queues, type StorageEvent } from './queues.js';
import type { QueueEvent } from './types.js';
import { MemQueueFs } from '../../test/support/memfs.js';
import { FakeClock } from '../../test/support/clock.js';
import { msg } from '../../test/support/queue.js';
import { waitFor } from '../../test/support/wait.js';

const message = (n: number) => ({ data: msg(n), sender: 'a@x.test', recipients: [{ address: 'b@y.test' }] });

describe('Queues', () => {
  test('batch and event listeners keep hearing a queue after a full disk reopened it', async () => {
    const fs = new MemQueueFs();
    const clock = new FakeClock();
    const storage: StorageEvent[] = [];
    const queues = await Queues.open(['/q'], { fs, clock, reserve: 0, onStorage: (e) => storage.push(e) });
    const batches: number[] = [];
    const events: QueueEvent[] = [];
    queues.onBatch((records) => batches.push(records));
    queues.onEvent((ev) => events.push(ev));
    await queues.accept(message(1));
    assert.equal(batches.length, 1);
    const before = queues.list[0];
    fs.injectFault('write', 'ENOSPC');
    await assert.rejects(queues.accept(message(2)), /ENOSPC/);
    fs.clearFaults();
    await waitFor(() => storage.some((e) => e.state === 'reopened'), 'the queue reopened');
    assert.notEqual(queues.list[0], before, 'a new queue object took the directory');
    await queues.accept(message(3));
    assert.equal(batches.length, 2, 'the commit of the reopened queue was heard');
    assert.deepEqual(
      events.filter((e) => e.type === 'accepted').length,
      2,
      'accepted events from before and after the reopen',
    );
    assert.equal(queues.messageCount(), 2);
    assert.deepEqual(
      queues.writerStats().map((w) => w.dir),
      ['/q'],
    );
    await queues.stop();
  });

  test('an unsubscribed listener hears nothing more', async () => {
    const queues = await Queues.open(['/q'], { fs: new MemQueueFs(), clock: new FakeClock(), reserve: 0 });
    let n = 0;
    const off = queues.onBatch(() => n++);
    await queues.accept(message(1));
    off();
    await queues.accept(message(2));
    assert.equal(n, 1);
    await queues.stop();
  });

  test('the read model counts lanes, messages and the oldest over every directory', async () => {
    const clock = new FakeClock();
    const queues = await Queues.open(['/q1', '/q2'], { fs: new MemQueueFs(), clock, reserve: 0 });
    const t0 = clock.now();
    for (let i = 0; i < 4; i++)
      await queues.accept({
        ...message(i),
        arrival: t0 - (4 - i) * 60_000,
        destinations: [{ kind: 'hold' }],
      });
    await queues.accept({
      data: msg(9),
      sender: 'a@x.test',
      recipients: [{ address: 'c@held.test' }],
      destinations: [{ kind: 'held', domain: 'held.test' }],
      arrival: t0 - 10 * 60_000,
    });
    assert.equal(queues.messageCount(), 5);
    assert.deepEqual(
      queues.laneDepths().filter((l) => l.live > 0),
      [
        { lane: 'held-held.test', kind: 'held', live: 1 },
        { lane: 'hold', kind: 'hold', live: 4 },
      ],
    );
    assert.deepEqual(queues.heldSummary(clock.now()), [
      { domain: 'held.test', count: 1, oldestAgeMs: 10 * 60_000 },
    ]);
    const oldest = queues.oldest(2);
    assert.deepEqual(
      oldest.map((o) => [o.lane, t0 - o.arrival]),
      [
        ['held-held.test', 10 * 60_000],
        ['hold', 4 * 60_000],
      ],
    );
    assert.equal(queues.writerStats().length, 2);
    await queues.stop();
  });
});
